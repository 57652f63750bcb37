// An enhancement service: spend before calling the provider, then complete
// (the work was done) or refund (it failed). With `creditd demo` running:
// CREDITD_API_KEY=<the key it printed> node examples/enhance.mjs
import { Creditd, InsufficientFundsError } from "@creditd/client";

const creditd = new Creditd({ baseUrl: process.env.CREDITD_URL ?? "http://127.0.0.1:8080", apiKey: process.env.CREDITD_API_KEY });

async function enhance(userId, image) {
  const { spendId } = await creditd.spend({ userId, credits: 1, reason: "upscale" }); // throws InsufficientFundsError
  try {
    const result = await callTheProvider(image);
    await creditd.completeSpend(spendId);
    return result;
  } catch (error) {
    await creditd.refundSpend(spendId); // the credits go back to the grants they came from
    throw error;
  }
}

async function callTheProvider(image) {
  return `${image} (enhanced)`;
}

try {
  console.log(await enhance("alice", "photo.png"));
  console.log(`alice has ${(await creditd.wallet("alice")).balance} credits left`);
} catch (error) {
  if (error instanceof InsufficientFundsError) console.log("alice has no credits left: sell her a package");
  else throw error;
}
