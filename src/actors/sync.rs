//! The sync actor: fetches the real provider balance (SPEC §6) at start-up,
//! then every `sync_interval`, and whenever an operator asks ([`SyncNow`]),
//! and hands it to the inventory.
//!
//! One sync runs at a time (each runs in `ctx.wait`). A failed sync changes
//! no balance and is retried with exponential backoff and full jitter, from
//! [`RETRY_DELAY_MIN`] up to [`RETRY_DELAY_MAX`] (never later than the next
//! periodic sync); a rejected key (401) or a suspended account (402) waits
//! the longest delay, since no quick retry can help. Every attempt is
//! reported to the alert actor.
//!
//! Messages: [`SyncNow`] and [`SyncStatus`] (from the admin API). Sends:
//! `inventory::BeginSync`, `inventory::ApplySync`, `alert::SyncObserved`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::backoff;
use actix::prelude::*;

use super::alert::{AlertActor, SyncObserved};
use super::inventory::{ApplySync, BeginSync, InventoryActor, SyncOutcome};
use super::EngineError;
use crate::clock::Clock;
use crate::provider::{NanoBananaClient, ProviderError};

pub use super::backoff::{RETRY_DELAY_MAX, RETRY_DELAY_MIN};

/// Why a sync did not change the balance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl SyncError {
    fn is_critical(&self) -> bool {
        matches!(self, Self::Provider(provider) if provider.is_critical())
    }
}

/// What one successful sync found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub outcome: SyncOutcome,
    pub duration: Duration,
}

/// The last attempt, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAttempt {
    pub at_ms: u64,
    pub duration: Duration,
    pub result: Result<SyncOutcome, String>,
}

pub struct SyncActor {
    client: NanoBananaClient,
    inventory: Addr<InventoryActor>,
    alerts: Addr<AlertActor>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    failures_in_a_row: u32,
    last_attempt: Option<SyncAttempt>,
    last_success: Option<SyncAttempt>,
}

impl SyncActor {
    pub fn new(
        client: NanoBananaClient,
        inventory: Addr<InventoryActor>,
        alerts: Addr<AlertActor>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        Self {
            client,
            inventory,
            alerts,
            clock,
            interval,
            failures_in_a_row: 0,
            last_attempt: None,
            last_success: None,
        }
    }

    /// One attempt as an actor future: sync, then record and report it.
    fn attempt(&mut self) -> ResponseActFuture<Self, Result<SyncReport, SyncError>> {
        let started = Instant::now();
        let at_ms = self.clock.now_ms();
        let attempt = sync_once(self.client.clone(), self.inventory.clone());
        Box::pin(attempt.into_actor(self).map(move |result, actor, _| {
            let duration = started.elapsed();
            metrics::histogram!("creditd_sync_duration_seconds").record(duration.as_secs_f64());
            let outcome = if result.is_ok() { "success" } else { "failure" };
            metrics::counter!("creditd_sync_attempts_total", "outcome" => outcome).increment(1);
            let record = SyncAttempt { at_ms, duration, result: result.clone().map_err(|error| error.to_string()) };
            match &result {
                Ok(outcome) => {
                    actor.failures_in_a_row = 0;
                    tracing::info!(
                        real = %outcome.real,
                        balance = %outcome.balance,
                        held_back = %outcome.held_back,
                        drift = ?outcome.drift,
                        "provider sync"
                    );
                    let (drift, explained) = (outcome.drift, outcome.drift_explained);
                    actor.alerts.do_send(SyncObserved::Succeeded { drift, explained });
                    actor.last_success = Some(record.clone());
                }
                Err(error) => {
                    actor.failures_in_a_row = actor.failures_in_a_row.saturating_add(1);
                    tracing::warn!(%error, failures = actor.failures_in_a_row, "provider sync failed");
                    let reason = match error {
                        SyncError::Provider(ProviderError::Unauthorized) => {
                            "provider key rejected (401): no retry will help until the key is fixed".to_owned()
                        }
                        other => format!("provider sync failed: {other}"),
                    };
                    actor.alerts.do_send(SyncObserved::Failed { reason, critical: error.is_critical() });
                }
            }
            actor.last_attempt = Some(record);
            result.map(|outcome| SyncReport { outcome, duration })
        }))
    }

    /// The periodic sync: an attempt, then the next one scheduled.
    fn sync(&mut self, ctx: &mut Context<Self>) {
        let attempt = self.attempt();
        ctx.wait(attempt.map(|result, actor, ctx| {
            let delay = match result {
                Ok(_) => actor.interval,
                Err(error) if error.is_critical() => RETRY_DELAY_MAX.min(actor.interval.max(RETRY_DELAY_MIN)),
                Err(_) => backoff(actor.failures_in_a_row).min(actor.interval.max(RETRY_DELAY_MIN)),
            };
            ctx.run_later(delay, |actor, ctx| actor.sync(ctx));
        }));
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sync(ctx);
    }
}

/// Sync now (an operator's "Sync Real Credits"); waits for a sync in flight first.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<SyncReport, SyncError>")]
pub struct SyncNow;

impl Handler<SyncNow> for SyncActor {
    type Result = AtomicResponse<Self, Result<SyncReport, SyncError>>;

    fn handle(&mut self, _: SyncNow, _: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.attempt())
    }
}

/// The last attempt and the last success.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SyncState")]
pub struct SyncStatus;

#[derive(Debug, Clone, Default, MessageResponse)]
pub struct SyncState {
    pub last_attempt: Option<SyncAttempt>,
    pub last_success: Option<SyncAttempt>,
    pub failures_in_a_row: u32,
}

impl Handler<SyncStatus> for SyncActor {
    type Result = SyncState;

    fn handle(&mut self, _: SyncStatus, _: &mut Self::Context) -> SyncState {
        SyncState {
            last_attempt: self.last_attempt.clone(),
            last_success: self.last_success.clone(),
            failures_in_a_row: self.failures_in_a_row,
        }
    }
}

/// One sync: mark where consumption stood, fetch, apply.
///
/// # Errors
/// The provider's or the engine's reason.
pub async fn sync_once(client: NanoBananaClient, inventory: Addr<InventoryActor>) -> Result<SyncOutcome, SyncError> {
    let unavailable = |_| EngineError::Overloaded("inventory unavailable");
    let token = inventory.send(BeginSync).await.map_err(unavailable)?;
    let real = client.balance().await?;
    Ok(inventory.send(ApplySync { real, token }).await.map_err(unavailable)??)
}
