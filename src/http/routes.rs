//! The handlers of SPEC §9. Each parses its input into domain types, calls
//! the engine once, and renders the answer; errors go through `ApiError`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::dto::{
    AdminCreditsResponse, AdminPackageResponse, AlertsResponse, CaptureResponse, CatalogueResponse, DisableRequest,
    HealthResponse, HoldRequest, HoldResponse, LedgerEntryResponse, LedgerPageResponse, LedgerQuery,
    PackageUpdateRequest, PurchaseRequest, PurchaseResponse, PurchasesStateResponse, RefundResponse, ReleaseResponse,
    ReportResponse, SpendRequest, SpendResponse, StatusResponse, SyncResponse, UserCreditsResponse,
};
use super::error::ApiError;
use super::extract::{fingerprint, idempotency_key, json_body, require_admin, required_idempotency_key};
use super::AppState;
use crate::actors::inventory::UpdatePackage;
use crate::actors::EngineError;
use crate::domain::{HoldId, PackageId, Reason, SpendId, UserCredits, UserId};

/// Entries shown with a wallet.
const USER_ENTRIES_DEFAULT: usize = 50;
const LEDGER_PAGE_DEFAULT: usize = 100;

type Answer = Result<HttpResponse, ApiError>;

pub async fn catalogue(state: web::Data<AppState>) -> Answer {
    let view = state.engine.snapshot().await?;
    if !view.ready {
        return Err(EngineError::NotReady("waiting for the first provider sync").into());
    }
    Ok(HttpResponse::Ok().json(CatalogueResponse::from(&view)))
}

pub async fn status(state: web::Data<AppState>) -> Answer {
    let view = state.engine.snapshot().await?;
    if !view.ready {
        return Err(EngineError::NotReady("waiting for the first provider sync").into());
    }
    Ok(HttpResponse::Ok().json(StatusResponse::from(&view)))
}

pub async fn purchase(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    let key = required_idempotency_key(&request)?;
    let body: PurchaseRequest = json_body(&request, payload).await?;
    let user = UserId::parse(&body.user_id).map_err(|error| ApiError::invalid("userId", error))?;
    let package = PackageId::parse(&body.package_id).map_err(|error| ApiError::invalid("packageId", error))?;
    let fingerprint = fingerprint(&[b"purchase", user.as_str().as_bytes(), package.as_str().as_bytes()]);
    let receipt = state.engine.purchase(user, package, key, fingerprint).await?;
    Ok(HttpResponse::Ok().json(PurchaseResponse::from(receipt)))
}

pub async fn create_hold(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
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
    let receipt = state.engine.create_hold(user, package, ttl_ms, key, fingerprint).await?;
    Ok(HttpResponse::Ok().json(HoldResponse::from(receipt)))
}

fn hold_id(path: web::Path<String>) -> Result<HoldId, ApiError> {
    HoldId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("holdId", error))
}

/// Capture and release take no body; an `Idempotency-Key` is accepted and
/// checked, and the hold's own state makes a retry return the first answer.
pub async fn capture_hold(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    idempotency_key(&request)?;
    let receipt = state.engine.capture(hold_id(path)?).await?;
    Ok(HttpResponse::Ok().json(CaptureResponse::from(receipt)))
}

pub async fn release_hold(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    idempotency_key(&request)?;
    let receipt = state.engine.release(hold_id(path)?).await?;
    Ok(HttpResponse::Ok().json(ReleaseResponse::from(receipt)))
}

pub async fn spend(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    let key = required_idempotency_key(&request)?;
    let body: SpendRequest = json_body(&request, payload).await?;
    let user = UserId::parse(&body.user_id).map_err(|error| ApiError::invalid("userId", error))?;
    let credits = UserCredits::positive_from_i64(body.credits).map_err(|error| ApiError::invalid("credits", error))?;
    let reason =
        body.reason.as_deref().map(Reason::parse).transpose().map_err(|error| ApiError::invalid("reason", error))?;
    let amount = credits.get().to_be_bytes();
    let reason_bytes = reason.as_ref().map_or(&b""[..], |reason| reason.as_str().as_bytes());
    let fingerprint = fingerprint(&[b"spend", user.as_str().as_bytes(), &amount, reason_bytes]);
    let receipt = state.engine.spend(user, credits, reason, key, fingerprint).await?;
    Ok(HttpResponse::Ok().json(SpendResponse::from(receipt)))
}

/// A refund needs no body; the spend's own state makes it happen once.
pub async fn refund(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    idempotency_key(&request)?;
    let spend_id = SpendId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("spendId", error))?;
    let receipt = state.engine.refund(spend_id).await?;
    Ok(HttpResponse::Ok().json(RefundResponse::from(receipt)))
}

pub async fn user_credits(path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let user = UserId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("userId", error))?;
    let (wallet, entries) = state.engine.user_credits(user.clone(), USER_ENTRIES_DEFAULT).await?;
    Ok(HttpResponse::Ok().json(UserCreditsResponse {
        user_id: user.into(),
        balance: wallet.balance.get(),
        entries: entries.into_iter().map(LedgerEntryResponse::from).collect(),
    }))
}

pub async fn ledger(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let query = web::Query::<LedgerQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::invalid("query", error))?
        .into_inner();
    let limit = query.limit.unwrap_or(LEDGER_PAGE_DEFAULT);
    if !(1..=crate::store::LEDGER_PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {}", crate::store::LEDGER_PAGE_MAX)));
    }
    let entries = state.engine.ledger_page(query.after.unwrap_or(0), limit).await?;
    let next_after = (entries.len() == limit).then(|| entries.last().map(|entry| entry.seq)).flatten();
    Ok(HttpResponse::Ok()
        .json(LedgerPageResponse { entries: entries.into_iter().map(LedgerEntryResponse::from).collect(), next_after }))
}

pub async fn admin_credits(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let view = state.engine.snapshot().await?;
    let sync = state.engine.sync_status().await?;
    Ok(HttpResponse::Ok().json(AdminCreditsResponse::new(&view, &sync, state.engine.settings().levels)))
}

pub async fn admin_sync(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let report = state.engine.sync_now().await?;
    Ok(HttpResponse::Ok().json(SyncResponse::from(report)))
}

/// The reason an operator gives for the kill switch: 1–500 bytes, printable.
const REASON_BYTES_MAX: usize = 500;

pub async fn disable_purchases(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let body: DisableRequest = json_body(&request, payload).await?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > REASON_BYTES_MAX || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", format!("must be 1 to {REASON_BYTES_MAX} printable bytes")));
    }
    let answer = state.engine.set_purchases_enabled(false, Some(reason)).await?;
    Ok(HttpResponse::Ok().json(PurchasesStateResponse::from(answer)))
}

pub async fn enable_purchases(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let answer = state.engine.set_purchases_enabled(true, None).await?;
    Ok(HttpResponse::Ok().json(PurchasesStateResponse::from(answer)))
}

pub async fn update_package(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let package_id = PackageId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("packageId", error))?;
    let body: PackageUpdateRequest = json_body(&request, payload).await?;
    if body.enabled.is_none() && body.price.is_none() && body.credits.is_none() {
        return Err(ApiError::invalid("body", "name at least one of enabled, price, credits"));
    }
    let credits = body
        .credits
        .map(UserCredits::positive_from_i64)
        .transpose()
        .map_err(|error| ApiError::invalid("credits", error))?;
    let price = body
        .price
        .map(|price| {
            UserCredits::positive_from_i64(price)
                .map(UserCredits::get)
                .map_err(|error| ApiError::invalid("price", error))
        })
        .transpose()?;
    let update = UpdatePackage { package_id, enabled: body.enabled, credits, price_minor_units: price };
    let package = state.engine.update_package(update).await?;
    Ok(HttpResponse::Ok().json(AdminPackageResponse::from(package)))
}

pub async fn admin_alerts(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let view = state.engine.alerts().await?;
    Ok(HttpResponse::Ok().json(AlertsResponse::from(view)))
}

pub async fn admin_report(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    require_admin(&request, &state.admin_token)?;
    let report = state.engine.report().await?;
    Ok(HttpResponse::Ok().json(ReportResponse::new(&report)))
}

/// The admin dashboard (SPEC §9): one self-contained page, embedded in the
/// binary. It holds no secret: the token is typed in and kept in the tab's
/// session storage, and every call it makes is an ordinary admin API call.
const ADMIN_PAGE: &str = include_str!("assets/admin.html");

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

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

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

pub async fn method_not_allowed() -> Answer {
    Err(ApiError::MethodNotAllowed)
}
