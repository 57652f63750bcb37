//! The sync actor: fetches the real provider balance (SPEC §6) at start-up,
//! then every `sync_interval`, and hands it to the inventory.
//!
//! A failed sync changes no balance and is retried with exponential backoff
//! and full jitter, from [`RETRY_DELAY_MIN`] up to [`RETRY_DELAY_MAX`]; a
//! rejected key (401) or a suspended account (402) waits the longest delay,
//! since no quick retry can help. Only one sync runs at a time.
//!
//! Messages: none yet; sends `inventory::BeginSync` and `inventory::ApplySync`.

use std::time::Duration;

use actix::prelude::*;
use rand::Rng;

use super::inventory::{ApplySync, BeginSync, InventoryActor, SyncOutcome};
use super::EngineError;
use crate::provider::{NanoBananaClient, ProviderError};

pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(250);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(30);

/// Why a sync did not change the balance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub struct SyncActor {
    client: NanoBananaClient,
    inventory: Addr<InventoryActor>,
    interval: Duration,
    failures_in_a_row: u32,
}

impl SyncActor {
    pub fn new(client: NanoBananaClient, inventory: Addr<InventoryActor>, interval: Duration) -> Self {
        Self { client, inventory, interval, failures_in_a_row: 0 }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        ctx.run_later(delay, |actor, ctx| actor.sync(ctx));
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        let attempt = sync_once(self.client.clone(), self.inventory.clone());
        ctx.wait(attempt.into_actor(self).map(|result, actor, ctx| {
            let delay = match result {
                Ok(outcome) => {
                    actor.failures_in_a_row = 0;
                    tracing::info!(real = %outcome.real, balance = %outcome.balance, drift = ?outcome.drift, "provider sync");
                    actor.interval
                }
                Err(error) => {
                    actor.failures_in_a_row = actor.failures_in_a_row.saturating_add(1);
                    let delay = match &error {
                        SyncError::Provider(provider) if provider.is_critical() => RETRY_DELAY_MAX,
                        _ => backoff(actor.failures_in_a_row),
                    };
                    tracing::warn!(%error, failures = actor.failures_in_a_row, retry_in_ms = delay.as_millis(), "provider sync failed");
                    delay.min(actor.interval.max(RETRY_DELAY_MIN))
                }
            };
            actor.schedule(ctx, delay);
        }));
    }
}

impl Actor for SyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sync(ctx);
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

/// Exponential backoff with full jitter: uniform in `[min, min × 2^failures]`,
/// capped at [`RETRY_DELAY_MAX`].
pub fn backoff(failures_in_a_row: u32) -> Duration {
    let ceiling = RETRY_DELAY_MIN.saturating_mul(1u32 << failures_in_a_row.min(10)).min(RETRY_DELAY_MAX);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let floor = u64::try_from(RETRY_DELAY_MIN.as_millis()).unwrap_or(0);
    Duration::from_millis(rand::thread_rng().gen_range(floor..=millis.max(floor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        for failures in 0..40 {
            let delay = backoff(failures);
            assert!(delay >= RETRY_DELAY_MIN && delay <= RETRY_DELAY_MAX, "{failures}: {delay:?}");
        }
    }
}
