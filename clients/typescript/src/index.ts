// creditd's TypeScript client (SPEC §14): the types generated from the
// server's OpenAPI document (./schema.ts, by openapi-typescript), calls by
// openapi-fetch, and the thin layer a storefront needs to be correct:
//
// - every POST carries an `Idempotency-Key`, made per call and reused by the
//   client's own retries, so a retry can never buy or spend twice;
// - retries of network failures, of 503 `outcome_unknown`, `not_leader`,
//   `not_ready` (a new leader before its first sync) and `overloaded` (the
//   answers that invite one) and of a load balancer's own 502/503/504, with
//   bounded exponential backoff and full jitter; never of a 4xx or another
//   5xx;
// - errors as typed classes carrying `code`, `status` and `message`;
// - the API key on every call, an optional AbortSignal and timeout per call.
//
// Only `fetch` and `crypto.randomUUID` are used: Node 18+, browsers' server
// sides and edge runtimes. (Node 18 has no global `crypto` without a flag:
// there the key comes from `node:crypto`, imported only when needed.)
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";
import {
  CreditdError,
  NetworkError,
  TimeoutError,
  errorFor,
  type ClientErrorCode,
  type ErrorCode,
} from "./errors.js";

export * from "./errors.js";
export type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
export type Catalogue = Schemas["CatalogueResponse"];
export type Status = Schemas["StatusResponse"];
export type Purchase = Schemas["PurchaseResponse"];
export type Wallet = Schemas["UserCreditsResponse"];
export type Hold = Schemas["HoldResponse"];
export type Capture = Schemas["CaptureResponse"];
export type Release = Schemas["ReleaseResponse"];
export type Spend = Schemas["SpendResponse"];
export type Completion = Schemas["CompletionResponse"];
export type Refund = Schemas["RefundResponse"];
export type Grant = Schemas["GrantResponse"];
export type Void = Schemas["VoidResponse"];
export type AdminCredits = Schemas["AdminCreditsResponse"];
export type SyncResult = Schemas["SyncResponse"];
export type Report = Schemas["ReportResponse"];
export type LedgerPage = Schemas["LedgerPageResponse"];
export type Alerts = Schemas["AlertsResponse"];
export type PurchasesState = Schemas["PurchasesStateResponse"];
export type AdminPackage = Schemas["AdminPackageResponse"];
export type PackageUpdate = Schemas["PackageUpdateRequest"];
export type KeyCreated = Schemas["KeyCreatedResponse"];
export type Keys = Schemas["KeysResponse"];
export type Key = Schemas["KeyResponse"];
export type Scope = Schemas["ScopeName"];
export type Health = Schemas["HealthResponse"];
/** The package ids the server's document allows: the configured ones (regenerate for yours). */
export type PackageId = Schemas["PurchaseRequest"]["packageId"];

/** How the client retries (defaults: 5 attempts, 100 ms doubling up to 2 s, full jitter). */
export interface RetryOptions {
  /** Attempts in all, the first included (1: no retry). */
  attempts?: number;
  /** The first backoff's ceiling, in ms; it doubles per retry. */
  baseDelayMs?: number;
  /** No backoff is longer than this, in ms. */
  maxDelayMs?: number;
}

export interface ClientOptions {
  /** Where creditd serves, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** An API key (`ck_…`) with the scopes of the routes called, or the admin token. */
  apiKey: string;
  retry?: RetryOptions;
  /** The default of every call's `timeoutMs` (none by default). */
  timeoutMs?: number;
  /** A `fetch` of your own (tests, instrumentation); `globalThis.fetch` by default. */
  fetch?: typeof globalThis.fetch;
  /** Makes an `Idempotency-Key`; `crypto.randomUUID` by default. */
  newIdempotencyKey?: () => string;
}

export interface CallOptions {
  /** Aborts the call, its retries included; the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** The whole call's deadline, its retries included: then a `TimeoutError`. */
  timeoutMs?: number;
  /**
   * The `Idempotency-Key` of a POST. Leave it out and the client makes one
   * per call; pass your own (say, your order id) to retry a call whose
   * outcome you did not learn, or to make a retry across restarts.
   */
  idempotencyKey?: string;
}

/** What openapi-fetch answers. */
interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The answers worth a retry with the same key: nothing, or a 503 that invites it. */
const RETRIED: ReadonlySet<string> = new Set<ErrorCode>(["outcome_unknown", "not_leader", "not_ready", "overloaded"]);

/**
 * A load balancer's own 502, 503 or 504 (no creditd error body): HAProxy
 * with no node up during a failover. Retried too: the key makes it safe.
 */
const GATEWAY: ReadonlySet<number> = new Set([502, 503, 504]);

export class Creditd {
  private readonly client: ReturnType<typeof createClient<paths>>;
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timeoutMs?: number;
  private readonly newKey: () => string | Promise<string>;

  constructor(options: ClientOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    if (!options.apiKey) throw new TypeError("apiKey is required");
    const fetchImpl = options.fetch ?? globalThis.fetch;
    this.client = createClient<paths>({
      baseUrl: options.baseUrl.replace(/\/+$/, ""),
      headers: { Authorization: `Bearer ${options.apiKey}` },
      fetch: (request: Request) => fetchImpl(request),
    });
    this.attempts = Math.max(1, Math.floor(options.retry?.attempts ?? 5));
    this.baseDelayMs = Math.max(0, options.retry?.baseDelayMs ?? 100);
    this.maxDelayMs = Math.max(this.baseDelayMs, options.retry?.maxDelayMs ?? 2_000);
    this.timeoutMs = options.timeoutMs;
    this.newKey = options.newIdempotencyKey ?? randomUUID;
  }

  // --- The storefront -----------------------------------------------------

  /** The packages with what capacity allows now, the platform's status and capacity (public). */
  catalogue(options?: CallOptions): Promise<Catalogue> {
    return this.read(options, (signal) => this.client.GET("/api/credits/purchase", { signal }));
  }

  /** The platform's status and its message (public, cheap to poll). */
  status(options?: CallOptions): Promise<Status> {
    return this.read(options, (signal) => this.client.GET("/api/credits/status", { signal }));
  }

  /** Buys a package for a user; a retry with the call's key gets the first answer. */
  purchase(body: Schemas["PurchaseRequest"], options?: CallOptions): Promise<Purchase> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/purchase", { body, params: { header: { "Idempotency-Key": key } }, signal }),
    );
  }

  /** A user's wallet: balance, grants, what expires soon, recent entries (404 before any credit). */
  wallet(userId: string, options?: CallOptions): Promise<Wallet> {
    return this.read(options, (signal) =>
      this.client.GET("/api/users/{userId}/credits", { params: { path: { userId } }, signal }),
    );
  }

  /** Reserves a package's credits until captured, released or expired. */
  createHold(body: Schemas["HoldRequest"], options?: CallOptions): Promise<Hold> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/holds", { body, params: { header: { "Idempotency-Key": key } }, signal }),
    );
  }

  /** The payment went through: the hold's credits go to the wallet. */
  captureHold(holdId: string, options?: CallOptions): Promise<Capture> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/holds/{holdId}/capture", {
        params: { path: { holdId }, header: { "Idempotency-Key": key } },
        signal,
      }),
    );
  }

  /** The payment failed: the hold's reservation goes back to capacity. */
  releaseHold(holdId: string, options?: CallOptions): Promise<Release> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/holds/{holdId}/release", {
        params: { path: { holdId }, header: { "Idempotency-Key": key } },
        signal,
      }),
    );
  }

  // --- The enhancement service --------------------------------------------

  /** Takes credits from a wallet before calling the provider; complete or refund it after. */
  spend(body: Schemas["SpendRequest"], options?: CallOptions): Promise<Spend> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/spend", { body, params: { header: { "Idempotency-Key": key } }, signal }),
    );
  }

  /** The provider did the work: the spend is final. */
  completeSpend(spendId: string, options?: CallOptions): Promise<Completion> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/spend/{spendId}/complete", {
        params: { path: { spendId }, header: { "Idempotency-Key": key } },
        signal,
      }),
    );
  }

  /** The provider call failed: the credits go back to the grants they came from. */
  refundSpend(spendId: string, options?: CallOptions): Promise<Refund> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/credits/spend/{spendId}/refund", {
        params: { path: { spendId }, header: { "Idempotency-Key": key } },
        signal,
      }),
    );
  }

  // --- Operators (the `admin` scope) --------------------------------------

  /** Real vs database balance, drift, last sync, levels, reserve band. */
  adminCredits(options?: CallOptions): Promise<AdminCredits> {
    return this.read(options, (signal) => this.client.GET("/api/admin/credits", { signal }));
  }

  /** "Sync Real Credits": reads the provider's balance now. */
  syncCredits(options?: CallOptions): Promise<SyncResult> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/admin/credits/sync", { headers: { "Idempotency-Key": key }, signal }),
    );
  }

  /** Revenue, sales, spends, grants, runway. */
  report(options?: CallOptions): Promise<Report> {
    return this.read(options, (signal) => this.client.GET("/api/admin/report", { signal }));
  }

  /** The ledger in order: entries after `after`, at most `limit` (1–1 000). */
  ledger(query: { after?: number; limit?: number } = {}, options?: CallOptions): Promise<LedgerPage> {
    return this.read(options, (signal) => this.client.GET("/api/admin/ledger", { params: { query }, signal }));
  }

  /** Open alerts and recent alert events. */
  alerts(options?: CallOptions): Promise<Alerts> {
    return this.read(options, (signal) => this.client.GET("/api/admin/alerts", { signal }));
  }

  /** The kill switch: every purchase answers 503 `purchases_disabled` until enabled. */
  disablePurchases(reason: string, options?: CallOptions): Promise<PurchasesState> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/admin/purchases/disable", {
        body: { reason },
        headers: { "Idempotency-Key": key },
        signal,
      }),
    );
  }

  enablePurchases(options?: CallOptions): Promise<PurchasesState> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/admin/purchases/enable", { headers: { "Idempotency-Key": key }, signal }),
    );
  }

  /** Changes a package's `enabled`, `credits`, `price` or `expiresAfterDays` (fields left out stay). */
  updatePackage(packageId: PackageId, update: PackageUpdate, options?: CallOptions): Promise<AdminPackage> {
    return this.write(options, (_key, signal) =>
      this.client.PUT("/api/admin/packages/{packageId}", { params: { path: { packageId } }, body: update, signal }),
    );
  }

  /** A promotional grant: reserves like a sale, earns nothing, may expire. */
  createGrant(body: Schemas["GrantRequest"], options?: CallOptions): Promise<Grant> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/admin/grants", { body, params: { header: { "Idempotency-Key": key } }, signal }),
    );
  }

  /** Removes what is left of a grant (fraud, a chargeback); a second void answers the first. */
  voidGrant(grantId: string, reason: string, options?: CallOptions): Promise<Void> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/admin/grants/{grantId}/void", {
        params: { path: { grantId } },
        body: { reason },
        headers: { "Idempotency-Key": key },
        signal,
      }),
    );
  }

  /** A new API key; its secret is in this answer only. */
  createApiKey(body: Schemas["CreateKeyRequest"], options?: CallOptions): Promise<KeyCreated> {
    return this.write(options, (key, signal) =>
      this.client.POST("/api/admin/keys", { body, headers: { "Idempotency-Key": key }, signal }),
    );
  }

  listApiKeys(options?: CallOptions): Promise<Keys> {
    return this.read(options, (signal) => this.client.GET("/api/admin/keys", { signal }));
  }

  revokeApiKey(id: string, options?: CallOptions): Promise<Key> {
    return this.write(options, (_key, signal) =>
      this.client.DELETE("/api/admin/keys/{id}", { params: { path: { id } }, signal }),
    );
  }

  /** Whether this node serves (200), for load balancers; a standby's 503 rejects. */
  ready(options?: CallOptions): Promise<Health> {
    return this.read(options, (signal) => this.client.GET("/readyz", { signal }));
  }

  // --- The calls ----------------------------------------------------------

  private read<T>(options: CallOptions | undefined, send: (signal: AbortSignal) => Promise<Answer<T>>) {
    return this.call(options, undefined, (_key, signal) => send(signal));
  }

  private async write<T>(
    options: CallOptions | undefined,
    send: (key: string, signal: AbortSignal) => Promise<Answer<T>>,
  ) {
    return this.call(options, options?.idempotencyKey ?? (await this.newKey()), send);
  }

  /** Sends, and resends with the same key while the answer invites it. */
  private async call<T>(
    options: CallOptions | undefined,
    key: string | undefined,
    send: (key: string, signal: AbortSignal) => Promise<Answer<T>>,
  ): Promise<T> {
    const deadline = new Deadline(options?.signal, options?.timeoutMs ?? this.timeoutMs);
    try {
      for (let attempt = 1; ; attempt++) {
        let failure: CreditdError;
        try {
          const { data, error, response } = await send(key ?? "", deadline.signal);
          if (response.ok) return data as T;
          failure = this.failure(error, response, key);
        } catch (cause) {
          deadline.throwIfDone(key);
          failure = new NetworkError({
            code: "network_error",
            status: 0,
            message: `no answer from creditd: ${cause instanceof Error ? cause.message : String(cause)}`,
            idempotencyKey: key,
            cause,
          });
        }
        const retried =
          failure.code === "network_error" ||
          RETRIED.has(failure.code) ||
          (failure.code === "unexpected_response" && GATEWAY.has(failure.status));
        if (!retried || attempt >= this.attempts) throw failure;
        await deadline.sleep(this.backoff(attempt), key);
      }
    } finally {
      deadline.dispose();
    }
  }

  /** Full jitter: a random wait under min(max, base × 2^(attempt − 1)). */
  private backoff(attempt: number): number {
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    return Math.random() * ceiling;
  }

  private failure(body: unknown, response: Response, key: string | undefined): CreditdError {
    const detail = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const retryAfter = Number(response.headers.get("Retry-After"));
    const common = {
      status: response.status,
      idempotencyKey: key,
      retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
    };
    if (typeof detail?.code === "string" && typeof detail.message === "string") {
      return errorFor({ ...common, code: detail.code as ErrorCode, message: detail.message });
    }
    const code: ClientErrorCode = "unexpected_response";
    return new CreditdError({ ...common, code, message: `creditd answered ${response.status} without an error body` });
  }
}

/** A random UUID: the Web Crypto API's, or Node 18's `node:crypto` (no global `crypto` there). */
function randomUUID(): string | Promise<string> {
  const webCrypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (webCrypto?.randomUUID) return webCrypto.randomUUID();
  const nodeCrypto = "node:crypto"; // a name bundlers for edge runtimes leave alone
  return import(nodeCrypto).then((module: { randomUUID: () => string }) => module.randomUUID());
}

/** A call's abort signal: the caller's, and its timeout. */
class Deadline {
  private readonly controller = new AbortController();
  private readonly timer?: ReturnType<typeof setTimeout>;
  private timedOut = false;
  private readonly onAbort = () => this.controller.abort(this.caller?.reason);

  constructor(
    private readonly caller: AbortSignal | undefined,
    private readonly timeoutMs: number | undefined,
  ) {
    if (caller?.aborted) this.controller.abort(caller.reason);
    caller?.addEventListener("abort", this.onAbort, { once: true });
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.controller.abort();
      }, timeoutMs);
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** After a failed attempt: rejects as the caller's abort or the timeout, if either happened. */
  throwIfDone(key: string | undefined): void {
    if (this.timedOut) {
      throw new TimeoutError({
        code: "timeout",
        status: 0,
        message: `creditd did not answer within ${this.timeoutMs} ms`,
        idempotencyKey: key,
      });
    }
    if (this.caller?.aborted) throw this.caller.reason;
  }

  /** Waits `ms`, unless the call is aborted or times out first. */
  async sleep(ms: number, key: string | undefined): Promise<void> {
    this.throwIfDone(key);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.controller.signal;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
    this.throwIfDone(key);
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.caller?.removeEventListener("abort", this.onAbort);
  }
}
