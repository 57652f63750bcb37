//! The grant routes of SPEC §13: `POST /api/admin/grants` (a promotional
//! grant) and `POST /api/admin/grants/{id}/void`, with their JSON shapes,
//! and the wallet's `grants` and `expiring`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::{authorize, fingerprint, json_body, required_idempotency_key};
use super::AppState;
use crate::clock::rfc3339;
use crate::domain::grants::{self, Grant, EXPIRING_WITHIN_MS};
use crate::domain::{GrantId, Needs, Reason, ScopedKey, UserCredits, UserId, QUANTITY_MAX};
use crate::store::records::{GrantReceipt, VoidReceipt, WalletRecord};

type Answer = Result<HttpResponse, ApiError>;

/// The most credits one promotional grant gives (a package's bound).
pub const GRANT_CREDITS_MAX: u64 = crate::domain::PACKAGE_CREDITS_MAX;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrantRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: String,
    /// User credits, 1 to 1 000 000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub credits: i64,
    /// Why (a sign-up bonus, a goodwill gesture): printable, at most 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub reason: String,
    /// RFC 3339, in the future; absent or `null`: never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    /// Why (fraud, a chargeback): printable, at most 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub reason: String,
}

/// A new grant (SPEC §13).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantResponse {
    pub grant_id: String,
    pub user_id: String,
    /// `paid` or `promotional`.
    pub kind: &'static str,
    pub credits: u64,
    /// `null`: never expires.
    pub expires_at: Option<String>,
}

impl From<GrantReceipt> for GrantResponse {
    fn from(receipt: GrantReceipt) -> Self {
        Self {
            grant_id: receipt.grant_id.to_string(),
            user_id: receipt.user_id.into(),
            kind: receipt.kind.as_str(),
            credits: receipt.credits.get(),
            expires_at: receipt.expires_at_ms.map(rfc3339),
        }
    }
}

/// A voided grant: its remaining credits left the wallet at `voidedAt`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoidResponse {
    pub grant_id: String,
    pub user_id: String,
    pub kind: &'static str,
    /// What it granted.
    pub credits: u64,
    pub remaining: u64,
    pub expires_at: Option<String>,
    /// `voided`.
    pub state: &'static str,
    pub voided_at: String,
}

impl From<VoidReceipt> for VoidResponse {
    fn from(receipt: VoidReceipt) -> Self {
        Self {
            grant_id: receipt.grant_id.to_string(),
            user_id: receipt.user_id.into(),
            kind: receipt.kind.as_str(),
            credits: receipt.credits.get(),
            remaining: 0,
            expires_at: receipt.expires_at_ms.map(rfc3339),
            state: "voided",
            voided_at: rfc3339(receipt.voided_at_ms),
        }
    }
}

/// One grant of a wallet, with credits left.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletGrantResponse {
    pub grant_id: String,
    /// `paid` or `promotional`.
    pub kind: &'static str,
    pub credits: u64,
    pub remaining: u64,
    pub created_at: String,
    /// `null`: never expires.
    pub expires_at: Option<String>,
}

impl From<&Grant> for WalletGrantResponse {
    fn from(grant: &Grant) -> Self {
        Self {
            grant_id: grant.id().to_string(),
            kind: grant.kind.as_str(),
            credits: grant.credits.get(),
            remaining: grant.remaining.get(),
            created_at: rfc3339(grant.created_at_ms),
            expires_at: grant.expires_at_ms.map(rfc3339),
        }
    }
}

/// The credits that expire before `before` (now + 7 days).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiringResponse {
    pub credits: u64,
    pub before: String,
}

/// A wallet's balance, grants and expiring credits at `now_ms` (SPEC §13):
/// grants past their `expiresAt` no longer count, before their expiry is
/// written.
pub fn wallet_grants(wallet: &WalletRecord, now_ms: u64) -> (u64, Vec<WalletGrantResponse>, ExpiringResponse) {
    let live = grants::shown(&wallet.grants, now_ms);
    let before = now_ms.saturating_add(EXPIRING_WITHIN_MS);
    let expiring = grants::expiring(&wallet.grants, now_ms, before).map_or(0, UserCredits::get);
    (
        wallet.balance_at(now_ms).get(),
        live.into_iter().map(WalletGrantResponse::from).collect(),
        ExpiringResponse { credits: expiring, before: rfc3339(before) },
    )
}

/// An RFC 3339 instant as milliseconds since the epoch.
fn instant_ms(value: &str) -> Result<u64, String> {
    let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("not an RFC 3339 date-time: {error}"))?;
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).ok().filter(|ms| *ms <= QUANTITY_MAX).ok_or_else(|| "out of range".to_owned())
}

#[utoipa::path(post, path = "/api/admin/grants", tag = "admin",
    summary = "Give a user promotional credits; reserves capacity like a sale, earns nothing",
    params(
        ("Idempotency-Key" = String, Header, description = "Required. 1–255 printable bytes; a retry with the same key and body gets the first answer", min_length = 1, max_length = 255),
    ),
    request_body(content = GrantRequest, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Granted (or the first answer to this key)", body = GrantResponse),
        (status = 400, description = "`invalid_request` (the message names the field: `userId`, `credits`, `reason`, `expiresAt`) or `missing_idempotency_key`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 409, description = "`insufficient_capacity` (the provider balance cannot back it) or `idempotency_key_in_use`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used with another body", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (retry with the same key to learn whether it was applied)", body = ErrorBody),
    ))]
pub async fn create_grant(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    let caller = authorize(&request, &state, Needs::Admin)?;
    let key = required_idempotency_key(&request)?;
    let body: GrantRequest = json_body(&request, payload).await?;
    let user = UserId::parse(&body.user_id).map_err(|error| ApiError::invalid("userId", error))?;
    let credits = u64::try_from(body.credits)
        .ok()
        .filter(|credits| (1..=GRANT_CREDITS_MAX).contains(credits))
        .and_then(|credits| UserCredits::positive(credits).ok())
        .ok_or_else(|| ApiError::invalid("credits", format!("must be from 1 to {GRANT_CREDITS_MAX}")))?;
    let reason = Reason::parse(body.reason.trim()).map_err(|error| ApiError::invalid("reason", error))?;
    let expires_at_ms = body
        .expires_at
        .as_deref()
        .map(instant_ms)
        .transpose()
        .map_err(|error| ApiError::invalid("expiresAt", error))?;
    // An `expiresAt` already past is refused by the engine, after the key:
    // a retry of a grant made before its expiry gets its first answer.
    let expiry = expires_at_ms.map_or_else(|| "never".to_owned(), |ms| ms.to_string());
    let fingerprint = fingerprint(&[
        b"grant",
        user.as_str().as_bytes(),
        &credits.get().to_be_bytes(),
        reason.as_str().as_bytes(),
        expiry.as_bytes(),
    ]);
    let key = ScopedKey::new(caller.id, key);
    let receipt = state.engine.grant(user, credits, expires_at_ms, reason, key, fingerprint).await?;
    Ok(HttpResponse::Created().json(GrantResponse::from(receipt)))
}

#[utoipa::path(post, path = "/api/admin/grants/{grantId}/void", tag = "admin",
    summary = "Void a grant: its remaining credits leave the wallet at once; voiding again answers the first void",
    params(("grantId" = String, Path, description = "`grant_` and a number", pattern = "^grant_[1-9][0-9]{0,18}$")),
    request_body(content = VoidRequest, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Voided (or the first void of it)", body = VoidResponse),
        (status = 400, description = "`invalid_request`: a bad id or reason; the message names the field", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "`not_found`: no such grant", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 409, description = "`grant_closed`: the grant has expired", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (retry: voiding again answers the first void)", body = ErrorBody),
    ))]
pub async fn void_grant(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let grant = GrantId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("grantId", error))?;
    let body: VoidRequest = json_body(&request, payload).await?;
    let reason = Reason::parse(body.reason.trim()).map_err(|error| ApiError::invalid("reason", error))?;
    let receipt = state.engine.void_grant(grant, reason).await?;
    Ok(HttpResponse::Ok().json(VoidResponse::from(receipt)))
}
