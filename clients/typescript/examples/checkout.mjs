// A storefront's checkout: catalogue → purchase → wallet. With `creditd demo`
// running: CREDITD_API_KEY=<the key it printed> node examples/checkout.mjs
import { Creditd, InsufficientCapacityError } from "@creditd/client";

const creditd = new Creditd({ baseUrl: process.env.CREDITD_URL ?? "http://127.0.0.1:8080", apiKey: process.env.CREDITD_API_KEY });
const { packages } = await creditd.catalogue();
const offer = packages.find((p) => !p.disabled && p.sellable > 0) ?? packages[0]; // show what can be sold now
try {
  const order = await creditd.purchase({ userId: "alice", packageId: offer.id }); // one Idempotency-Key, reused by its retries
  const wallet = await creditd.wallet("alice");
  console.log(`alice bought ${order.credits} credits (${order.purchaseId}) and has ${wallet.balance}`);
} catch (error) {
  if (error instanceof InsufficientCapacityError) console.log("Service temporarily unavailable"); else throw error;
}
