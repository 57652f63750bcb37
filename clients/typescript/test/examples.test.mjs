// The package README's examples run against a real `creditd demo`, as a
// newcomer would run them (node examples/…, the key the demo printed).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { startCreditd } from "./harness.mjs";

const run = promisify(execFile);
const packageDirectory = fileURLToPath(new URL("..", import.meta.url));
let server;

before(async () => {
  server = await startCreditd({ providerCredits: 938 });
});

after(async () => {
  await server?.stop();
});

async function example(name) {
  const { stdout } = await run(process.execPath, [`examples/${name}`], {
    cwd: packageDirectory,
    env: { ...process.env, CREDITD_URL: server.baseUrl, CREDITD_API_KEY: server.apiKey },
  });
  return stdout;
}

test("the checkout example buys a starter package for alice", async () => {
  assert.match(await example("checkout.mjs"), /^alice bought 10 credits \(pur_\w+\) and has 10\n$/);
});

test("the enhancement example spends one credit and completes it", async () => {
  assert.equal(await example("enhance.mjs"), "photo.png (enhanced)\nalice has 9 credits left\n");
});
