// Every route the client covers, against the real binary, and the typed
// error of each error code a storefront, an enhancement service or an
// operator can meet.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  ConflictError,
  Creditd,
  CreditdError,
  ForbiddenError,
  IdempotencyError,
  InsufficientCapacityError,
  InsufficientFundsError,
  InvalidRequestError,
  NotFoundError,
  PackageDisabledError,
  PurchasesDisabledError,
  RateLimitedError,
  UnauthorizedError,
  UnavailableError,
} from "../dist/index.js";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { creditdBinary, freePort, runToEnd, startCreditd, startProcess } from "./harness.mjs";

/** Rejects with `Class` and `code`; answers the error. */
async function rejectsWith(promise, Class, code, status) {
  const error = await promise.then(
    (value) => assert.fail(`expected ${code}, got ${JSON.stringify(value)}`),
    (error) => error,
  );
  assert.ok(error instanceof Class, `${error?.name}: ${error?.message} is not a ${Class.name}`);
  assert.ok(error instanceof CreditdError);
  assert.equal(error.code, code, error.message);
  if (status !== undefined) assert.equal(error.status, status);
  assert.ok(error.message.length > 0);
  return error;
}

/** Waits until `check()` answers something truthy (a condition, not a fixed sleep). */
async function until(check, what) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("the client against creditd", () => {
  let server;
  let admin;
  let storefront;
  let enhancement;

  before(async () => {
    server = await startCreditd({ providerCredits: 100_000 });
    admin = new Creditd({ baseUrl: server.baseUrl, apiKey: server.adminToken });
    const shop = await admin.createApiKey({ name: "shop", scopes: ["storefront"] });
    const worker = await admin.createApiKey({ name: "worker", scopes: ["enhancement"] });
    assert.match(shop.key, /^ck_/);
    storefront = new Creditd({ baseUrl: server.baseUrl, apiKey: shop.key });
    enhancement = new Creditd({ baseUrl: server.baseUrl, apiKey: worker.key });
  });

  after(async () => {
    await server?.stop();
  });

  test("catalogue → purchase → wallet, and the idempotent retry of a purchase", async () => {
    const catalogue = await storefront.catalogue();
    const starter = catalogue.packages.find((p) => p.id === "starter");
    assert.equal(starter.credits, 10);
    assert.equal(starter.price, 999);
    assert.equal(catalogue.platformCapacity.canSellStudio, true);
    assert.equal(typeof catalogue.platformCapacity.canSellStarter, "boolean");
    const status = await storefront.status();
    assert.equal(status.purchasesEnabled, true);

    const bought = await storefront.purchase({ userId: "ann", packageId: "starter" }, { idempotencyKey: "order-1" });
    assert.deepEqual([bought.userId, bought.credits, bought.balance], ["ann", 10, 10]);
    const again = await storefront.purchase({ userId: "ann", packageId: "starter" }, { idempotencyKey: "order-1" });
    assert.deepEqual(again, bought, "a retry with the key gets the first answer");
    const other = await storefront.purchase({ userId: "ann", packageId: "starter" });
    assert.notEqual(other.purchaseId, bought.purchaseId, "a call without a key of yours is a new purchase");
    const wallet = await storefront.wallet("ann");
    assert.equal(wallet.balance, 20);
    assert.deepEqual(
      wallet.grants.map((g) => [g.kind, g.remaining, g.expiresAt]),
      [
        ["paid", 10, null],
        ["paid", 10, null],
      ],
    );
    await rejectsWith(
      storefront.purchase({ userId: "ann", packageId: "pro" }, { idempotencyKey: "order-1" }),
      IdempotencyError,
      "idempotency_key_reused",
      422,
    );
  });

  test("holds: create, capture, release, and the conflicts of a finished hold", async () => {
    const held = await storefront.createHold({ userId: "bea", packageId: "creative", ttlSeconds: 600 });
    assert.equal(held.state, "open");
    const captured = await storefront.captureHold(held.holdId);
    assert.deepEqual([captured.state, captured.balance], ["captured", 50]);
    await rejectsWith(storefront.releaseHold(held.holdId), ConflictError, "hold_captured", 409);

    const second = await storefront.createHold({ userId: "bea", packageId: "starter" });
    const released = await storefront.releaseHold(second.holdId);
    assert.equal(released.state, "released");
    await rejectsWith(storefront.captureHold(second.holdId), ConflictError, "hold_released", 409);

    const brief = await storefront.createHold({ userId: "bea", packageId: "starter", ttlSeconds: 1 });
    await until(() => Date.now() > Date.parse(brief.expiresAt) + 100, "the hold's expiry");
    await rejectsWith(storefront.captureHold(brief.holdId), ConflictError, "hold_expired", 409);

    const open = [];
    for (let i = 0; i < 5; i++) open.push(await storefront.createHold({ userId: "cal", packageId: "starter" }));
    await rejectsWith(storefront.createHold({ userId: "cal", packageId: "starter" }), ConflictError, "too_many_holds", 409);
    for (const hold of open) await storefront.releaseHold(hold.holdId);
    await rejectsWith(storefront.captureHold("hold_999999"), NotFoundError, "not_found", 404);
  });

  test("spends: complete, refund, and their conflicts", async () => {
    await storefront.purchase({ userId: "dan", packageId: "creative" });
    const spent = await enhancement.spend({ userId: "dan", credits: 5, reason: "upscale" });
    assert.equal(spent.balance, 45);
    const completed = await enhancement.completeSpend(spent.spendId);
    assert.equal(completed.state, "completed");
    await rejectsWith(enhancement.refundSpend(spent.spendId), ConflictError, "spend_completed", 409);

    const failed = await enhancement.spend({ userId: "dan", credits: 7 });
    const refunded = await enhancement.refundSpend(failed.spendId);
    assert.deepEqual([refunded.refunded, refunded.balance], [true, 45]);
    await rejectsWith(enhancement.refundSpend(failed.spendId), ConflictError, "already_refunded", 409);
    await rejectsWith(enhancement.completeSpend(failed.spendId), ConflictError, "already_refunded", 409);
    await rejectsWith(enhancement.spend({ userId: "dan", credits: 46 }), InsufficientFundsError, "insufficient_funds", 409);
    await rejectsWith(enhancement.spend({ userId: "dan", credits: 0 }), InvalidRequestError, "invalid_request", 400);
    assert.equal((await enhancement.wallet("dan")).balance, 45);
  });

  test("keys and scopes: unauthorized, forbidden, revoked", async () => {
    const stranger = new Creditd({ baseUrl: server.baseUrl, apiKey: "ck_not_a_key" });
    await rejectsWith(stranger.wallet("ann"), UnauthorizedError, "unauthorized", 401);
    await rejectsWith(enhancement.purchase({ userId: "ann", packageId: "starter" }), ForbiddenError, "forbidden", 403);
    await rejectsWith(storefront.spend({ userId: "ann", credits: 1 }), ForbiddenError, "forbidden", 403);
    await rejectsWith(storefront.report(), ForbiddenError, "forbidden", 403);
    await rejectsWith(storefront.wallet("nobody"), NotFoundError, "not_found", 404);

    const reader = await admin.createApiKey({ name: "reader", scopes: ["read"] });
    const readOnly = new Creditd({ baseUrl: server.baseUrl, apiKey: reader.key });
    assert.equal((await readOnly.wallet("ann")).balance, 20);
    const listed = await admin.listApiKeys();
    assert.ok(listed.keys.some((key) => key.id === reader.id && key.revokedAt === null));
    const revoked = await admin.revokeApiKey(reader.id);
    assert.notEqual(revoked.revokedAt, null);
    await rejectsWith(readOnly.wallet("ann"), UnauthorizedError, "unauthorized", 401);
  });

  test("operators: packages, the kill switch, grants and voids, sync, report, ledger, alerts", async () => {
    const disabled = await admin.updatePackage("studio", { enabled: false });
    assert.equal(disabled.enabled, false);
    await rejectsWith(
      storefront.purchase({ userId: "eve", packageId: "studio" }),
      PackageDisabledError,
      "package_disabled",
      409,
    );
    const monthly = await admin.updatePackage("studio", { enabled: true, expiresAfterDays: 30 });
    assert.deepEqual([monthly.enabled, monthly.expiresAfterDays], [true, 30]);
    await rejectsWith(admin.updatePackage("studio", { expiresAfterDays: 0 }), InvalidRequestError, "invalid_request", 400);

    const off = await admin.disablePurchases("provider maintenance");
    assert.deepEqual([off.purchasesEnabled, off.reason], [false, "provider maintenance"]);
    await rejectsWith(
      storefront.purchase({ userId: "eve", packageId: "starter" }),
      PurchasesDisabledError,
      "purchases_disabled",
      503,
    );
    assert.equal((await admin.enablePurchases()).purchasesEnabled, true);

    const bonus = await admin.createGrant({ userId: "eve", credits: 5, reason: "welcome" }, { idempotencyKey: "bonus-eve" });
    assert.deepEqual([bonus.kind, bonus.credits, bonus.expiresAt], ["promotional", 5, null]);
    assert.deepEqual(await admin.createGrant({ userId: "eve", credits: 5, reason: "welcome" }, { idempotencyKey: "bonus-eve" }), bonus);
    const voided = await admin.voidGrant(bonus.grantId, "fraud");
    assert.equal(voided.grantId, bonus.grantId);
    assert.deepEqual(await admin.voidGrant(bonus.grantId, "fraud"), voided, "a second void answers the first");
    await rejectsWith(admin.voidGrant("grant_999999", "fraud"), NotFoundError, "not_found", 404);

    const soon = new Date(Date.now() + 1_500).toISOString();
    const brief = await admin.createGrant({ userId: "eve", credits: 3, reason: "flash sale", expiresAt: soon });
    await until(
      async () => !(await admin.wallet("eve")).grants.some((g) => g.grantId === brief.grantId),
      "the grant's expiry",
    );
    await rejectsWith(admin.voidGrant(brief.grantId, "late"), ConflictError, "grant_closed", 409);

    const synced = await admin.syncCredits();
    assert.equal(synced.realBalance, 100_000);
    const credits = await admin.adminCredits();
    assert.equal(credits.realBalance, 100_000);
    const report = await admin.report();
    assert.equal(report.voidedCredits, 5);
    const page = await admin.ledger({ after: 0, limit: 3 });
    assert.equal(page.entries.length, 3);
    assert.deepEqual(
      page.entries.map((e) => e.seq),
      [1, 2, 3],
    );
    const alerts = await admin.alerts();
    assert.ok(Array.isArray(alerts.open));
    assert.equal((await admin.ready()).status, "ready");
  });

  test("a spend the provider balance cannot cover: 503 enhancement_unavailable", async () => {
    await storefront.purchase({ userId: "fay", packageId: "pro" });
    const refill = await fetch(`${server.providerUrl}/demo/balance`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ balance: 0 }),
    });
    assert.equal(refill.status, 200);
    await admin.syncCredits();
    await rejectsWith(
      enhancement.spend({ userId: "fay", credits: 1 }),
      UnavailableError,
      "enhancement_unavailable",
      503,
    );
  });
});

describe("limits", () => {
  test("concurrent calls with one key: one purchase; the others answer it or idempotency_key_in_use", async () => {
    const server = await startCreditd();
    try {
      const shop = new Creditd({ baseUrl: server.baseUrl, apiKey: server.apiKey });
      const calls = Array.from({ length: 20 }, () =>
        shop.purchase({ userId: "ann", packageId: "starter" }, { idempotencyKey: "one-order" }),
      );
      const answers = await Promise.allSettled(calls);
      const purchases = new Set(answers.filter((a) => a.status === "fulfilled").map((a) => a.value.purchaseId));
      assert.equal(purchases.size, 1, "one purchase, answered to every call that got an answer");
      for (const answer of answers.filter((a) => a.status === "rejected")) {
        assert.ok(answer.reason instanceof IdempotencyError, String(answer.reason));
        assert.deepEqual([answer.reason.code, answer.reason.status], ["idempotency_key_in_use", 409]);
      }
      assert.equal((await shop.wallet("ann")).balance, 10, "credited once");
    } finally {
      await server.stop();
    }
  });

  test("no provider: 503 not_ready before the first sync, 502 sync_failed for an operator's sync", async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), "creditd-client-"));
    const data = path.join(directory, "data");
    const port = await freePort();
    const adminToken = "0123456789abcdef-not-ready";
    await runToEnd(creditdBinary(), ["init", "--data-dir", data]);
    const node = await startProcess(creditdBinary(), ["serve"], {
      env: {
        CREDITD_DATA_DIR: data,
        CREDITD_LISTEN: `127.0.0.1:${port}`,
        CREDITD_ADMIN_TOKEN: adminToken,
        NANOBANANA_BASE_URL: "http://127.0.0.1:9",
        NANOBANANA_API_KEY: "no-such-provider",
        RUST_LOG: "warn",
      },
      ready: /listening on/,
    });
    try {
      const admin = new Creditd({ baseUrl: `http://127.0.0.1:${port}`, apiKey: adminToken, retry: { attempts: 1 } });
      await rejectsWith(admin.purchase({ userId: "ann", packageId: "starter" }), UnavailableError, "not_ready", 503);
      await rejectsWith(admin.ready(), UnavailableError, "not_ready", 503);
      await rejectsWith(admin.syncCredits(), UnavailableError, "sync_failed", 502);
    } finally {
      await node.stop();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("capacity: 409 insufficient_capacity once the provider's credits are spoken for", async () => {
    const server = await startCreditd({ providerCredits: 40 });
    try {
      const admin = new Creditd({ baseUrl: server.baseUrl, apiKey: server.adminToken });
      const shop = new Creditd({ baseUrl: server.baseUrl, apiKey: server.apiKey });
      await shop.purchase({ userId: "ann", packageId: "starter" });
      assert.equal((await shop.catalogue()).platformCapacity.canSellStarter, false);
      await rejectsWith(
        shop.purchase({ userId: "ann", packageId: "starter" }),
        InsufficientCapacityError,
        "insufficient_capacity",
        409,
      );
      await rejectsWith(
        admin.createGrant({ userId: "bob", credits: 1, reason: "bonus" }),
        InsufficientCapacityError,
        "insufficient_capacity",
        409,
      );
    } finally {
      await server.stop();
    }
  });

  test("a key's rate limit: 429 rate_limited with Retry-After, never retried", async () => {
    const server = await startCreditd({ env: { CREDITD_RATE_LIMIT_PER_KEY: "1" } });
    try {
      const shop = new Creditd({ baseUrl: server.baseUrl, apiKey: server.apiKey });
      const answers = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => shop.purchase({ userId: `u${i}`, packageId: "starter" })),
      );
      const limited = answers.filter((a) => a.status === "rejected").map((a) => a.reason);
      assert.ok(limited.length > 0, "past one a second, some are refused");
      for (const error of limited) {
        assert.ok(error instanceof RateLimitedError, `${error.name}: ${error.message}`);
        assert.equal(error.status, 429);
        assert.ok(error.retryAfterSeconds >= 1);
      }
    } finally {
      await server.stop();
    }
  });
});
