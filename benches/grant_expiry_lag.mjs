// How long after a grant's expiresAt the catalogue's reservedCredits drops
// (SPEC §13: capacity returns at expiry). Needs the TypeScript client
// built (cd clients/typescript && npm ci && npm run build) and a release
// binary ($CREDITD_BIN, else $CARGO_TARGET_DIR/release/creditd).
//
//   node benches/grant_expiry_lag.mjs [rounds]
import { Creditd } from "../clients/typescript/dist/index.js";
import { startCreditd } from "../clients/typescript/test/harness.mjs";

const rounds = Number(process.argv[2] ?? 10);
const server = await startCreditd({ providerCredits: 100_000 });
const admin = new Creditd({ baseUrl: server.baseUrl, apiKey: server.adminToken });
const lags = [];
try {
  for (let i = 0; i < rounds; i++) {
    const expiresAt = Date.now() + 1_000 + Math.floor(Math.random() * 1_000);
    const before = (await admin.catalogue()).platformCapacity.reservedCredits;
    await admin.createGrant({ userId: `lag-${i}`, credits: 5, reason: "lag", expiresAt: new Date(expiresAt).toISOString() });
    while ((await admin.catalogue()).platformCapacity.reservedCredits !== before) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    lags.push(Date.now() - expiresAt);
  }
} finally {
  await server.stop();
}
lags.sort((a, b) => a - b);
console.log(`${process.env.CREDITD_BIN ?? "release build"}: ${rounds} grants, ms from expiresAt to reservedCredits back: ${lags.join(" ")} (median ${lags[Math.floor(rounds / 2)]}, max ${lags.at(-1)})`);
