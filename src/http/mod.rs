//! The HTTP edge (SPEC §9): routes, JSON shapes, and the one mapping from
//! errors to answers. **API Boundary**: everything past here is typed; this
//! module never opens sled and never decides a balance.

pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routes;

use actix_web::{web, Route};

use crate::config::Secret;
use crate::engine::Engine;

/// What every handler can reach.
pub struct AppState {
    pub engine: Engine,
    pub admin_token: Secret,
    pub hold_ttl_default_secs: u64,
    pub hold_ttl_max_secs: u64,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

fn resource(path: &str, routes: Vec<Route>) -> actix_web::Resource {
    routes
        .into_iter()
        .fold(web::resource(path), actix_web::Resource::route)
        .default_service(web::to(routes::method_not_allowed))
}

/// Registers every route.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource(
            "/api/credits/purchase",
            vec![web::get().to(routes::catalogue), web::post().to(routes::purchase)],
        ))
        .service(resource("/api/credits/status", vec![web::get().to(routes::status)]))
        .service(resource("/api/credits/holds", vec![web::post().to(routes::create_hold)]))
        .service(resource("/api/credits/holds/{holdId}/capture", vec![web::post().to(routes::capture_hold)]))
        .service(resource("/api/credits/holds/{holdId}/release", vec![web::post().to(routes::release_hold)]))
        .service(resource("/api/credits/spend", vec![web::post().to(routes::spend)]))
        .service(resource("/api/credits/spend/{spendId}/refund", vec![web::post().to(routes::refund)]))
        .service(resource("/api/users/{userId}/credits", vec![web::get().to(routes::user_credits)]))
        .service(resource("/api/admin/ledger", vec![web::get().to(routes::ledger)]))
        .service(resource("/api/admin/credits", vec![web::get().to(routes::admin_credits)]))
        .service(resource("/api/admin/credits/sync", vec![web::post().to(routes::admin_sync)]))
        .service(resource("/api/admin/purchases/disable", vec![web::post().to(routes::disable_purchases)]))
        .service(resource("/api/admin/purchases/enable", vec![web::post().to(routes::enable_purchases)]))
        .service(resource("/api/admin/packages/{packageId}", vec![web::put().to(routes::update_package)]))
        .service(resource("/api/admin/alerts", vec![web::get().to(routes::admin_alerts)]))
        .service(resource("/api/admin/report", vec![web::get().to(routes::admin_report)]))
        .service(resource("/metrics", vec![web::get().to(metrics::metrics)]))
        .service(resource("/admin", vec![web::get().to(routes::admin_page)]))
        .service(resource("/healthz", vec![web::get().to(routes::healthz)]))
        .service(resource("/readyz", vec![web::get().to(routes::readyz)]))
        .default_service(web::to(routes::not_found));
}
