// Errors of the creditd client: one class per thing a storefront does about
// it, each carrying the server's `code`, the HTTP status and its message.
import type { components } from "./schema.js";

/** The error codes of creditd's API (SPEC §9), from its OpenAPI document. */
export type ErrorCode = components["schemas"]["ErrorCode"];

/** The codes the client itself gives: no answer, or an answer it cannot read. */
export type ClientErrorCode = "network_error" | "timeout" | "unexpected_response";

export interface ErrorDetails {
  code: ErrorCode | ClientErrorCode;
  /** The HTTP status; 0 when no answer arrived. */
  status: number;
  message: string;
  /** The `Idempotency-Key` the call sent (on every POST): retry with it to learn the outcome. */
  idempotencyKey?: string;
  /** `Retry-After`, in seconds, when the server sent one (429). */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/** Every error of the client. `code` is the server's, or a `ClientErrorCode`. */
export class CreditdError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  readonly status: number;
  readonly idempotencyKey?: string;
  readonly retryAfterSeconds?: number;

  constructor(details: ErrorDetails) {
    super(details.message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code;
    this.status = details.status;
    this.idempotencyKey = details.idempotencyKey;
    this.retryAfterSeconds = details.retryAfterSeconds;
  }
}

/** 400: the request is wrong (`invalid_request`, `missing_idempotency_key`, 408, 413, 415); fix the call, do not retry it. */
export class InvalidRequestError extends CreditdError {}
/** 401 `unauthorized`: the API key is missing, unknown or revoked. */
export class UnauthorizedError extends CreditdError {}
/** 403 `forbidden`: the API key lacks the route's scope. */
export class ForbiddenError extends CreditdError {}
/** 404 `not_found`: unknown package, user, hold, spend, grant or route. */
export class NotFoundError extends CreditdError {}
/** 409 `insufficient_capacity`: the platform cannot back this sale now; show "Service temporarily unavailable". */
export class InsufficientCapacityError extends CreditdError {}
/** 409 `package_disabled`: an operator disabled the package; show "Temporarily unavailable". */
export class PackageDisabledError extends CreditdError {}
/** 503 `purchases_disabled`: the kill switch is on; nothing was applied. */
export class PurchasesDisabledError extends CreditdError {}
/** 409 `insufficient_funds`: a spend larger than the wallet. */
export class InsufficientFundsError extends CreditdError {}
/**
 * 409: the hold, spend or grant is past the step asked (`hold_captured`,
 * `hold_released`, `hold_expired`, `already_refunded`, `spend_completed`,
 * `grant_closed`) or the user has too many open holds (`too_many_holds`).
 */
export class ConflictError extends CreditdError {}
/**
 * `idempotency_key_reused` (422: the key was used with another body) or
 * `idempotency_key_in_use` (409: the first request with this key is still
 * being decided; retry later with the same key).
 */
export class IdempotencyError extends CreditdError {}
/** 429 `rate_limited`: come back after `retryAfterSeconds`. */
export class RateLimitedError extends CreditdError {}
/**
 * 503 `outcome_unknown`, after the client's own retries: the change may or
 * may not be applied. Retry later with `idempotencyKey` to learn which.
 */
export class OutcomeUnknownError extends CreditdError {}
/** 503 `not_leader`, after the client's own retries: a standby answered (cluster mode). Nothing was applied. */
export class NotLeaderError extends CreditdError {}
/**
 * The server cannot serve now and applied nothing: 503
 * `enhancement_unavailable`, 502 `sync_failed`, and (after the client's own
 * retries) 503 `not_ready` and `overloaded`.
 */
export class UnavailableError extends CreditdError {}
/**
 * No answer, after the client's own retries. For a POST the outcome is
 * unknown: retry later with `idempotencyKey`.
 */
export class NetworkError extends CreditdError {}
/** The call's `timeoutMs` passed. For a POST the outcome is unknown: retry later with `idempotencyKey`. */
export class TimeoutError extends CreditdError {}

const byCode: Partial<Record<ErrorCode, new (details: ErrorDetails) => CreditdError>> = {
  invalid_request: InvalidRequestError,
  missing_idempotency_key: InvalidRequestError,
  request_timeout: InvalidRequestError,
  payload_too_large: InvalidRequestError,
  unsupported_media_type: InvalidRequestError,
  method_not_allowed: InvalidRequestError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  insufficient_capacity: InsufficientCapacityError,
  package_disabled: PackageDisabledError,
  purchases_disabled: PurchasesDisabledError,
  insufficient_funds: InsufficientFundsError,
  hold_captured: ConflictError,
  hold_released: ConflictError,
  hold_expired: ConflictError,
  already_refunded: ConflictError,
  spend_completed: ConflictError,
  grant_closed: ConflictError,
  too_many_holds: ConflictError,
  idempotency_key_in_use: IdempotencyError,
  idempotency_key_reused: IdempotencyError,
  rate_limited: RateLimitedError,
  outcome_unknown: OutcomeUnknownError,
  not_leader: NotLeaderError,
  not_ready: UnavailableError,
  enhancement_unavailable: UnavailableError,
  overloaded: UnavailableError,
  sync_failed: UnavailableError,
};

/** The typed error of a server's error answer. */
export function errorFor(details: ErrorDetails): CreditdError {
  const Class = byCode[details.code as ErrorCode] ?? CreditdError;
  return new Class(details);
}
