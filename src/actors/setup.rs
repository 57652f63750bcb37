//! What the actors are started with: the settings the engine takes from
//! the configuration, the state recovered from the store, and the shared
//! health the engine and `/readyz` read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::Config;
use crate::domain::{Levels, Money, Package, Ratio};
use crate::store::commit::CommitMode;

/// How long an HTTP request waits for the engine before answering 503
/// (`outcome_unknown` for a change, `overloaded` for a read).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ratio: Ratio,
    pub packages: Vec<Package>,
    pub levels: Levels,
    pub wallet_idle: Duration,
    /// An open spend completes by itself this long after it was made (SPEC §5).
    pub spend_complete_after: Duration,
    pub commit_mode: CommitMode,
    pub revenue_zero: Money,
    /// A sync older than this raises `sync_stale`.
    pub sync_stale_after: Duration,
    /// `purchase_blocked` clears after this long without a capacity refusal.
    pub alert_blocked_clear_after: Duration,
    pub alert_webhook_url: Option<String>,
    pub alert_webhook_secret: Option<crate::config::Secret>,
    pub provider_credit_cost_micros: u64,
    /// Sum every wallet on disk at start-up, not only the totals and the open holds.
    pub verify_wallets_at_start: bool,
    /// How long a request waits for the engine ([`REQUEST_TIMEOUT`]; tests shorten it).
    pub request_timeout: Duration,
    /// Idempotency records are forgotten after this long (SPEC §9.2).
    pub idempotency_retention: Duration,
    /// Open holds one user may have at once (SPEC §9.2).
    pub max_open_holds_per_user: u32,
    /// Open holds one API key may have made at once (SPEC §9.2).
    pub max_open_holds_per_key: u32,
}

impl Settings {
    /// The rules the books decide by.
    pub fn rules(&self) -> crate::decide::Rules {
        crate::decide::Rules {
            ratio: self.ratio,
            warning_level: self.levels.warning,
            spend_complete_after_ms: u64::try_from(self.spend_complete_after.as_millis()).unwrap_or(u64::MAX),
            max_open_holds_per_user: self.max_open_holds_per_user,
            max_open_holds_per_key: self.max_open_holds_per_key,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self {
            ratio: config.ratio,
            packages: config.packages.clone(),
            levels: config.levels,
            wallet_idle: config.wallet_idle,
            spend_complete_after: config.spend_complete_after,
            commit_mode: config.commit_mode,
            revenue_zero: Money::zero(config.currency),
            sync_stale_after: config.sync_stale_after,
            alert_blocked_clear_after: config.alert_blocked_clear_after,
            alert_webhook_url: config.alert_webhook_url.clone(),
            alert_webhook_secret: config.alert_webhook_secret.clone(),
            provider_credit_cost_micros: config.provider_credit_cost_micros,
            verify_wallets_at_start: config.verify_wallets_at_start,
            request_timeout: REQUEST_TIMEOUT,
            idempotency_retention: config.idempotency_retention,
            max_open_holds_per_user: config.max_open_holds_per_user,
            max_open_holds_per_key: config.max_open_holds_per_key,
        }
    }
}

/// Whether the engine may serve: it has synced once since start and its
/// storage has not failed.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    storage_failed: AtomicBool,
}

impl Health {
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub fn storage_failed(&self) -> bool {
        self.storage_failed.load(Ordering::Acquire)
    }

    pub fn mark_storage_failed(&self) {
        self.storage_failed.store(true, Ordering::Release);
    }

    pub fn ready(&self) -> bool {
        self.synced() && !self.storage_failed()
    }
}

pub use crate::decide::Recovered;
