//! The HTTP edge (SPEC §9): routes, JSON shapes, and the one mapping from
//! errors to answers. **API Boundary**: everything past here is typed; this
//! module never opens sled and never decides a balance.

pub mod backup;
pub mod dto;
pub mod error;
pub mod extract;
pub mod grants;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod standby;
pub mod wire;

use actix_web::http::Method;
use actix_web::{web, Route};

use crate::access::KeyHash;
use crate::domain::KeyId;
use crate::engine::Engine;

/// What every handler can reach.
pub struct AppState {
    pub engine: Engine,
    /// SHA-256 of the configured admin token, a key with the `admin` scope (SPEC §9.1).
    pub admin_key_hash: KeyHash,
    /// SHA-256 of `CREDITD_METRICS_TOKEN`: when set, `/metrics` needs it.
    pub metrics_key_hash: Option<KeyHash>,
    /// `rate_limit_per_key` (SPEC §9.2): requests per second per key; 0 = off.
    pub rate_limit_per_key: u32,
    /// Failed authentications by client address (SPEC §9.2).
    pub auth_failures: crate::access::FailedAuthentications,
    /// The admin token's bucket (API keys carry their own).
    pub admin_bucket: crate::access::TokenBucket,
    /// The id the admin token acts under ([`crate::access::ADMIN_TOKEN_ID`]).
    pub admin_key_id: KeyId,
    pub hold_ttl_default_secs: u64,
    /// A request body must arrive within this (SPEC §9.2, `body_timeout_ms`).
    pub body_timeout: std::time::Duration,
    pub hold_ttl_max_secs: u64,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// `openapi::document`, rendered once at start-up.
    pub openapi: String,
}

/// Every route pattern, named after itself so that metrics can label
/// requests with a `'static` string.
pub const ROUTES: &[&str] = &[
    "/api/credits/purchase",
    "/api/credits/status",
    "/api/credits/holds",
    "/api/credits/holds/{holdId}/capture",
    "/api/credits/holds/{holdId}/release",
    "/api/credits/spend",
    "/api/credits/spend/{spendId}/complete",
    "/api/credits/spend/{spendId}/refund",
    "/api/users/{userId}/credits",
    "/api/admin/ledger",
    "/api/admin/backup",
    "/api/admin/credits",
    "/api/admin/credits/sync",
    "/api/admin/purchases/disable",
    "/api/admin/purchases/enable",
    "/api/admin/packages/{packageId}",
    "/api/admin/alerts",
    "/api/admin/report",
    "/api/admin/keys",
    "/api/admin/keys/{id}",
    "/api/admin/grants",
    "/api/admin/grants/{grantId}/void",
    "/metrics",
    "/admin",
    "/openapi.json",
    "/healthz",
    "/readyz",
];

/// A resource with its routes; any other method gets 405 with an `Allow` header.
fn resource(path: &'static str, routes: Vec<(Method, Route)>) -> actix_web::Resource {
    debug_assert!(ROUTES.contains(&path), "{path} is listed in ROUTES");
    let allow = routes.iter().map(|(method, _)| method.as_str()).collect::<Vec<_>>().join(", ");
    routes
        .into_iter()
        .fold(web::resource(path).name(path), |resource, (_, route)| resource.route(route))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move { routes::method_not_allowed(allow) }
        }))
}

/// Registers every route.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource(
            "/api/credits/purchase",
            vec![(Method::GET, web::get().to(routes::catalogue)), (Method::POST, web::post().to(routes::purchase))],
        ))
        .service(resource("/api/credits/status", vec![(Method::GET, web::get().to(routes::status))]))
        .service(resource("/api/credits/holds", vec![(Method::POST, web::post().to(routes::create_hold))]))
        .service(resource(
            "/api/credits/holds/{holdId}/capture",
            vec![(Method::POST, web::post().to(routes::capture_hold))],
        ))
        .service(resource(
            "/api/credits/holds/{holdId}/release",
            vec![(Method::POST, web::post().to(routes::release_hold))],
        ))
        .service(resource("/api/credits/spend", vec![(Method::POST, web::post().to(routes::spend))]))
        .service(resource(
            "/api/credits/spend/{spendId}/complete",
            vec![(Method::POST, web::post().to(routes::complete))],
        ))
        .service(resource("/api/credits/spend/{spendId}/refund", vec![(Method::POST, web::post().to(routes::refund))]))
        .service(resource("/api/users/{userId}/credits", vec![(Method::GET, web::get().to(routes::user_credits))]))
        .service(resource("/api/admin/ledger", vec![(Method::GET, web::get().to(routes::ledger))]))
        .service(resource("/api/admin/backup", vec![(Method::GET, web::get().to(backup::backup))]))
        .service(resource("/api/admin/credits", vec![(Method::GET, web::get().to(routes::admin_credits))]))
        .service(resource("/api/admin/credits/sync", vec![(Method::POST, web::post().to(routes::admin_sync))]))
        .service(resource(
            "/api/admin/purchases/disable",
            vec![(Method::POST, web::post().to(routes::disable_purchases))],
        ))
        .service(resource(
            "/api/admin/purchases/enable",
            vec![(Method::POST, web::post().to(routes::enable_purchases))],
        ))
        .service(resource(
            "/api/admin/packages/{packageId}",
            vec![(Method::PUT, web::put().to(routes::update_package))],
        ))
        .service(resource("/api/admin/alerts", vec![(Method::GET, web::get().to(routes::admin_alerts))]))
        .service(resource("/api/admin/report", vec![(Method::GET, web::get().to(routes::admin_report))]))
        .service(resource(
            "/api/admin/keys",
            vec![(Method::GET, web::get().to(keys::list_keys)), (Method::POST, web::post().to(keys::create_key))],
        ))
        .service(resource("/api/admin/keys/{id}", vec![(Method::DELETE, web::delete().to(keys::revoke_key))]))
        .service(resource("/api/admin/grants", vec![(Method::POST, web::post().to(grants::create_grant))]))
        .service(resource("/api/admin/grants/{grantId}/void", vec![(Method::POST, web::post().to(grants::void_grant))]))
        .service(resource("/metrics", vec![(Method::GET, web::get().to(metrics::metrics))]))
        .service(resource("/admin", vec![(Method::GET, web::get().to(routes::admin_page))]))
        .service(resource("/openapi.json", vec![(Method::GET, web::get().to(routes::openapi))]))
        .service(resource("/healthz", vec![(Method::GET, web::get().to(routes::healthz))]))
        .service(resource("/readyz", vec![(Method::GET, web::get().to(routes::readyz))]))
        .default_service(web::to(routes::not_found));
}
