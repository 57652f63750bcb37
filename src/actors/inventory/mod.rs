//! The inventory actor: the single owner of the provider balance, `reserved`,
//! the open holds, the revenue, the ledger sequence and the idempotency keys
//! in flight.
//!
//! Every change is decided inside one handler (check, build the new state,
//! queue the writes) so nothing interleaves between the check and the apply:
//! concurrent buyers are serialised here and cannot jointly exceed capacity
//! (SPEC §4.1). The handler does not wait for the disk: it queues the change
//! on the commit loop and goes on deciding; the reply waits for the group
//! commit that makes the change durable (SPEC §4.2). A failed commit turns
//! the engine unready and every later change is refused.
//!
//! Expired holds stop counting at their deadline: every handler first expires
//! the holds whose `expiresAt` has passed ([`InventoryActor::expire_due`]),
//! and a timer does the same every [`EXPIRY_SWEEP_INTERVAL`] so the ledger
//! records expiries within a second or so even when nothing else happens.
//!
//! Messages: [`WalletChange`] (from wallet actors: purchase, capture, spend,
//! refund), [`CreateHold`], [`ReleaseHold`], [`HoldOwner`], [`SpendOwner`],
//! [`Snapshot`], [`SetPurchasesEnabled`], [`UpdatePackage`] (from the engine
//! facade), [`BeginSync`] and [`ApplySync`] (from the sync actor). Sends
//! `alert::InventoryObserved` after every change and capacity refusal.
//!
//! Files: this one holds the actor, its state and what every decision shares
//! (`check_key`, `commit`, `respond`, the expiry sweep); `change.rs` a change
//! being built; `wallets.rs`, `holds.rs`, `operators.rs` and `api_keys.rs` the
//! messages and their decisions; `view.rs` what the actor publishes.
//!
//! Invariants asserted on every change: `reserved == ratio × (Σ wallets + Σ
//! open holds)`; a sale or hold never leaves `reserved > providerBalance`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

mod api_keys;
mod change;
mod holds;
mod operators;
mod view;
mod wallets;

pub use api_keys::{ApiKeys, CreateApiKey, ListApiKeys, RevokeApiKey};
use change::{ready, Change, Consumption, Decision, Reply};
pub use holds::{CreateHold, HoldOwner, ReleaseHold, ReleaseReceipt, SpendOwner};
pub use operators::{
    ApplySync, BeginSync, DurableSequence, PurchasesState, SetPurchasesEnabled, SyncOutcome, SyncToken, UpdatePackage,
};
pub use view::{InventoryView, PackageView, Snapshot, ViewInputs, PACKAGE_UNAVAILABLE};
pub use wallets::{WalletChange, WalletCommand, WalletOutcome, WalletReceipt};

use super::alert::{AlertActor, InventoryObserved};
use super::EngineError;
use crate::actors::setup::{Health, Recovered, Settings};
use crate::clock::Clock;
use crate::domain::{Capacity, HoldId, Package, PackageId, ProviderCredits, Ratio, ScopedKey, SpendId, UserId};
use crate::store::commit::{CommitFailed, CommitQueue, CommitReceipt};
use crate::store::records::{EntryKind, HoldRecord, HoldState, InventoryRecord, Operation, Receipt};
use crate::store::{keys, Store, WriteSet};

/// Messages queued for the inventory before senders wait.
const MAILBOX_CAPACITY: usize = 4_096;

/// The metrics label of a purchase of a package that does not exist.
const UNKNOWN_PACKAGE_LABEL: &str = "unknown";

/// How often expired holds are written to the ledger when nothing else happens.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A SHA-256 fingerprint of a canonical request.
pub type Fingerprint = [u8; 32];

/// The window of one sync request: the consumption it must keep (SPEC §6).
#[derive(Debug, Clone, Copy)]
struct SyncWindow {
    token: u64,
    /// The first ledger sequence number after the request left.
    start_seq: u64,
    /// Provider credits consumed by spends made after the request left and
    /// not refunded since.
    consumed: ProviderCredits,
}

pub struct InventoryActor {
    state: InventoryRecord,
    ratio: Ratio,
    /// Shared with the published inputs; copied only when an operator changes one.
    packages: Arc<Vec<Package>>,
    warning_level: ProviderCredits,
    store: Store,
    commits: CommitQueue,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    open_holds: HashMap<HoldId, OpenHold>,
    /// Open holds by monotonic deadline, to find the due ones without a scan.
    deadlines: BTreeSet<(u64, HoldId)>,
    /// The time of the last ledger entry: entries never go back in time,
    /// even when the wall clock does.
    last_at_ms: u64,
    /// Holds closed by a change that is not durable yet: the store still shows them open.
    closing_holds: HashMap<HoldId, HoldRecord>,
    /// Spends whose refund is decided but not durable yet.
    refunding: HashSet<SpendId>,
    /// Idempotency keys whose change is decided but not yet durable.
    keys_in_flight: HashMap<Vec<u8>, Fingerprint>,
    sync_window: Option<SyncWindow>,
    next_sync_token: u64,
    alerts: Addr<AlertActor>,
    /// The API keys (SPEC §9.1): their changes are ledger entries too.
    keys: ApiKeys,
    /// Open holds by user, for `max_open_holds_per_user` (SPEC §9.2).
    holds_per_user: HashMap<UserId, u32>,
    max_open_holds_per_user: u32,
    /// What the view is made of after the last change, published for the
    /// public reads (catalogue, status) so that they never queue for this
    /// actor (SPEC §9.2).
    views: watch::Sender<Option<Arc<ViewInputs>>>,
}

/// An open hold and its deadline on the monotonic clock: the wall-clock
/// `expires_at_ms` is for people, and a wall clock set back must not stretch
/// the hold.
struct OpenHold {
    record: HoldRecord,
    deadline_ms: u64,
}

impl InventoryActor {
    /// Starts from what `engine::recover` found on disk.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        recovered: Recovered,
        settings: &Settings,
        store: Store,
        commits: CommitQueue,
        clock: Arc<dyn Clock>,
        health: Arc<Health>,
        alerts: Addr<AlertActor>,
        keys: ApiKeys,
        views: watch::Sender<Option<Arc<ViewInputs>>>,
    ) -> Self {
        let Recovered { state, open_holds, packages, last_at_ms, .. } = recovered;
        // What is left of each hold, by the wall clock (the monotonic one does
        // not survive a restart), and never more than its whole TTL.
        let (wall_ms, monotonic_ms) = (clock.now_ms(), clock.monotonic_ms());
        let open_holds: HashMap<HoldId, OpenHold> = open_holds
            .into_iter()
            .map(|record| {
                let ttl_ms = record.expires_at_ms.saturating_sub(record.created_at_ms);
                let left_ms = record.expires_at_ms.saturating_sub(wall_ms).min(ttl_ms);
                let deadline_ms = monotonic_ms.saturating_add(left_ms);
                (record.hold_id.clone(), OpenHold { record, deadline_ms })
            })
            .collect();
        let deadlines = open_holds.values().map(|open| (open.deadline_ms, open.record.hold_id.clone())).collect();
        let mut holds_per_user: HashMap<UserId, u32> = HashMap::new();
        for open in open_holds.values() {
            let count = holds_per_user.entry(open.record.user.clone()).or_default();
            *count = count.saturating_add(1);
        }
        Self {
            state,
            ratio: settings.ratio,
            packages: Arc::new(packages),
            warning_level: settings.levels.warning,
            store,
            commits,
            clock,
            health,
            open_holds,
            deadlines,
            last_at_ms,
            closing_holds: HashMap::new(),
            refunding: HashSet::new(),
            keys_in_flight: HashMap::new(),
            sync_window: None,
            next_sync_token: 1,
            alerts,
            keys,
            holds_per_user,
            max_open_holds_per_user: settings.max_open_holds_per_user,
            views,
        }
    }

    /// Tells the alert actor how the inventory stands (only once it has synced:
    /// before that the balance is not known).
    fn observe(&self, sale: bool, refused_for_capacity: bool) {
        if !self.health.synced() {
            return;
        }
        let capacity = self.capacity();
        self.alerts.do_send(InventoryObserved {
            available: capacity.available(),
            provider_balance: capacity.provider_balance,
            reserved: capacity.reserved,
            capacity: capacity.user_credits(),
            purchases_enabled: self.state.purchases_enabled,
            disabled_reason: self.state.disabled_reason.clone(),
            sale,
            refused_for_capacity,
        });
    }

    /// Reports a refusal for capacity to the alerts, then passes the decision on.
    fn note_refusal<T>(&self, decision: Result<T, EngineError>) -> Result<T, EngineError> {
        if matches!(decision, Err(EngineError::InsufficientCapacity)) {
            metrics::counter!("creditd_capacity_refusals_total").increment(1);
            self.observe(false, true);
        }
        decision
    }

    /// The `package` label of a purchase: a configured package's id, or
    /// `unknown`, so that request input never makes a new metric series.
    fn package_label(&self, package_id: &PackageId) -> String {
        match self.packages.iter().find(|package| &package.id == package_id) {
            Some(package) => package.id.to_string(),
            None => UNKNOWN_PACKAGE_LABEL.to_owned(),
        }
    }

    fn capacity(&self) -> Capacity {
        Capacity { provider_balance: self.state.provider_balance, reserved: self.state.reserved, ratio: self.ratio }
    }

    /// Storage has not failed: a change may still be written (an operator's
    /// too, before the first sync).
    fn ensure_writable(&self) -> Result<(), EngineError> {
        if self.health.storage_failed() {
            return Err(EngineError::NotReady("storage failed; restart required"));
        }
        Ok(())
    }

    fn ensure_ready(&self) -> Result<(), EngineError> {
        self.ensure_writable()?;
        if !self.health.synced() {
            return Err(EngineError::NotReady("waiting for the first provider sync"));
        }
        Ok(())
    }

    /// The checks every sale (purchase or hold) passes, in the order of SPEC §9.
    fn sellable_package(&self, package_id: &PackageId) -> Result<(Package, ProviderCredits), EngineError> {
        if !self.state.purchases_enabled {
            return Err(EngineError::PurchasesDisabled);
        }
        let package = self
            .packages
            .iter()
            .find(|package| &package.id == package_id)
            .ok_or_else(|| EngineError::UnknownPackage(package_id.clone()))?;
        if !package.enabled {
            return Err(EngineError::PackageDisabled(package.id.clone()));
        }
        let needed = self.capacity().fits(package.credits)?.ok_or(EngineError::InsufficientCapacity)?;
        Ok((package.clone(), needed))
    }

    /// Panics on a broken invariant: that is a bug, and continuing would
    /// write a wrong state to disk.
    fn assert_invariants(&self, next: &InventoryRecord) {
        let spoken_for = next
            .wallets_total
            .checked_add(next.holds_total)
            .and_then(|credits| self.ratio.backing(credits))
            .expect("Σ wallets + Σ holds stays within bounds");
        assert_eq!(next.reserved, spoken_for, "reserved must equal ratio × (Σ wallets + Σ open holds)");
        assert!(next.next_seq > self.state.next_seq, "every change appends to the ledger");
    }

    /// Looks the key up among changes in flight, then on disk.
    fn check_key(
        &self,
        operation: Operation,
        key: &ScopedKey,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Receipt>, EngineError> {
        let store_key = keys::scoped_idempotency(operation, key);
        if let Some(in_flight) = self.keys_in_flight.get(&store_key) {
            return Err(if in_flight == fingerprint {
                EngineError::IdempotencyKeyInUse
            } else {
                EngineError::IdempotencyKeyReused
            });
        }
        match self.store.idempotency(operation, Some(&key.caller), &key.key)? {
            Some(record) if &record.fingerprint == fingerprint => Ok(Some(record.receipt)),
            Some(_) => Err(EngineError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }

    fn begin(&self) -> Change {
        Change {
            next: self.state.clone(),
            writes: WriteSet::default(),
            at_ms: self.clock.now_ms().max(self.last_at_ms),
            monotonic_ms: self.clock.monotonic_ms(),
            holds: Vec::new(),
            refunding: None,
            key_in_flight: None,
            consumption: Consumption::None,
            sale: false,
            package: None,
            api_key: None,
        }
    }

    /// The hold as it stands now: open, closing, or as stored.
    fn hold(&self, id: &HoldId) -> Result<HoldRecord, EngineError> {
        if let Some(hold) = self.open_holds.get(id).map(|open| &open.record).or_else(|| self.closing_holds.get(id)) {
            return Ok(hold.clone());
        }
        self.store.hold(id)?.ok_or_else(|| EngineError::UnknownHold(id.clone()))
    }

    /// Queues `change`; once queued, its state is the actor's.
    fn commit(&mut self, mut change: Change) -> Result<CommitReceipt, EngineError> {
        self.assert_invariants(&change.next);
        change.writes.inventory(change.next.clone());
        let durable = self.commits.submit(change.writes)?;
        let earned = change.next.revenue.minor_units().saturating_sub(self.state.revenue.minor_units());
        if earned > 0 {
            let currency = change.next.revenue.currency().to_string();
            metrics::counter!("creditd_revenue_minor_units_total", "currency" => currency).increment(earned);
        }
        match change.consumption {
            Consumption::Spent(credits) => {
                metrics::counter!("creditd_consumed_provider_credits_total").increment(credits.get());
            }
            Consumption::Refunded { credits, .. } => {
                metrics::counter!("creditd_refunded_provider_credits_total").increment(credits.get());
            }
            Consumption::None => {}
        }
        self.state = change.next;
        if let Some(record) = change.api_key {
            self.adopt_api_key(record);
        }
        if let Some(package) = change.package {
            if let Some(slot) = Arc::make_mut(&mut self.packages).iter_mut().find(|slot| slot.id == package.id) {
                *slot = package;
            }
        }
        self.last_at_ms = change.at_ms;
        for hold in change.holds {
            if let Some(open) = self.open_holds.remove(&hold.hold_id) {
                self.deadlines.remove(&(open.deadline_ms, open.record.hold_id));
                self.count_hold(&open.record.user, false);
            }
            if hold.state == HoldState::Open {
                self.count_hold(&hold.user, true);
                let ttl_ms = hold.expires_at_ms.saturating_sub(hold.created_at_ms);
                let deadline_ms = change.monotonic_ms.saturating_add(ttl_ms);
                self.deadlines.insert((deadline_ms, hold.hold_id.clone()));
                self.open_holds.insert(hold.hold_id.clone(), OpenHold { record: hold, deadline_ms });
            } else {
                self.closing_holds.insert(hold.hold_id.clone(), hold);
            }
        }
        if let Some(spend) = change.refunding {
            self.refunding.insert(spend);
        }
        if let Some((key, fingerprint)) = &change.key_in_flight {
            self.keys_in_flight.insert(key.clone(), *fingerprint);
        }
        if let Some(window) = &mut self.sync_window {
            match change.consumption {
                Consumption::Spent(credits) => window.consumed = window.consumed.checked_add(credits)?,
                Consumption::Refunded { spend_seq, credits } if spend_seq >= window.start_seq => {
                    window.consumed = window.consumed.saturating_sub(credits);
                }
                Consumption::None | Consumption::Refunded { .. } => {}
            }
        }
        self.observe(change.sale, false);
        self.publish_view();
        Ok(durable)
    }

    /// Publishes what the view is made of, as it stands, for the public reads.
    fn publish_view(&self) {
        self.views.send_replace(Some(Arc::new(self.view_inputs())));
    }

    /// Keeps `holds_per_user` as `open_holds` moves.
    fn count_hold(&mut self, user: &UserId, opened: bool) {
        if opened {
            let count = self.holds_per_user.entry(user.clone()).or_default();
            *count = count.saturating_add(1);
        } else if let Some(count) = self.holds_per_user.get_mut(user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.holds_per_user.remove(user);
            }
        }
    }

    /// Commits `change` and answers `value` once it is durable.
    fn finish<T: 'static>(&mut self, change: Change, value: T) -> Reply<T> {
        let closing: Vec<HoldId> =
            change.holds.iter().filter(|hold| hold.state != HoldState::Open).map(|hold| hold.hold_id.clone()).collect();
        let refunding = change.refunding.clone();
        let key = change.key_in_flight.as_ref().map(|(key, _)| key.clone());
        let durable = match self.commit(change) {
            Ok(durable) => durable,
            Err(error) => return ready(Err(error)),
        };
        Box::pin(durable.into_actor(self).map(move |result, actor, _| {
            for id in &closing {
                actor.closing_holds.remove(id);
            }
            if let Some(spend) = &refunding {
                actor.refunding.remove(spend);
            }
            if let Some(key) = &key {
                actor.keys_in_flight.remove(key);
            }
            actor.durable(result).map(|()| value)
        }))
    }

    /// What a commit receipt means for the request waiting on it.
    fn durable(&self, receipt: Result<Result<(), CommitFailed>, oneshot::error::RecvError>) -> Result<(), EngineError> {
        let failure = match receipt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(CommitFailed::NotApplied(reason))) => EngineError::Storage(reason),
            Ok(Err(CommitFailed::Unconfirmed(reason))) => EngineError::OutcomeUnknown(reason),
            Err(_) => EngineError::OutcomeUnknown("the commit loop stopped".into()),
        };
        self.health.mark_storage_failed();
        Err(failure)
    }

    /// Answers `answer` once every change queued so far is durable: a replay
    /// (or a refusal that names a state) repeats what an earlier change
    /// decided, and may not be said before that change is on disk (SPEC §9).
    /// If the wait fails, the earlier change may or may not be applied.
    fn after_durable<T: 'static>(&mut self, answer: Result<T, EngineError>) -> Reply<T> {
        let barrier = match self.commits.barrier() {
            Ok(barrier) => barrier,
            Err(error) => return ready(Err(error.into())),
        };
        Box::pin(barrier.into_actor(self).map(move |result, actor, _| match actor.durable(result) {
            Ok(()) => answer,
            Err(EngineError::Storage(reason) | EngineError::OutcomeUnknown(reason)) => {
                Err(EngineError::OutcomeUnknown(format!("the change this answer repeats: {reason}")))
            }
            Err(other) => Err(other),
        }))
    }

    fn respond<T: 'static>(&mut self, decision: Result<Decision<T>, EngineError>) -> Reply<T> {
        match decision {
            Err(error) if error.names_a_state() => self.after_durable(Err(error)),
            Err(error) => ready(Err(error)),
            Ok(Decision::Replay(value)) => self.after_durable(Ok(value)),
            Ok(Decision::Apply(change, value)) => self.finish(*change, value),
        }
    }

    /// Expires every open hold whose deadline has passed, as one change.
    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        if self.health.storage_failed() {
            return;
        }
        let now = self.clock.monotonic_ms();
        let due: Vec<HoldId> =
            self.deadlines.iter().take_while(|(deadline, _)| *deadline <= now).map(|(_, id)| id.clone()).collect();
        if due.is_empty() {
            return;
        }
        match self.decide_expiries(&due) {
            Ok(change) => {
                let expired = u64::try_from(change.holds.len()).unwrap_or(u64::MAX);
                metrics::counter!("creditd_holds_total", "operation" => "expire", "outcome" => "ok").increment(expired);
                let durable = self.finish(change, ());
                ctx.spawn(durable.map(|_, _, _| ()));
            }
            Err(error) => tracing::error!(%error, "cannot expire holds"),
        }
    }

    /// Whether an open hold's deadline has passed at `monotonic_ms`.
    fn is_due(&self, id: &HoldId, monotonic_ms: u64) -> bool {
        self.open_holds.get(id).is_some_and(|open| open.deadline_ms <= monotonic_ms)
    }

    fn decide_expiries(&self, due: &[HoldId]) -> Result<Change, EngineError> {
        let mut change = self.begin();
        // By the monotonic clock each hold's whole TTL has passed since it was
        // made, so the ledger's time is at least its `expiresAt`, whatever the
        // wall clock says now.
        let latest_deadline = due.iter().filter_map(|id| self.open_holds.get(id)).map(|open| open.record.expires_at_ms);
        change.at_ms = latest_deadline.fold(change.at_ms, u64::max);
        for id in due {
            let Some(OpenHold { record: hold, .. }) = self.open_holds.get(id) else { continue };
            change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
            change.next.reserved = change.next.reserved.checked_sub(self.ratio.backing(hold.credits)?)?;
            let kind = EntryKind::HoldExpired {
                hold_id: id.clone(),
                credits: hold.credits,
                expires_at_ms: hold.expires_at_ms,
            };
            change.record(Some(&hold.user), None, kind, None)?;
            change.put_hold(HoldRecord { state: HoldState::Expired, ..hold.clone() })?;
        }
        Ok(change)
    }
}

impl Actor for InventoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.publish_view();
        ctx.run_interval(EXPIRY_SWEEP_INTERVAL, |actor, ctx| actor.expire_due(ctx));
        let every = Duration::from_millis(crate::access::LAST_USED_GRANULARITY_MS);
        ctx.run_interval(every, |actor, _| actor.persist_key_uses());
    }
}
