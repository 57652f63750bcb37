//! `GET /metrics` (SPEC §9, Prometheus text) and the request-latency
//! middleware. Counters and histograms are recorded where things happen;
//! gauges are set here, at scrape time, from one snapshot of the engine, so
//! keeping them costs the request path nothing.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::actors::alert::AlertKind;
use crate::clock::{Clock, SystemClock};

/// Records `creditd_http_request_duration_seconds{route, method, status}`.
///
/// # Errors
/// Whatever the wrapped service answers.
pub async fn record_latency(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = request.match_name().and_then(static_route).unwrap_or("unmatched");
    let method = static_method(request.method());
    let response = next.call(request).await?;
    let status = static_status(response.status().as_u16());
    metrics::histogram!("creditd_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// The route's pattern as a `'static` label: no allocation per request.
fn static_route(name: &str) -> Option<&'static str> {
    super::ROUTES.iter().copied().find(|route| *route == name)
}

fn static_method(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    }
}

fn static_status(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        502 => "502",
        503 => "503",
        _ => "other",
    }
}

fn flag(value: bool) -> f64 {
    if value {
        1.0
    } else {
        0.0
    }
}

/// Quantities are bounded by 2^53, which an `f64` holds exactly.
#[allow(clippy::cast_precision_loss)]
fn gauge_value(value: u64) -> f64 {
    value as f64
}

#[allow(clippy::cast_precision_loss)]
fn signed_gauge_value(value: i64) -> f64 {
    value as f64
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics (text exposition format)",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain"),
        (status = 401, description = "`unauthorized`: `CREDITD_METRICS_TOKEN` is set and this is not it", body = super::error::ErrorBody),
        (status = 429, description = "`rate_limited`: more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = super::error::ErrorBody),
        (status = 503, description = "`overloaded`", body = super::error::ErrorBody),
    ))]
pub async fn metrics(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &state.metrics_key_hash {
        super::extract::require_token(&request, expected, Some(&state.auth_failures))?;
    }
    let view = state.engine.snapshot().await?;
    let alerts = state.engine.alerts().await?;
    let capacity = view.capacity;
    metrics::gauge!("creditd_provider_balance_credits").set(gauge_value(capacity.provider_balance.get()));
    metrics::gauge!("creditd_reserved_credits").set(gauge_value(capacity.reserved.get()));
    metrics::gauge!("creditd_available_credits").set(signed_gauge_value(capacity.available()));
    metrics::gauge!("creditd_capacity_user_credits").set(gauge_value(capacity.user_credits().get()));
    metrics::gauge!("creditd_wallets_user_credits").set(gauge_value(view.wallets_total.get()));
    metrics::gauge!("creditd_open_holds").set(gauge_value(u64::try_from(view.open_holds).unwrap_or(u64::MAX)));
    metrics::gauge!("creditd_open_spends").set(gauge_value(u64::try_from(view.open_spends).unwrap_or(u64::MAX)));
    let open_provider = capacity.ratio.backing(view.open_spends_total).map_or(u64::MAX, |credits| credits.get());
    metrics::gauge!("creditd_open_spends_provider_credits").set(gauge_value(open_provider));
    metrics::gauge!("creditd_held_back_provider_credits").set(gauge_value(capacity.held_back.get()));
    // Grants (SPEC §13): credits expiring within 7 days, what expiries and
    // voids took out (counters, set from the engine's totals), the revenue
    // expired paid credits had earned, promotional credits outstanding.
    metrics::gauge!("creditd_grant_credits_expiring_7d").set(gauge_value(view.expiring_soon.get()));
    metrics::counter!("creditd_grant_credits_expired_total").absolute(view.grants.expired.get());
    metrics::counter!("creditd_grant_credits_voided_total").absolute(view.grants.voided.get());
    metrics::counter!("creditd_grant_breakage_minor_units_total").absolute(view.grants.breakage.minor_units());
    metrics::gauge!("creditd_promotional_credits_outstanding").set(gauge_value(view.grants.promotional.get()));
    metrics::gauge!("creditd_purchases_enabled").set(flag(view.purchases_enabled));
    metrics::gauge!("creditd_ready").set(flag(view.ready));
    metrics::gauge!("creditd_hot_wallets").set(gauge_value(u64::try_from(state.engine.hot_wallets()).unwrap_or(0)));
    for package in &view.packages {
        metrics::gauge!("creditd_package_sellable", "package" => package.package.id.to_string())
            .set(gauge_value(package.sellable));
    }
    if let Some(sync) = view.last_sync {
        let age_ms = SystemClock.now_ms().saturating_sub(sync.at_ms);
        metrics::gauge!("creditd_last_sync_age_seconds").set(gauge_value(age_ms) / 1000.0);
        metrics::gauge!("creditd_last_sync_drift_credits").set(signed_gauge_value(sync.drift.unwrap_or(0)));
    }
    let settings = state.engine.settings();
    metrics::gauge!("creditd_level_warning_credits").set(gauge_value(settings.levels.warning.get()));
    metrics::gauge!("creditd_level_low_credits").set(gauge_value(settings.levels.low.get()));
    metrics::gauge!("creditd_level_critical_credits").set(gauge_value(settings.levels.critical.get()));
    let stale_after = settings.sync_stale_after.as_secs();
    metrics::gauge!("creditd_sync_stale_after_seconds").set(gauge_value(stale_after));
    for kind in AlertKind::ALL {
        let open = alerts.open.iter().any(|event| event.kind == kind.name());
        metrics::gauge!("creditd_alert_open", "kind" => kind.name()).set(flag(open));
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render()))
}
