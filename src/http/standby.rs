//! What a standby node answers in cluster mode (SPEC §12): `/healthz` 200
//! (the process is alive), `/readyz` 503 and every other route 503
//! `not_leader`, naming the leader's `CREDITD_ADVERTISE_URL`, so that a load
//! balancer that health-checks `/readyz` sends traffic to the leader alone.

use std::sync::{Arc, RwLock};

use actix_web::{web, HttpResponse};

use super::dto::HealthResponse;
use super::error::ApiError;

/// The leader's advertised URL as this standby last read it from the lease.
#[derive(Debug, Clone, Default)]
pub struct LeaderUrl(Arc<RwLock<Option<String>>>);

impl LeaderUrl {
    pub fn set(&self, url: Option<String>) {
        if let Ok(mut current) = self.0.write() {
            *current = url;
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.read().ok().and_then(|current| current.clone())
    }
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(not_leader))
        .default_service(web::to(not_leader));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

async fn not_leader(leader: web::Data<LeaderUrl>) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotLeader(leader.get()))
}
