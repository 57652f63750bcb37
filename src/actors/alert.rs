//! The alert actor: owns the alerts of SPEC §7, their open set and their
//! recent history.
//!
//! It is told what happened ([`InventoryObserved`] after every inventory
//! change and capacity refusal, [`SyncObserved`] after every sync attempt)
//! and checks staleness on a timer. Each kind fires once when its condition
//! starts and clears once when it stops: only transitions make events, so a
//! stream of requests on the same side of a level makes none. Nothing flaps:
//! a level alert clears only 10 % above its level ([`under_level`]), and
//! `purchase_blocked` only after `alert_blocked_clear` without a refusal. Events are
//! persisted (the last [`RECENT_MAX`]), listed by [`ListAlerts`], counted in
//! metrics, and handed to the webhook actor, which delivers them off every
//! request path.
//!
//! Messages: [`InventoryObserved`], [`SyncObserved`] (fire-and-forget, from
//! the inventory and sync actors), [`ListAlerts`] (from the admin API).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::webhook::{Deliver, WebhookActor};
use crate::clock::Clock;
use crate::domain::{under_level, Levels, ProviderCredits, UserCredits};
use crate::store::commit::CommitQueue;
use crate::store::records::AlertEventRecord;
use crate::store::{Store, StoreError, Write, WriteSet};

/// Events kept, listed and persisted.
pub const RECENT_MAX: usize = 500;

/// How often staleness and `purchase_blocked`'s quiet period are checked.
const TIMER_INTERVAL: Duration = Duration::from_secs(1);

/// `low_capacity`: a sale left fewer user credits than this (SPEC §7).
const LOW_CAPACITY_USER_CREDITS: u64 = 100;

/// The alert kinds of SPEC §7; their names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    LevelWarning,
    LevelLow,
    LevelCritical,
    LevelEmpty,
    PurchaseBlocked,
    LowCapacity,
    SyncFailed,
    SyncStale,
    Drift,
    Overcommitted,
    PurchasesDisabled,
}

impl AlertKind {
    pub const ALL: [Self; 11] = [
        Self::LevelWarning,
        Self::LevelLow,
        Self::LevelCritical,
        Self::LevelEmpty,
        Self::PurchaseBlocked,
        Self::LowCapacity,
        Self::SyncFailed,
        Self::SyncStale,
        Self::Drift,
        Self::Overcommitted,
        Self::PurchasesDisabled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::LevelWarning => "level_warning",
            Self::LevelLow => "level_low",
            Self::LevelCritical => "level_critical",
            Self::LevelEmpty => "level_empty",
            Self::PurchaseBlocked => "purchase_blocked",
            Self::LowCapacity => "low_capacity",
            Self::SyncFailed => "sync_failed",
            Self::SyncStale => "sync_stale",
            Self::Drift => "drift",
            Self::Overcommitted => "overcommitted",
            Self::PurchasesDisabled => "purchases_disabled",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// What the alert actor is configured with.
#[derive(Debug, Clone, Copy)]
pub struct AlertSettings {
    pub levels: Levels,
    /// A sync older than this raises `sync_stale`.
    pub stale_after: Duration,
    /// `purchase_blocked` clears after this long without a capacity refusal.
    pub blocked_clear_after: Duration,
}

pub struct AlertActor {
    levels: Levels,
    stale_after_ms: u64,
    blocked_clear_after_ms: u64,
    /// The last capacity refusal (monotonic), or the start of this process.
    last_refusal_ms: u64,
    open: BTreeMap<AlertKind, AlertEventRecord>,
    recent: VecDeque<AlertEventRecord>,
    next_id: u64,
    commits: CommitQueue,
    clock: Arc<dyn Clock>,
    webhook: Option<Addr<WebhookActor>>,
    /// When the last successful sync happened, or when this process started,
    /// on the monotonic clock: a wall clock set back must not silence `sync_stale`.
    fresh_since_ms: u64,
}

impl AlertActor {
    /// Loads the recent events; the kinds whose last event fired are open.
    ///
    /// # Errors
    /// The events cannot be read.
    pub fn load(
        store: &Store,
        commits: CommitQueue,
        clock: Arc<dyn Clock>,
        settings: AlertSettings,
        webhook: Option<Addr<WebhookActor>>,
    ) -> Result<Self, StoreError> {
        let recent: VecDeque<AlertEventRecord> = store.recent_alerts(RECENT_MAX)?.into();
        let mut open = BTreeMap::new();
        for event in &recent {
            if let Some(kind) = AlertKind::from_name(&event.kind) {
                if event.firing {
                    open.insert(kind, event.clone());
                } else {
                    open.remove(&kind);
                }
            }
        }
        let next_id = recent.back().map_or(1, |event| event.id.saturating_add(1));
        let now = clock.monotonic_ms();
        let milliseconds = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Ok(Self {
            levels: settings.levels,
            stale_after_ms: milliseconds(settings.stale_after),
            blocked_clear_after_ms: milliseconds(settings.blocked_clear_after),
            // An open purchase_blocked from before a restart gets a full quiet period.
            last_refusal_ms: now,
            open,
            recent,
            next_id,
            commits,
            clock,
            webhook,
            // Staleness counts from start-up: the first sync runs right away.
            fresh_since_ms: now,
        })
    }

    /// Fires `kind` if `condition` starts, clears it if it stops; nothing otherwise.
    fn set(&mut self, kind: AlertKind, condition: bool, severity: Severity, message: impl FnOnce() -> String) {
        match (condition, self.open.contains_key(&kind)) {
            (true, false) => {
                let event = self.event(kind, true, severity, message());
                self.open.insert(kind, event);
            }
            (false, true) => {
                let fired = self.open.remove(&kind).map(|event| event.severity);
                let severity = fired.unwrap_or_else(|| severity.as_str().to_owned());
                let text = format!("cleared: {}", kind.name());
                self.record(AlertEventRecord {
                    id: self.next_id,
                    kind: kind.name().to_owned(),
                    firing: false,
                    severity,
                    message: text,
                    at_ms: self.clock.now_ms(),
                });
            }
            _ => {}
        }
    }

    fn event(&mut self, kind: AlertKind, firing: bool, severity: Severity, message: String) -> AlertEventRecord {
        let event = AlertEventRecord {
            id: self.next_id,
            kind: kind.name().to_owned(),
            firing,
            severity: severity.as_str().to_owned(),
            message,
            at_ms: self.clock.now_ms(),
        };
        self.record(event.clone());
        event
    }

    /// Keeps, persists, counts and forwards one event.
    fn record(&mut self, event: AlertEventRecord) {
        self.next_id = event.id.saturating_add(1);
        let state = if event.firing { "firing" } else { "cleared" };
        tracing::warn!(kind = %event.kind, state, severity = %event.severity, message = %event.message, "alert");
        metrics::counter!("creditd_alerts_total", "kind" => event.kind.clone(), "state" => state).increment(1);
        let mut writes = WriteSet::default();
        writes.push(Write::Alert(event.clone()));
        if let Some(old) = event.id.checked_sub(u64::try_from(RECENT_MAX).unwrap_or(u64::MAX)) {
            writes.push(Write::ForgetAlert(old));
        }
        // Alerts are not balance changes: nobody waits for their durability.
        if let Err(error) = self.commits.submit(writes) {
            tracing::error!(%error, "cannot persist an alert event");
        }
        if let Some(webhook) = &self.webhook {
            webhook.do_send(Deliver(event.clone()));
        }
        self.recent.push_back(event);
        while self.recent.len() > RECENT_MAX {
            self.recent.pop_front();
        }
    }

    /// Clears `purchase_blocked` once no purchase was refused for capacity
    /// for `blocked_clear_after`.
    fn check_blocked(&mut self) {
        let quiet_ms = self.clock.monotonic_ms().saturating_sub(self.last_refusal_ms);
        if quiet_ms >= self.blocked_clear_after_ms {
            self.set(AlertKind::PurchaseBlocked, false, Severity::Warning, String::new);
        }
    }

    fn check_stale(&mut self) {
        let age_ms = self.clock.monotonic_ms().saturating_sub(self.fresh_since_ms);
        let stale_after = self.stale_after_ms;
        self.set(AlertKind::SyncStale, age_ms > stale_after, Severity::Warning, || {
            format!("no successful provider sync for {} s", age_ms / 1000)
        });
    }
}

impl Actor for AlertActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TIMER_INTERVAL, |actor, _| {
            actor.check_stale();
            actor.check_blocked();
        });
    }
}

/// The inventory after a change, or after a refusal for capacity.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct InventoryObserved {
    pub available: i64,
    pub provider_balance: ProviderCredits,
    pub reserved: ProviderCredits,
    /// `providerBalance + held-back spends not refunded since < reserved` (SPEC §6).
    pub overcommitted: bool,
    /// User credits still sellable.
    pub capacity: UserCredits,
    pub purchases_enabled: bool,
    pub disabled_reason: Option<String>,
    /// The change was a sale (a purchase or a hold).
    pub sale: bool,
    /// A purchase or hold was just refused for capacity.
    pub refused_for_capacity: bool,
}

impl Handler<InventoryObserved> for AlertActor {
    type Result = ();

    fn handle(&mut self, seen: InventoryObserved, _: &mut Self::Context) {
        let available = seen.available;
        let levels = self.levels;
        let under = |name: &'static str, limit: ProviderCredits| {
            move || format!("available provider credits {available} are under the {name} level {limit}")
        };
        for (kind, level, name, severity) in [
            (AlertKind::LevelWarning, levels.warning, "early-warning", Severity::Warning),
            (AlertKind::LevelLow, levels.low, "low", Severity::Warning),
            (AlertKind::LevelCritical, levels.critical, "critical", Severity::Critical),
        ] {
            let holds = under_level(available, level.get(), self.open.contains_key(&kind));
            self.set(kind, holds, severity, under(name, level));
        }
        // Empty: nothing available (under 1), clearing as soon as anything is.
        let empty = under_level(available, 1, self.open.contains_key(&AlertKind::LevelEmpty));
        self.set(AlertKind::LevelEmpty, empty, Severity::Critical, || {
            format!("no provider credits left to sell (available {available})")
        });
        let (balance, reserved) = (seen.provider_balance, seen.reserved);
        self.set(AlertKind::Overcommitted, seen.overcommitted, Severity::Critical, || {
            format!(
                "provider balance {balance}, with every spend the last sync held back, is below reserved {reserved}: \
                 sales stopped"
            )
        });
        let capacity = seen.capacity.get();
        let low = under_level(
            i64::try_from(capacity).unwrap_or(i64::MAX),
            LOW_CAPACITY_USER_CREDITS,
            self.open.contains_key(&AlertKind::LowCapacity),
        );
        // It fires after a sale only, and clears whenever capacity is back.
        if seen.sale || !low {
            self.set(AlertKind::LowCapacity, low, Severity::Warning, || {
                format!("Platform running low after sale! {capacity} user credits left")
            });
        }
        if seen.refused_for_capacity {
            self.last_refusal_ms = self.clock.monotonic_ms();
            self.set(AlertKind::PurchaseBlocked, true, Severity::Warning, || {
                format!("a purchase was refused for capacity ({capacity} user credits left)")
            });
        }
        let reason = seen.disabled_reason.clone().unwrap_or_else(|| "purchases disabled".to_owned());
        self.set(AlertKind::PurchasesDisabled, !seen.purchases_enabled, Severity::Warning, || reason);
    }
}

/// The outcome of one sync attempt.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SyncObserved {
    /// `explained`: spends in flight explain the drift (SPEC §6): no alert.
    Succeeded {
        drift: Option<i64>,
        explained: bool,
    },
    Failed {
        reason: String,
        critical: bool,
    },
}

impl Handler<SyncObserved> for AlertActor {
    type Result = ();

    fn handle(&mut self, seen: SyncObserved, _: &mut Self::Context) {
        match seen {
            SyncObserved::Succeeded { drift, explained } => {
                self.fresh_since_ms = self.clock.monotonic_ms();
                self.set(AlertKind::SyncFailed, false, Severity::Warning, String::new);
                let drift = drift.unwrap_or(0);
                self.set(AlertKind::Drift, drift != 0 && !explained, Severity::Warning, || {
                    format!("the provider's real balance differs from the database by {drift}")
                });
            }
            SyncObserved::Failed { reason, critical } => {
                let severity = if critical { Severity::Critical } else { Severity::Warning };
                self.set(AlertKind::SyncFailed, true, severity, || reason);
            }
        }
        self.check_stale();
    }
}

/// The open alerts and the recent events, oldest first.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "AlertsView")]
pub struct ListAlerts;

#[derive(Debug, Clone, Default, MessageResponse)]
pub struct AlertsView {
    pub open: Vec<AlertEventRecord>,
    pub recent: Vec<AlertEventRecord>,
}

impl Handler<ListAlerts> for AlertActor {
    type Result = AlertsView;

    fn handle(&mut self, _: ListAlerts, _: &mut Self::Context) -> AlertsView {
        AlertsView { open: self.open.values().cloned().collect(), recent: self.recent.iter().cloned().collect() }
    }
}
