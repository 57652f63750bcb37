// The committed types (src/schema.ts) must be what openapi-typescript makes
// of the current binary's GET /openapi.json: a changed route, field or
// error code on the server fails this test until `npm run generate` is run
// and the result committed.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { generate, schemaPath } from "../scripts/generate.mjs";
import { startCreditd } from "./harness.mjs";

let server;
let document;
let committed;

before(async () => {
  server = await startCreditd();
  const answer = await fetch(`${server.baseUrl}/openapi.json`);
  assert.equal(answer.status, 200);
  document = await answer.json();
  committed = await readFile(schemaPath, "utf8");
});

after(async () => {
  await server?.stop();
});

test("the committed types are what the server's OpenAPI document generates", async () => {
  const current = await generate(document);
  if (current !== committed) {
    const a = committed.split("\n");
    const b = current.split("\n");
    const line = a.findIndex((text, i) => text !== b[i]);
    assert.fail(
      `src/schema.ts differs from the server's /openapi.json from line ${line + 1}:\n` +
        `  committed: ${a[line]}\n  server:    ${b[line]}\n` +
        "run `npm run generate -- <creditd>/openapi.json` and commit src/schema.ts",
    );
  }
});

test("the check sees a changed route: a renamed path or field generates other types", async () => {
  const renamed = structuredClone(document);
  renamed.paths["/api/credits/purchases"] = renamed.paths["/api/credits/purchase"];
  delete renamed.paths["/api/credits/purchase"];
  assert.notEqual(await generate(renamed), committed);
  const field = structuredClone(document);
  const purchase = field.components.schemas.PurchaseResponse;
  purchase.properties.newBalance = purchase.properties.balance;
  delete purchase.properties.balance;
  assert.notEqual(await generate(field), committed);
});
