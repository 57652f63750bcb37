// The client's own retries, through a proxy in front of the real binary:
// the same Idempotency-Key on every attempt, the first answer on a retry,
// a wallet credited once; never a retry of a 4xx; the call's timeout and
// AbortSignal.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  Creditd,
  NetworkError,
  NotLeaderError,
  OutcomeUnknownError,
  PackageDisabledError,
  TimeoutError,
} from "../dist/index.js";
import { startCreditd, startProxy } from "./harness.mjs";

describe("retries", () => {
  let server;
  let proxy;
  let admin;
  let viaProxy;

  before(async () => {
    server = await startCreditd();
    proxy = await startProxy(server.baseUrl);
    admin = new Creditd({ baseUrl: server.baseUrl, apiKey: server.adminToken });
    viaProxy = new Creditd({
      baseUrl: proxy.baseUrl,
      apiKey: server.apiKey,
      retry: { attempts: 5, baseDelayMs: 10, maxDelayMs: 50 },
    });
  });

  after(async () => {
    await proxy?.stop();
    await server?.stop();
  });

  /** The purchases of `userId` in the ledger. */
  async function purchasesOf(userId) {
    const page = await admin.ledger({ after: 0, limit: 1000 });
    return page.entries.filter((entry) => entry.kind === "purchase" && entry.userId === userId);
  }

  test("a purchase whose answer was lost is retried with its key: credited once", async () => {
    const before = proxy.requests.length;
    proxy.plan("cut");
    const bought = await viaProxy.purchase({ userId: "ann", packageId: "creative" });
    const sent = proxy.requests.slice(before);
    assert.deepEqual(
      sent.map((r) => r.fault),
      ["cut", undefined],
      "the first answer was cut, the retry passed",
    );
    assert.ok(sent[0].key, "an Idempotency-Key was sent");
    assert.equal(sent[1].key, sent[0].key, "the retry reused it");
    assert.equal(bought.balance, 50);
    assert.equal((await admin.wallet("ann")).balance, 50, "credited once");
    const entries = await purchasesOf("ann");
    assert.equal(entries.length, 1);
    assert.equal(entries[0].purchaseId, bought.purchaseId, "the retry answered the first purchase");
  });

  test("a spend whose answer was lost is retried with its key: taken once", async () => {
    const shop = new Creditd({ baseUrl: server.baseUrl, apiKey: server.apiKey });
    await shop.purchase({ userId: "bo", packageId: "starter" });
    const before = proxy.requests.length;
    proxy.plan("cut", "cut");
    const spent = await viaProxy.spend({ userId: "bo", credits: 4 });
    const keys = proxy.requests.slice(before).map((r) => r.key);
    assert.equal(keys.length, 3);
    assert.equal(new Set(keys).size, 1, "one key for the three attempts");
    assert.equal(spent.balance, 6);
    assert.equal((await admin.wallet("bo")).balance, 6, "taken once");
  });

  test("outcome_unknown after the server applied it: the retry with the key learns the first answer", async () => {
    const before = proxy.requests.length;
    proxy.plan("unknown");
    const spent = await viaProxy.purchase({ userId: "kim", packageId: "pro" });
    const sent = proxy.requests.slice(before);
    assert.deepEqual(
      sent.map((r) => r.fault),
      ["unknown", undefined],
    );
    assert.equal(sent[1].key, sent[0].key);
    assert.equal(spent.balance, 100);
    assert.equal((await purchasesOf("kim")).length, 1, "applied once");

    const patient = new Creditd({ baseUrl: proxy.baseUrl, apiKey: server.apiKey, retry: { attempts: 2, baseDelayMs: 1 } });
    proxy.plan("unknown", "unknown");
    const error = await patient.purchase({ userId: "lou", packageId: "starter" }).catch((e) => e);
    assert.ok(error instanceof OutcomeUnknownError, String(error));
    assert.deepEqual([error.code, error.status], ["outcome_unknown", 503]);
    const learned = await patient.purchase({ userId: "lou", packageId: "starter" }, { idempotencyKey: error.idempotencyKey });
    assert.equal(learned.balance, 10, "it had been applied, once");
    assert.equal((await purchasesOf("lou")).length, 1);
  });

  test("a standby's not_leader, then success", async () => {
    const before = proxy.requests.length;
    proxy.plan("notLeader", "notLeader");
    const bought = await viaProxy.purchase({ userId: "cy", packageId: "starter" });
    const sent = proxy.requests.slice(before);
    assert.deepEqual(
      sent.map((r) => r.fault),
      ["notLeader", "notLeader", undefined],
    );
    assert.equal(new Set(sent.map((r) => r.key)).size, 1);
    assert.equal(bought.balance, 10);
    assert.equal((await purchasesOf("cy")).length, 1);
  });

  test("a load balancer's own 503 (no node up) is retried; a 5xx of creditd's that applied nothing is not", async () => {
    const before = proxy.requests.length;
    proxy.plan("gateway");
    const bought = await viaProxy.purchase({ userId: "max", packageId: "starter" });
    assert.deepEqual(
      proxy.requests.slice(before).map((r) => r.fault),
      ["gateway", undefined],
    );
    assert.equal(bought.balance, 10);
    await admin.disablePurchases("maintenance");
    try {
      const start = proxy.requests.length;
      const error = await viaProxy.purchase({ userId: "max", packageId: "starter" }).catch((e) => e);
      assert.equal(error.code, "purchases_disabled");
      assert.equal(proxy.requests.length - start, 1, "not retried");
    } finally {
      await admin.enablePurchases();
    }
  });

  test("retries are bounded: NotLeaderError with the key, which a later call reuses", async () => {
    const patient = new Creditd({
      baseUrl: proxy.baseUrl,
      apiKey: server.apiKey,
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    });
    const before = proxy.requests.length;
    proxy.plan("notLeader", "notLeader", "notLeader");
    const error = await patient.purchase({ userId: "dee", packageId: "starter" }).catch((e) => e);
    assert.ok(error instanceof NotLeaderError, String(error));
    assert.equal(error.status, 503);
    assert.equal(proxy.requests.length - before, 3, "three attempts, then the error");
    assert.ok(error.idempotencyKey);
    const later = await patient.purchase({ userId: "dee", packageId: "starter" }, { idempotencyKey: error.idempotencyKey });
    assert.equal(later.balance, 10);
  });

  test("a 4xx is never retried", async () => {
    await admin.updatePackage("pro", { enabled: false });
    try {
      const before = proxy.requests.length;
      const error = await viaProxy.purchase({ userId: "eve", packageId: "pro" }).catch((e) => e);
      assert.ok(error instanceof PackageDisabledError, String(error));
      assert.equal(proxy.requests.length - before, 1);
    } finally {
      await admin.updatePackage("pro", { enabled: true });
    }
  });

  test("no answer at all: NetworkError with the key, after the bounded retries", async () => {
    const nowhere = await startProxy("http://127.0.0.1:9");
    await nowhere.stop();
    const client = new Creditd({
      baseUrl: nowhere.baseUrl,
      apiKey: server.apiKey,
      retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 },
    });
    const error = await client.purchase({ userId: "fay", packageId: "starter" }).catch((e) => e);
    assert.ok(error instanceof NetworkError, String(error));
    assert.deepEqual([error.code, error.status], ["network_error", 0]);
    assert.ok(error.idempotencyKey);
  });

  test("a call's timeout and AbortSignal end it and its retries", async () => {
    const before = proxy.requests.length;
    proxy.plan("hang");
    const error = await viaProxy.purchase({ userId: "gus", packageId: "starter" }, { timeoutMs: 300 }).catch((e) => e);
    assert.ok(error instanceof TimeoutError, String(error));
    assert.equal(error.code, "timeout");
    assert.ok(error.idempotencyKey, "the key to learn the outcome with");
    assert.equal(proxy.requests.length - before, 1);

    proxy.plan("hang");
    const controller = new AbortController();
    const reason = new Error("the shopper left");
    const call = viaProxy.purchase({ userId: "gus", packageId: "starter" }, { signal: controller.signal });
    await proxy.seen(before + 2);
    controller.abort(reason);
    await assert.rejects(call, (e) => e === reason);
    const aborted = new AbortController();
    aborted.abort(reason);
    await assert.rejects(viaProxy.status({ signal: aborted.signal }), (e) => e === reason);
  });
});
