//! What a standby node answers in cluster mode (SPEC §12): `/healthz` 200
//! (the process is alive), `/readyz` 503 and every API route 503
//! `not_leader`, naming the leader's `CREDITD_ADVERTISE_URL`, so that a load
//! balancer that health-checks `/readyz` sends traffic to the leader alone;
//! and its own `/metrics`, so that a Prometheus that scrapes every node sees
//! each one up and which one leads.
//!
//! A standby's `/metrics` holds only what a standby knows: `creditd_leader
//! 0` and the epoch of the lease it last saw. The capacity gauges belong
//! to the leader; a node that led before keeps them in its recorder, but
//! shows them again only when it leads again, so no dashboard sums a
//! stale balance.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use actix_web::{web, HttpRequest, HttpResponse};

use super::dto::HealthResponse;
use super::error::ApiError;
use crate::access::KeyHash;

/// The lease as this standby last read it: the leader's advertised URL and
/// the lease's epoch.
#[derive(Debug, Clone, Default)]
pub struct LeaderSeen(Arc<RwLock<Seen>>);

#[derive(Debug, Clone, Default)]
struct Seen {
    url: Option<String>,
    epoch: Option<i64>,
}

impl LeaderSeen {
    /// What the last read of the lease found: the leader's epoch and
    /// advertised URL, or `None` for no unexpired lease.
    pub fn set(&self, leader: Option<(i64, Option<String>)>) {
        if let Ok(mut seen) = self.0.write() {
            match leader {
                Some((epoch, url)) => *seen = Seen { url, epoch: Some(epoch) },
                // No leader now: the epoch seen last still tells where the count is.
                None => seen.url = None,
            }
        }
    }

    pub fn url(&self) -> Option<String> {
        self.0.read().ok().and_then(|seen| seen.url.clone())
    }

    pub fn epoch(&self) -> Option<i64> {
        self.0.read().ok().and_then(|seen| seen.epoch)
    }
}

/// The bearer token `/metrics` needs (`CREDITD_METRICS_TOKEN`), as on the leader.
#[derive(Debug, Clone, Default)]
pub struct MetricsToken(pub Option<KeyHash>);

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(not_leader))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(not_leader));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

async fn not_leader(leader: web::Data<LeaderSeen>) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotLeader(leader.url()))
}

/// The standby's metrics, in the Prometheus text format.
async fn metrics(
    request: HttpRequest,
    leader: web::Data<LeaderSeen>,
    token: web::Data<MetricsToken>,
) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &token.0 {
        super::extract::require_token(&request, expected, None)?;
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(render(leader.epoch())))
}

/// `creditd_leader 0` and the lease epoch last seen (absent before any).
fn render(epoch: Option<i64>) -> String {
    let mut text = String::new();
    text.push_str("# HELP creditd_leader 1 on the node that holds the leader lease, 0 on a standby (SPEC §12).\n");
    text.push_str("# TYPE creditd_leader gauge\ncreditd_leader 0\n");
    if let Some(epoch) = epoch {
        text.push_str("# HELP creditd_leader_epoch The lease epoch: this node's own while it leads, the leader's as a standby last saw it.\n");
        let _ = writeln!(text, "# TYPE creditd_leader_epoch gauge\ncreditd_leader_epoch {epoch}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_says_it_does_not_lead_and_which_epoch_it_saw() {
        assert_eq!(
            render(None).lines().filter(|line| !line.starts_with('#')).collect::<Vec<_>>(),
            ["creditd_leader 0"]
        );
        let seen = LeaderSeen::default();
        seen.set(Some((7, Some("http://a:8080".into()))));
        assert_eq!((seen.url().as_deref(), seen.epoch()), (Some("http://a:8080"), Some(7)));
        seen.set(None);
        assert_eq!((seen.url(), seen.epoch()), (None, Some(7)), "no leader now; the epoch seen last stays");
        assert!(render(seen.epoch()).contains("\ncreditd_leader_epoch 7\n"), "{}", render(seen.epoch()));
    }
}
