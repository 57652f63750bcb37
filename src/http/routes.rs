//! The handlers of SPEC §9. Each parses its input into domain types, calls
//! the engine once, and renders the answer; errors go through `ApiError`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::dto::{
    AdminCreditsResponse, AdminPackageResponse, AlertsResponse, CaptureResponse, CatalogueResponse, CompletionResponse,
    DisableRequest, HealthResponse, HoldRequest, HoldResponse, LedgerEntryResponse, LedgerPageResponse, LedgerQuery,
    PackageUpdateRequest, PurchaseRequest, PurchaseResponse, PurchasesStateResponse, RefundResponse, ReleaseResponse,
    ReportResponse, SpendRequest, SpendResponse, StatusResponse, SyncResponse, UserCreditsResponse,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{authorize, fingerprint, idempotency_key, json_body, required_idempotency_key};
use super::AppState;
use crate::actors::inventory::UpdatePackage;
use crate::actors::EngineError;
use crate::domain::{
    package_credits, package_price, HoldId, Needs, PackageError, PackageId, Reason, ScopedKey, SpendId, UserCredits,
    UserId, PACKAGE_EXPIRY_DAYS_MAX, QUANTITY_MAX,
};

/// Entries shown with a wallet.
const USER_ENTRIES_DEFAULT: usize = crate::domain::ledger::WALLET_RECENT_MAX;
const LEDGER_PAGE_DEFAULT: usize = 100;

type Answer = Result<HttpResponse, ApiError>;

#[utoipa::path(get, path = "/api/credits/purchase", tag = "storefront",
    summary = "The catalogue: packages, platform status and capacity",
    responses(
        (status = 200, description = "What can be sold now", body = CatalogueResponse),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn catalogue(state: web::Data<AppState>) -> Answer {
    let view = state.engine.published_view().await?;
    if !view.ready {
        return Err(EngineError::NotReady("waiting for the first provider sync").into());
    }
    Ok(HttpResponse::Ok().json(CatalogueResponse::from(&view)))
}

#[utoipa::path(get, path = "/api/credits/status", tag = "storefront",
    summary = "Platform status and its message, cheap enough to poll",
    responses(
        (status = 200, description = "The status", body = StatusResponse),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn status(state: web::Data<AppState>) -> Answer {
    let view = state.engine.published_view().await?;
    if !view.ready {
        return Err(EngineError::NotReady("waiting for the first provider sync").into());
    }
    Ok(HttpResponse::Ok().json(StatusResponse::from(&view)))
}

#[utoipa::path(post, path = "/api/credits/purchase", tag = "storefront",
    summary = "Buy a package for a user",
    params(
        ("Idempotency-Key" = String, Header, description = "Required. 1–255 printable bytes; a retry with the same key and body gets the first answer", min_length = 1, max_length = 255),
    ),
    request_body(content = PurchaseRequest, content_type = "application/json"),
    security(("bearer" = ["storefront", "admin"])),
    responses(
        (status = 200, description = "Bought (or the first answer to this key)", body = PurchaseResponse),
        (status = 400, description = "`invalid_request` (the message names the field) or `missing_idempotency_key`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `storefront` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown package", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 409, description = "`insufficient_capacity` (\"Service temporarily unavailable\"), `package_disabled` (\"Temporarily unavailable\") or `idempotency_key_in_use`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used with another body", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`purchases_disabled` (kill switch), `not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn purchase(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Storefront)?;
    let key = required_idempotency_key(&request)?;
    let body: PurchaseRequest = json_body(&request, payload).await?;
    let user = UserId::parse(&body.user_id).map_err(|error| ApiError::invalid("userId", error))?;
    let package = PackageId::parse(&body.package_id).map_err(|error| ApiError::invalid("packageId", error))?;
    let fingerprint = fingerprint(&[b"purchase", user.as_str().as_bytes(), package.as_str().as_bytes()]);
    let receipt = state.engine.purchase(user, package, ScopedKey::new(caller.id, key), fingerprint).await?;
    Ok(HttpResponse::Ok().json(PurchaseResponse::from(receipt)))
}

#[utoipa::path(post, path = "/api/credits/holds", tag = "storefront",
    summary = "Reserve a package for a user while the storefront takes payment",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Optional. 1–255 printable bytes", min_length = 1, max_length = 255),
    ),
    request_body(content = HoldRequest, content_type = "application/json"),
    security(("bearer" = ["storefront", "admin"])),
    responses(
        (status = 200, description = "Held until `expiresAt` (or the first answer to this key)", body = HoldResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `storefront` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown package", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 409, description = "`insufficient_capacity`, `package_disabled`, `idempotency_key_in_use`, or `too_many_holds` (the user already holds `max_open_holds_per_user` open holds)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`purchases_disabled`, `not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn create_hold(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Storefront)?;
    let key = idempotency_key(&request)?;
    let body: HoldRequest = json_body(&request, payload).await?;
    let user = UserId::parse(&body.user_id).map_err(|error| ApiError::invalid("userId", error))?;
    let package = PackageId::parse(&body.package_id).map_err(|error| ApiError::invalid("packageId", error))?;
    let max = state.hold_ttl_max_secs;
    let ttl_seconds = match body.ttl_seconds {
        None => state.hold_ttl_default_secs,
        Some(seconds) => u64::try_from(seconds)
            .ok()
            .filter(|seconds| (1..=max).contains(seconds))
            .ok_or_else(|| ApiError::invalid("ttlSeconds", format!("must be between 1 and {max}")))?,
    };
    let ttl = ttl_seconds.to_be_bytes();
    let fingerprint = fingerprint(&[b"hold", user.as_str().as_bytes(), package.as_str().as_bytes(), &ttl]);
    let ttl_ms = ttl_seconds.saturating_mul(1000);
    let key = key.map(|key| ScopedKey::new(caller.id.clone(), key));
    let receipt = state.engine.create_hold(user, package, ttl_ms, key, fingerprint, caller.id).await?;
    Ok(HttpResponse::Ok().json(HoldResponse::from(receipt)))
}

fn hold_id(path: web::Path<String>) -> Result<HoldId, ApiError> {
    HoldId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("holdId", error))
}

/// Capture and release take no body; an `Idempotency-Key` is accepted and
/// checked, and the hold's own state makes a retry return the first answer.
#[utoipa::path(post, path = "/api/credits/holds/{holdId}/capture", tag = "storefront",
    summary = "Turn a hold into wallet credits; a second capture gets the first answer",
    params(
        ("holdId" = String, Path, min_length = 1, max_length = 128),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional. 1–255 printable bytes", min_length = 1, max_length = 255),
    ),
    security(("bearer" = ["storefront", "admin"])),
    responses(
        (status = 200, description = "Captured", body = CaptureResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `storefront` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown hold, or a hold made by another API key (only the key that made it, or an admin key, may finish it)", body = ErrorBody),
        (status = 409, description = "`hold_released` or `hold_expired`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn capture_hold(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Storefront)?;
    idempotency_key(&request)?;
    let receipt = state.engine.capture(hold_id(path)?, caller).await?;
    Ok(HttpResponse::Ok().json(CaptureResponse::from(receipt)))
}

#[utoipa::path(post, path = "/api/credits/holds/{holdId}/release", tag = "storefront",
    summary = "Give a hold's capacity back; a second release gets the first answer",
    params(
        ("holdId" = String, Path, min_length = 1, max_length = 128),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional. 1–255 printable bytes", min_length = 1, max_length = 255),
    ),
    security(("bearer" = ["storefront", "admin"])),
    responses(
        (status = 200, description = "Released", body = ReleaseResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `storefront` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown hold, or a hold made by another API key (only the key that made it, or an admin key, may finish it)", body = ErrorBody),
        (status = 409, description = "`hold_captured` or `hold_expired`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn release_hold(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Storefront)?;
    idempotency_key(&request)?;
    let receipt = state.engine.release(hold_id(path)?, caller).await?;
    Ok(HttpResponse::Ok().json(ReleaseResponse::from(receipt)))
}

#[utoipa::path(post, path = "/api/credits/spend", tag = "enhancement",
    summary = "Spend a user's credits before calling the provider",
    params(
        ("Idempotency-Key" = String, Header, description = "Required. 1–255 printable bytes; a retry with the same key and body gets the first answer", min_length = 1, max_length = 255),
    ),
    request_body(content = SpendRequest, content_type = "application/json"),
    security(("bearer" = ["enhancement", "admin"])),
    responses(
        (status = 200, description = "Spent (or the first answer to this key)", body = SpendResponse),
        (status = 400, description = "`invalid_request` (the message names the field) or `missing_idempotency_key`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `enhancement` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: a user who never had a wallet", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 409, description = "`insufficient_funds` or `idempotency_key_in_use`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`enhancement_unavailable` (\"Enhancement temporarily unavailable\"), `not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn spend(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Enhancement)?;
    let key = required_idempotency_key(&request)?;
    let body: SpendRequest = json_body(&request, payload).await?;
    let user = UserId::parse(&body.user_id).map_err(|error| ApiError::invalid("userId", error))?;
    let credits = UserCredits::positive_from_i64(body.credits).map_err(|error| ApiError::invalid("credits", error))?;
    let reason =
        body.reason.as_deref().map(Reason::parse).transpose().map_err(|error| ApiError::invalid("reason", error))?;
    let amount = credits.get().to_be_bytes();
    let reason_bytes = reason.as_ref().map_or(&b""[..], |reason| reason.as_str().as_bytes());
    let fingerprint = fingerprint(&[b"spend", user.as_str().as_bytes(), &amount, reason_bytes]);
    let receipt = state.engine.spend(user, credits, reason, ScopedKey::new(caller.id, key), fingerprint).await?;
    Ok(HttpResponse::Ok().json(SpendResponse::from(receipt)))
}

/// A completion needs no body; the spend's own state makes it happen once.
#[utoipa::path(post, path = "/api/credits/spend/{spendId}/complete", tag = "enhancement",
    summary = "The provider did the work: the open spend is final",
    params(
        ("spendId" = String, Path, min_length = 1, max_length = 128),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional. 1–255 printable bytes", min_length = 1, max_length = 255),
    ),
    security(("bearer" = ["enhancement", "admin"])),
    responses(
        (status = 200, description = "Completed (also a second completion, or one of a spend that completed by itself after `spend_complete_after_secs`)", body = CompletionResponse),
        (status = 400, description = "`invalid_request`: a bad id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `enhancement` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown spend, or a spend made by another API key (only the key that made it, or an admin key, may finish it)", body = ErrorBody),
        (status = 409, description = "`already_refunded`: the spend was refunded", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn complete(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Enhancement)?;
    idempotency_key(&request)?;
    let spend_id = SpendId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("spendId", error))?;
    let receipt = state.engine.complete(spend_id, caller).await?;
    Ok(HttpResponse::Ok().json(CompletionResponse::from(receipt)))
}

/// A refund needs no body; the spend's own state makes it happen once.
#[utoipa::path(post, path = "/api/credits/spend/{spendId}/refund", tag = "enhancement",
    summary = "The provider call failed: undo an open spend, once",
    params(
        ("spendId" = String, Path, min_length = 1, max_length = 128),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional. 1–255 printable bytes", min_length = 1, max_length = 255),
    ),
    security(("bearer" = ["enhancement", "admin"])),
    responses(
        (status = 200, description = "Refunded", body = RefundResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `enhancement` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown spend, or a spend made by another API key (only the key that made it, or an admin key, may finish it)", body = ErrorBody),
        (status = 409, description = "`already_refunded`, or `spend_completed` (the spend was completed, by the service or by time: the provider did the work)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn refund(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Enhancement)?;
    idempotency_key(&request)?;
    let spend_id = SpendId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("spendId", error))?;
    let receipt = state.engine.refund(spend_id, caller).await?;
    Ok(HttpResponse::Ok().json(RefundResponse::from(receipt)))
}

#[utoipa::path(get, path = "/api/users/{userId}/credits", tag = "storefront",
    summary = "A user's wallet and recent ledger entries",
    params(("userId" = String, Path, min_length = 1, max_length = 128)),
    security(("bearer" = ["storefront", "enhancement", "read", "admin"])),
    responses(
        (status = 200, description = "The wallet", body = UserCreditsResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key has none of the scopes `storefront`, `enhancement` or `read` (nor `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: a user who never had a wallet", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn user_credits(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::WalletRead)?;
    let user = UserId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("userId", error))?;
    let (wallet, entries) = state.engine.user_credits(user.clone(), USER_ENTRIES_DEFAULT).await?;
    let (balance, grants, expiring) = super::grants::wallet_grants(&wallet, state.engine.now_ms());
    Ok(HttpResponse::Ok().json(UserCreditsResponse {
        user_id: user.into(),
        balance,
        grants,
        expiring,
        entries: entries
            .into_iter()
            .map(|(entry, spend_state)| LedgerEntryResponse { spend_state, ..LedgerEntryResponse::from(entry) })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/admin/ledger", tag = "admin",
    summary = "The ledger in order, for audit and export",
    params(
        ("after" = Option<u64>, Query, description = "Entries after this sequence number (default 0)", minimum = 0, maximum = 9007199254740991_i64),
        ("limit" = Option<u64>, Query, description = "At most this many (1–1000, default 100)", minimum = 1, maximum = 1000),
    ),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "A page of the ledger", body = LedgerPageResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn ledger(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let query = web::Query::<LedgerQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::invalid("query", error))?
        .into_inner();
    let after = query.after.unwrap_or(0);
    if after > QUANTITY_MAX {
        return Err(ApiError::invalid("after", format!("must be at most {QUANTITY_MAX}")));
    }
    let limit = query.limit.unwrap_or(LEDGER_PAGE_DEFAULT);
    if !(1..=crate::domain::ledger::PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {}", crate::domain::ledger::PAGE_MAX)));
    }
    let entries = state.engine.ledger_page(after, limit).await?;
    let next_after = (entries.len() == limit).then(|| entries.last().map(|entry| entry.seq)).flatten();
    Ok(HttpResponse::Ok()
        .json(LedgerPageResponse { entries: entries.into_iter().map(LedgerEntryResponse::from).collect(), next_after }))
}

#[utoipa::path(get, path = "/api/admin/credits", tag = "admin",
    summary = "Real vs database balance, drift, last sync, levels, reserve band",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The operators' view", body = AdminCreditsResponse),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn admin_credits(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let view = state.engine.snapshot().await?;
    let sync = state.engine.sync_status().await?;
    Ok(HttpResponse::Ok().json(AdminCreditsResponse::new(&view, &sync, state.engine.settings().levels)))
}

#[utoipa::path(post, path = "/api/admin/credits/sync", tag = "admin",
    summary = "Sync Real Credits: fetch the provider balance now",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Synced", body = SyncResponse),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 502, description = "`sync_failed`: the provider could not give a valid answer; the message says why", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn admin_sync(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let report = state.engine.sync_now().await?;
    Ok(HttpResponse::Ok().json(SyncResponse::from(report)))
}

/// The reason an operator gives for the kill switch: 1–500 bytes, printable.
const REASON_BYTES_MAX: usize = 500;

#[utoipa::path(post, path = "/api/admin/purchases/disable", tag = "admin",
    summary = "Kill switch on: purchases and holds answer 503",
    request_body(content = DisableRequest, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Disabled", body = PurchasesStateResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn disable_purchases(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let body: DisableRequest = json_body(&request, payload).await?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > REASON_BYTES_MAX || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", format!("must be 1 to {REASON_BYTES_MAX} printable bytes")));
    }
    let answer = state.engine.set_purchases_enabled(false, Some(reason)).await?;
    Ok(HttpResponse::Ok().json(PurchasesStateResponse::from(answer)))
}

#[utoipa::path(post, path = "/api/admin/purchases/enable", tag = "admin",
    summary = "Kill switch off",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Enabled", body = PurchasesStateResponse),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn enable_purchases(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let answer = state.engine.set_purchases_enabled(true, None).await?;
    Ok(HttpResponse::Ok().json(PurchasesStateResponse::from(answer)))
}

#[utoipa::path(put, path = "/api/admin/packages/{packageId}", tag = "admin",
    summary = "Enable, disable, re-price or resize a package",
    params(("packageId" = String, Path, min_length = 1, max_length = 128)),
    request_body(content = PackageUpdateRequest, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The package's new settings", body = AdminPackageResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, missing, unknown or ill-typed field, bad amount or id; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown package", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded` (nothing was applied), or `outcome_unknown` (the change was handed to storage but not confirmed durable: retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn update_package(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let package_id = PackageId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("packageId", error))?;
    let body: PackageUpdateRequest = json_body(&request, payload).await?;
    if body.enabled.is_none() && body.price.is_none() && body.credits.is_none() && body.expires_after_days.is_none() {
        return Err(ApiError::invalid("body", "name at least one of enabled, price, credits, expiresAfterDays"));
    }
    // SPEC §9.2: bounded here, once, so that nothing downstream can overflow.
    let credits = body
        .credits
        .map(|credits| u64::try_from(credits).map_err(|_| PackageError::Credits).and_then(package_credits))
        .transpose()
        .map_err(|error| ApiError::invalid("credits", error))?;
    let price = body
        .price
        .map(|price| u64::try_from(price).map_err(|_| PackageError::Price).and_then(package_price))
        .transpose()
        .map_err(|error| ApiError::invalid("price", error))?;
    let expires_after_days = body
        .expires_after_days
        .map(|days| {
            days.map(|days| {
                u32::try_from(days)
                    .ok()
                    .filter(|days| (1..=PACKAGE_EXPIRY_DAYS_MAX).contains(days))
                    .ok_or(PackageError::Expiry)
            })
            .transpose()
        })
        .transpose()
        .map_err(|error| ApiError::invalid("expiresAfterDays", error))?;
    let update =
        UpdatePackage { package_id, enabled: body.enabled, credits, price_minor_units: price, expires_after_days };
    let package = state.engine.update_package(update).await?;
    Ok(HttpResponse::Ok().json(AdminPackageResponse::from(package)))
}

#[utoipa::path(get, path = "/api/admin/alerts", tag = "admin",
    summary = "Open alerts and the most recent events (at most 500, oldest first)",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Alerts", body = AlertsResponse),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn admin_alerts(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let view = state.engine.alerts().await?;
    Ok(HttpResponse::Ok().json(AlertsResponse::from(view)))
}

#[utoipa::path(get, path = "/api/admin/report", tag = "admin",
    summary = "Revenue, cost, margin, burn rate, runway and what to buy (SPEC §8)",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The report", body = ReportResponse),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn admin_report(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let report = state.engine.report().await?;
    Ok(HttpResponse::Ok().json(ReportResponse::new(&report.0, &report.1)))
}

/// The admin dashboard (SPEC §9): one self-contained page, embedded in the
/// binary. It holds no secret: the token is typed in and kept in the tab's
/// session storage, and every call it makes is an ordinary admin API call.
const ADMIN_PAGE: &str = include_str!("assets/admin.html");

#[utoipa::path(get, path = "/admin", tag = "operations",
    summary = "The admin dashboard page (HTML)",
    responses((status = 200, description = "One self-contained page", content_type = "text/html")))]
pub async fn admin_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-store"))
        .body(ADMIN_PAGE)
}

/// The OpenAPI document (not itself listed in it).
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi.clone())
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    summary = "The process is alive",
    responses((status = 200, description = "Alive", body = HealthResponse)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    summary = "Ready to serve: synced once since start, storage healthy",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "`not_ready` (before the first successful sync, or after a storage failure) or `overloaded`", body = ErrorBody),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Answer {
    if state.engine.health().ready() {
        Ok(HttpResponse::Ok().json(HealthResponse { status: "ready" }))
    } else if state.engine.health().storage_failed() {
        Err(EngineError::NotReady("storage failed; restart required").into())
    } else {
        Err(EngineError::NotReady("waiting for the first provider sync").into())
    }
}

pub async fn not_found(request: HttpRequest) -> Answer {
    Err(ApiError::NotFound(format!("no route {} {}", request.method(), request.path())))
}

/// 405 for a method the resource does not serve; `allow` lists those it does.
pub fn method_not_allowed(allow: String) -> Answer {
    Err(ApiError::MethodNotAllowed { allow })
}
