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
//! Invariants asserted on every change: `reserved == ratio × (Σ wallets + Σ
//! open holds)`; a sale or hold never leaves `reserved > providerBalance`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

mod api_keys;

pub use api_keys::{ApiKeys, CreateApiKey, ListApiKeys, RevokeApiKey};

use super::alert::{AlertActor, InventoryObserved};
use super::EngineError;
use crate::clock::Clock;
use crate::domain::{
    Capacity, HoldId, Package, PackageId, PlatformStatus, ProviderCredits, Ratio, Reason, ScopedKey, SpendId,
    UserCredits, UserId,
};
use crate::engine::{Health, Recovered, Settings};
use crate::store::commit::{CommitFailed, CommitQueue, CommitReceipt};
use crate::store::records::{
    ApiKeyRecord, CaptureReceipt, EntryKind, HoldReceipt, HoldRecord, HoldState, IdempotencyRecord, InventoryRecord,
    LedgerEntry, Operation, PackageOverride, PurchaseReceipt, Receipt, RefundReceipt, SpendReceipt, SpendRecord,
    SyncRecord, WalletRecord,
};
use crate::store::{keys, Store, Write, WriteSet};

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

/// A change being built: the next state, its writes, and what the actor
/// must remember in memory once it is queued.
struct Change {
    next: InventoryRecord,
    writes: WriteSet,
    /// Wall time of its ledger entries: never before the previous change's.
    at_ms: u64,
    /// Monotonic time of the decision, for the deadlines of holds it opens.
    monotonic_ms: u64,
    holds: Vec<HoldRecord>,
    refunding: Option<SpendId>,
    key_in_flight: Option<(Vec<u8>, Fingerprint)>,
    consumption: Consumption,
    /// The change sells capacity (a purchase or a hold): alerts watch for "low after sale".
    sale: bool,
    /// A package's new settings, adopted once the change is queued.
    package: Option<Package>,
    /// An API key's new record, adopted once the change is queued.
    api_key: Option<ApiKeyRecord>,
}

/// How a change moves the consumption that a sync in flight must keep.
#[derive(Debug, Clone, Copy)]
enum Consumption {
    None,
    Spent(ProviderCredits),
    Refunded { spend_seq: u64, credits: ProviderCredits },
}

impl Change {
    /// Appends a ledger entry describing `next` as it stands now; returns its sequence number.
    fn record(
        &mut self,
        user: Option<&UserId>,
        key: Option<&ScopedKey>,
        kind: EntryKind,
        wallet_after: Option<UserCredits>,
    ) -> Result<u64, EngineError> {
        let seq = self.next.next_seq;
        self.next.next_seq = seq.checked_add(1).ok_or(EngineError::Storage("ledger sequence exhausted".into()))?;
        let entry = LedgerEntry {
            seq,
            at_ms: self.at_ms,
            user: user.cloned(),
            idempotency_key: key.map(|key| key.key.clone()),
            kind,
            provider_balance_after: self.next.provider_balance,
            reserved_after: self.next.reserved,
            wallet_after,
            caller: key.map(|key| key.caller.clone()),
        };
        self.writes.ledger(entry);
        Ok(seq)
    }

    /// The sequence number the next entry will get, for ids derived from it.
    fn next_seq(&self) -> u64 {
        self.next.next_seq
    }

    fn put_hold(&mut self, hold: HoldRecord) -> Result<(), EngineError> {
        self.writes.hold(hold.clone());
        self.holds.push(hold);
        Ok(())
    }

    /// Writes `wallet` as moved by ledger entry `seq`.
    fn put_wallet(&mut self, user: &UserId, wallet: &mut WalletRecord, seq: u64) -> Result<(), EngineError> {
        wallet.note_entry(seq);
        self.writes.put_wallet(user, wallet);
        Ok(())
    }

    /// Remembers `receipt` under `key`, in the same batch as the effect.
    fn remember(
        &mut self,
        operation: Operation,
        key: &ScopedKey,
        fingerprint: Fingerprint,
        receipt: Receipt,
    ) -> Result<(), EngineError> {
        let store_key = keys::scoped_idempotency(operation, key);
        let record = IdempotencyRecord { fingerprint, receipt, at_ms: self.at_ms };
        self.writes.push(Write::Remember { operation, caller: Some(key.caller.clone()), key: key.key.clone(), record });
        self.key_in_flight = Some((store_key, fingerprint));
        Ok(())
    }
}

/// What a decision produced: a replayed answer, or a change to commit.
enum Decision<T> {
    Replay(T),
    Apply(Box<Change>, T),
}

type Reply<T> = ResponseActFuture<InventoryActor, Result<T, EngineError>>;

/// The metrics label of a decision: `ok`, `replayed`, or the refusal.
fn outcome_label<T>(decision: &Result<Decision<T>, EngineError>) -> &'static str {
    match decision {
        Ok(Decision::Apply(..)) => "ok",
        Ok(Decision::Replay(_)) => "replayed",
        Err(error) => error.label(),
    }
}

fn ready<T: 'static>(result: Result<T, EngineError>) -> Reply<T> {
    Box::pin(fut::ready(result))
}

fn credited(wallet: WalletRecord, credits: UserCredits) -> Result<WalletRecord, EngineError> {
    Ok(WalletRecord {
        balance: wallet.balance.checked_add(credits)?,
        version: wallet.version.checked_add(1).ok_or(EngineError::Storage("wallet version exhausted".into()))?,
        recent: wallet.recent,
    })
}

fn debited(wallet: WalletRecord, credits: UserCredits) -> Result<WalletRecord, EngineError> {
    Ok(WalletRecord {
        balance: wallet.balance.checked_sub(credits).map_err(|_| EngineError::InsufficientFunds)?,
        version: wallet.version.checked_add(1).ok_or(EngineError::Storage("wallet version exhausted".into()))?,
        recent: wallet.recent,
    })
}

fn id_from_seq<T>(
    prefix: &str,
    seq: u64,
    parse: impl Fn(&str) -> Result<T, crate::domain::IdError>,
) -> Result<T, EngineError> {
    parse(&format!("{prefix}_{seq}")).map_err(|error| EngineError::Storage(format!("generated id: {error}")))
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

    fn view(&self) -> InventoryView {
        InventoryView::of(&self.view_inputs(), self.ensure_ready().is_ok())
    }

    /// What the view is computed from: a few numbers and shared packages, so
    /// that publishing them after every change costs one small allocation.
    fn view_inputs(&self) -> ViewInputs {
        ViewInputs {
            state: self.state.clone(),
            packages: Arc::clone(&self.packages),
            ratio: self.ratio,
            warning_level: self.warning_level,
            open_holds: self.open_holds.len(),
        }
    }
}

/// The inventory as of one change, published for the public reads.
#[derive(Debug, Clone)]
pub struct ViewInputs {
    state: InventoryRecord,
    packages: Arc<Vec<Package>>,
    ratio: Ratio,
    warning_level: ProviderCredits,
    open_holds: usize,
}

impl InventoryView {
    /// The view of `inputs`; `ready` as the engine's health says.
    pub fn of(inputs: &ViewInputs, ready: bool) -> Self {
        let state = &inputs.state;
        let capacity =
            Capacity { provider_balance: state.provider_balance, reserved: state.reserved, ratio: inputs.ratio };
        let status = PlatformStatus::of(&capacity, state.purchases_enabled, inputs.warning_level);
        let limited = capacity.available() < i64::try_from(inputs.warning_level.get()).unwrap_or(i64::MAX);
        let packages = inputs
            .packages
            .iter()
            .map(|package| {
                let sellable = capacity.times_sellable(package.credits);
                let buyable = package.enabled && sellable > 0 && state.purchases_enabled && !capacity.overcommitted();
                let message = if !state.purchases_enabled {
                    Some(PlatformStatus::Disabled.message())
                } else if !buyable {
                    Some(PACKAGE_UNAVAILABLE)
                } else if limited {
                    Some(PlatformStatus::Limited.message())
                } else {
                    None
                };
                PackageView { package: package.clone(), sellable, disabled: !buyable, message }
            })
            .collect();
        Self {
            capacity,
            status,
            purchases_enabled: state.purchases_enabled,
            disabled_reason: state.disabled_reason.clone(),
            packages,
            last_sync: state.last_sync,
            wallets_total: state.wallets_total,
            holds_total: state.holds_total,
            revenue: state.revenue,
            consumed_total: state.consumed_total,
            open_holds: inputs.open_holds,
            ready,
        }
    }
}

/// The message a package that cannot be bought now carries (SPEC §5).
pub const PACKAGE_UNAVAILABLE: &str = "Temporarily unavailable";

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

// ---------------------------------------------------------------------------
// Changes to a wallet: sent by the user's wallet actor, which waits for the
// answer before its next operation and adopts the wallet it returns.

/// What a wallet actor asks the inventory to do.
#[derive(Debug, Clone)]
pub enum WalletCommand {
    Purchase { package_id: PackageId, key: ScopedKey, fingerprint: Fingerprint },
    Capture { hold_id: HoldId },
    Spend { credits: UserCredits, reason: Option<Reason>, key: ScopedKey, fingerprint: Fingerprint },
    Refund { spend_id: SpendId },
}

/// A wallet command for `user`, whose wallet is `wallet` right now.
#[derive(Debug)]
pub struct WalletChange {
    pub user: UserId,
    pub wallet: WalletRecord,
    pub command: WalletCommand,
}

/// The answer to a wallet command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletReceipt {
    Purchase(PurchaseReceipt),
    Capture(CaptureReceipt),
    Spend(SpendReceipt),
    Refund(RefundReceipt),
}

/// A wallet command's answer and, when it changed the wallet, its new state.
#[derive(Debug)]
pub struct WalletOutcome {
    pub receipt: WalletReceipt,
    pub wallet: Option<WalletRecord>,
}

impl Message for WalletChange {
    type Result = Result<WalletOutcome, EngineError>;
}

impl Handler<WalletChange> for InventoryActor {
    type Result = Reply<WalletOutcome>;

    fn handle(&mut self, message: WalletChange, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let counted = match &message.command {
            WalletCommand::Purchase { package_id, .. } => Some(self.package_label(package_id)),
            _ => None,
        };
        let operation = match &message.command {
            WalletCommand::Purchase { .. } => "purchase",
            WalletCommand::Capture { .. } => "capture",
            WalletCommand::Spend { .. } => "spend",
            WalletCommand::Refund { .. } => "refund",
        };
        let decision = self.ensure_ready().and_then(|()| {
            let WalletChange { user, wallet, command } = message;
            match command {
                WalletCommand::Purchase { package_id, key, fingerprint } => {
                    self.decide_purchase(&user, wallet, &package_id, &key, fingerprint)
                }
                WalletCommand::Capture { hold_id } => self.decide_capture(&user, wallet, &hold_id),
                WalletCommand::Spend { credits, reason, key, fingerprint } => {
                    self.decide_spend(&user, wallet, credits, reason, &key, fingerprint)
                }
                WalletCommand::Refund { spend_id } => self.decide_refund(&user, wallet, &spend_id),
            }
        });
        let decision = self.note_refusal(decision);
        let outcome = outcome_label(&decision);
        match (operation, counted) {
            ("purchase", Some(package)) => {
                metrics::counter!("creditd_purchases_total", "package" => package, "outcome" => outcome).increment(1);
            }
            ("capture", _) => {
                metrics::counter!("creditd_holds_total", "operation" => "capture", "outcome" => outcome).increment(1);
            }
            ("spend", _) => metrics::counter!("creditd_spends_total", "outcome" => outcome).increment(1),
            _ => metrics::counter!("creditd_refunds_total", "outcome" => outcome).increment(1),
        }
        self.respond(decision)
    }
}

fn outcome(receipt: WalletReceipt, wallet: Option<WalletRecord>) -> WalletOutcome {
    WalletOutcome { receipt, wallet }
}

impl InventoryActor {
    fn decide_purchase(
        &self,
        user: &UserId,
        wallet: WalletRecord,
        package_id: &PackageId,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<WalletOutcome>, EngineError> {
        match self.check_key(Operation::Purchase, key, &fingerprint)? {
            Some(Receipt::Purchase(receipt)) => {
                return Ok(Decision::Replay(outcome(WalletReceipt::Purchase(receipt), None)))
            }
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        let (package, needed) = self.sellable_package(package_id)?;
        let mut wallet = credited(wallet, package.credits)?;
        let mut change = self.begin();
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(package.credits)?;
        change.next.revenue =
            change.next.revenue.checked_add(package.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        assert!(change.next.reserved <= change.next.provider_balance, "a sale never reserves more than the balance");
        let purchase_id = format!("pur_{}", change.next_seq());
        let kind = EntryKind::Purchase {
            purchase_id: purchase_id.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
        };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = PurchaseReceipt {
            purchase_id,
            user_id: user.clone(),
            package_id: package.id,
            credits: package.credits,
            balance: wallet.balance,
        };
        change.remember(Operation::Purchase, key, fingerprint, Receipt::Purchase(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), outcome(WalletReceipt::Purchase(receipt), Some(wallet))))
    }

    fn decide_capture(
        &self,
        user: &UserId,
        wallet: WalletRecord,
        hold_id: &HoldId,
    ) -> Result<Decision<WalletOutcome>, EngineError> {
        let hold = self.hold(hold_id)?;
        if &hold.user != user {
            return Err(EngineError::UnknownHold(hold_id.clone()));
        }
        let mut change = self.begin();
        match &hold.state {
            HoldState::Captured(receipt) => {
                return Ok(Decision::Replay(outcome(WalletReceipt::Capture(receipt.clone()), None)))
            }
            HoldState::Released => return Err(EngineError::HoldReleased),
            HoldState::Expired => return Err(EngineError::HoldExpired),
            HoldState::Open if self.is_due(&hold.hold_id, change.monotonic_ms) => return Err(EngineError::HoldExpired),
            HoldState::Open => {}
        }
        let mut wallet = credited(wallet, hold.credits)?;
        change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(hold.credits)?;
        change.next.revenue =
            change.next.revenue.checked_add(hold.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        let kind = EntryKind::HoldCaptured {
            hold_id: hold.hold_id.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            price: hold.price,
        };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = CaptureReceipt {
            hold_id: hold.hold_id.clone(),
            user_id: user.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            balance: wallet.balance,
        };
        change.put_hold(HoldRecord { state: HoldState::Captured(receipt.clone()), ..hold })?;
        Ok(Decision::Apply(Box::new(change), outcome(WalletReceipt::Capture(receipt), Some(wallet))))
    }

    fn decide_spend(
        &self,
        user: &UserId,
        wallet: WalletRecord,
        credits: UserCredits,
        reason: Option<Reason>,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<WalletOutcome>, EngineError> {
        match self.check_key(Operation::Spend, key, &fingerprint)? {
            Some(Receipt::Spend(receipt)) => return Ok(Decision::Replay(outcome(WalletReceipt::Spend(receipt), None))),
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        if wallet.version == 0 {
            return Err(EngineError::UnknownUser);
        }
        let mut wallet = debited(wallet, credits)?;
        let provider = self.ratio.backing(credits)?;
        if provider > self.state.provider_balance {
            return Err(EngineError::EnhancementUnavailable);
        }
        let mut change = self.begin();
        change.next.provider_balance = change.next.provider_balance.checked_sub(provider)?;
        change.next.reserved = change.next.reserved.checked_sub(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_sub(credits)?;
        change.next.consumed_total = change.next.consumed_total.checked_add(provider)?;
        change.consumption = Consumption::Spent(provider);
        let spend_id = id_from_seq("spend", change.next_seq(), SpendId::parse)?;
        let kind = EntryKind::Spend { spend_id: spend_id.clone(), credits, reason };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let record = SpendRecord { spend_id: spend_id.clone(), user: user.clone(), credits, seq, refund: None };
        change.writes.spend(record);
        let receipt = SpendReceipt { spend_id, user_id: user.clone(), credits, balance: wallet.balance };
        change.remember(Operation::Spend, key, fingerprint, Receipt::Spend(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), outcome(WalletReceipt::Spend(receipt), Some(wallet))))
    }

    fn decide_refund(
        &self,
        user: &UserId,
        wallet: WalletRecord,
        spend_id: &SpendId,
    ) -> Result<Decision<WalletOutcome>, EngineError> {
        let spend = self.store.spend(spend_id)?.ok_or_else(|| EngineError::UnknownSpend(spend_id.clone()))?;
        if &spend.user != user {
            return Err(EngineError::UnknownSpend(spend_id.clone()));
        }
        if spend.refund.is_some() || self.refunding.contains(spend_id) {
            return Err(EngineError::AlreadyRefunded);
        }
        let mut wallet = credited(wallet, spend.credits)?;
        let provider = self.ratio.backing(spend.credits)?;
        let mut change = self.begin();
        change.next.provider_balance = change.next.provider_balance.checked_add(provider)?;
        change.next.reserved = change.next.reserved.checked_add(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(spend.credits)?;
        change.next.consumed_total = change.next.consumed_total.saturating_sub(provider);
        change.consumption = Consumption::Refunded { spend_seq: spend.seq, credits: provider };
        change.refunding = Some(spend_id.clone());
        let kind = EntryKind::Refund { spend_id: spend_id.clone(), credits: spend.credits };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = RefundReceipt {
            spend_id: spend_id.clone(),
            user_id: user.clone(),
            credits: spend.credits,
            balance: wallet.balance,
        };
        let record = SpendRecord { refund: Some(receipt.clone()), ..spend };
        change.writes.spend(record);
        Ok(Decision::Apply(Box::new(change), outcome(WalletReceipt::Refund(receipt), Some(wallet))))
    }
}

// ---------------------------------------------------------------------------
// Holds (SPEC §5): created and released here; captured through the wallet.

/// Reserve a package for `user` for `ttl_ms`.
#[derive(Debug)]
pub struct CreateHold {
    pub user: UserId,
    pub package_id: PackageId,
    pub ttl_ms: u64,
    pub key: Option<ScopedKey>,
    pub fingerprint: Fingerprint,
}

impl Message for CreateHold {
    type Result = Result<HoldReceipt, EngineError>;
}

impl Handler<CreateHold> for InventoryActor {
    type Result = Reply<HoldReceipt>;

    fn handle(&mut self, message: CreateHold, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let decision = self.ensure_ready().and_then(|()| self.decide_hold(&message));
        let decision = self.note_refusal(decision);
        let outcome = outcome_label(&decision);
        metrics::counter!("creditd_holds_total", "operation" => "create", "outcome" => outcome).increment(1);
        self.respond(decision)
    }
}

impl InventoryActor {
    fn decide_hold(&self, message: &CreateHold) -> Result<Decision<HoldReceipt>, EngineError> {
        if let Some(key) = &message.key {
            match self.check_key(Operation::Hold, key, &message.fingerprint)? {
                Some(Receipt::Hold(receipt)) => return Ok(Decision::Replay(receipt)),
                Some(_) => return Err(EngineError::IdempotencyKeyReused),
                None => {}
            }
        }
        let open = self.holds_per_user.get(&message.user).copied().unwrap_or(0);
        if open >= self.max_open_holds_per_user {
            return Err(EngineError::TooManyHolds(self.max_open_holds_per_user));
        }
        let (package, needed) = self.sellable_package(&message.package_id)?;
        let mut change = self.begin();
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        change.next.holds_total = change.next.holds_total.checked_add(package.credits)?;
        assert!(change.next.reserved <= change.next.provider_balance, "a hold never reserves more than the balance");
        let hold_id = id_from_seq("hold", change.next_seq(), HoldId::parse)?;
        let expires_at_ms = change
            .at_ms
            .checked_add(message.ttl_ms)
            .ok_or(EngineError::Quantity(crate::domain::QuantityError::Overflow))?;
        let kind = EntryKind::HoldCreated {
            hold_id: hold_id.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
            expires_at_ms,
        };
        change.record(Some(&message.user), message.key.as_ref(), kind, None)?;
        change.put_hold(HoldRecord {
            hold_id: hold_id.clone(),
            user: message.user.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
            created_at_ms: change.at_ms,
            expires_at_ms,
            state: HoldState::Open,
        })?;
        let receipt = HoldReceipt {
            hold_id,
            user_id: message.user.clone(),
            package_id: package.id,
            credits: package.credits,
            expires_at_ms,
        };
        if let Some(key) = &message.key {
            change.remember(Operation::Hold, key, message.fingerprint, Receipt::Hold(receipt.clone()))?;
        }
        Ok(Decision::Apply(Box::new(change), receipt))
    }
}

/// Give a hold's capacity back.
#[derive(Debug)]
pub struct ReleaseHold {
    pub hold_id: HoldId,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseReceipt {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub credits: UserCredits,
}

impl Message for ReleaseHold {
    type Result = Result<ReleaseReceipt, EngineError>;
}

impl Handler<ReleaseHold> for InventoryActor {
    type Result = Reply<ReleaseReceipt>;

    fn handle(&mut self, message: ReleaseHold, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let decision = self.ensure_ready().and_then(|()| self.decide_release(&message.hold_id));
        let outcome = outcome_label(&decision);
        metrics::counter!("creditd_holds_total", "operation" => "release", "outcome" => outcome).increment(1);
        self.respond(decision)
    }
}

impl InventoryActor {
    fn decide_release(&self, hold_id: &HoldId) -> Result<Decision<ReleaseReceipt>, EngineError> {
        let hold = self.hold(hold_id)?;
        let receipt =
            ReleaseReceipt { hold_id: hold.hold_id.clone(), user_id: hold.user.clone(), credits: hold.credits };
        let mut change = self.begin();
        match hold.state {
            HoldState::Released => return Ok(Decision::Replay(receipt)),
            HoldState::Captured(_) => return Err(EngineError::HoldCaptured),
            HoldState::Expired => return Err(EngineError::HoldExpired),
            HoldState::Open if self.is_due(&hold.hold_id, change.monotonic_ms) => return Err(EngineError::HoldExpired),
            HoldState::Open => {}
        }
        change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
        change.next.reserved = change.next.reserved.checked_sub(self.ratio.backing(hold.credits)?)?;
        let kind = EntryKind::HoldReleased { hold_id: hold.hold_id.clone(), credits: hold.credits };
        change.record(Some(&hold.user), None, kind, None)?;
        change.put_hold(HoldRecord { state: HoldState::Released, ..hold })?;
        Ok(Decision::Apply(Box::new(change), receipt))
    }
}

/// Whose hold is this? The engine asks before routing a capture to a wallet.
#[derive(Debug)]
pub struct HoldOwner(pub HoldId);

impl Message for HoldOwner {
    type Result = Result<UserId, EngineError>;
}

impl Handler<HoldOwner> for InventoryActor {
    type Result = Result<UserId, EngineError>;

    fn handle(&mut self, message: HoldOwner, _: &mut Self::Context) -> Self::Result {
        Ok(self.hold(&message.0)?.user)
    }
}

/// Whose spend is this? The engine asks before routing a refund to a wallet.
#[derive(Debug)]
pub struct SpendOwner(pub SpendId);

impl Message for SpendOwner {
    type Result = Result<UserId, EngineError>;
}

impl Handler<SpendOwner> for InventoryActor {
    type Result = Result<UserId, EngineError>;

    fn handle(&mut self, message: SpendOwner, _: &mut Self::Context) -> Self::Result {
        let spend = self.store.spend(&message.0)?.ok_or_else(|| EngineError::UnknownSpend(message.0.clone()))?;
        Ok(spend.user)
    }
}

// ---------------------------------------------------------------------------
// What can be sold now.

/// The catalogue, the status and the numbers behind them.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot;

#[derive(Debug, Clone)]
pub struct PackageView {
    pub package: Package,
    /// How many times it can still be sold (SPEC §2's "sellable 23 times").
    pub sellable: u64,
    pub disabled: bool,
    pub message: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct InventoryView {
    pub capacity: Capacity,
    pub status: PlatformStatus,
    pub purchases_enabled: bool,
    pub disabled_reason: Option<String>,
    pub packages: Vec<PackageView>,
    pub last_sync: Option<SyncRecord>,
    pub wallets_total: UserCredits,
    pub holds_total: UserCredits,
    pub revenue: crate::domain::Money,
    pub consumed_total: ProviderCredits,
    pub open_holds: usize,
    pub ready: bool,
}

impl Message for Snapshot {
    type Result = InventoryView;
}

impl Handler<Snapshot> for InventoryActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        MessageResult(self.view())
    }
}

// ---------------------------------------------------------------------------
// Backups (SPEC §11).

/// The last ledger sequence number, answered once everything up to it is
/// durable: the point a consistent backup stops at.
#[derive(Debug, Clone, Copy)]
pub struct DurableSequence;

impl Message for DurableSequence {
    type Result = Result<u64, EngineError>;
}

impl Handler<DurableSequence> for InventoryActor {
    type Result = Reply<u64>;

    fn handle(&mut self, _: DurableSequence, _: &mut Self::Context) -> Self::Result {
        let last = self.state.next_seq.saturating_sub(1);
        self.after_durable(Ok(last))
    }
}

// ---------------------------------------------------------------------------
// Provider sync (SPEC §6).

/// Marks the start of a provider request; the token goes back in [`ApplySync`].
#[derive(Debug, Clone, Copy)]
pub struct BeginSync;

/// Identifies the sync window a real balance belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken(u64);

impl Message for BeginSync {
    type Result = SyncToken;
}

impl Handler<BeginSync> for InventoryActor {
    type Result = MessageResult<BeginSync>;

    fn handle(&mut self, _: BeginSync, _: &mut Self::Context) -> Self::Result {
        let token = self.next_sync_token;
        self.next_sync_token = self.next_sync_token.saturating_add(1);
        self.sync_window = Some(SyncWindow { token, start_seq: self.state.next_seq, consumed: ProviderCredits::ZERO });
        MessageResult(SyncToken(token))
    }
}

/// Sets the provider balance from a real balance fetched after `token`.
#[derive(Debug, Clone, Copy)]
pub struct ApplySync {
    pub real: ProviderCredits,
    pub token: SyncToken,
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    pub real: ProviderCredits,
    pub previous: ProviderCredits,
    pub balance: ProviderCredits,
    pub drift: Option<i64>,
}

impl Message for ApplySync {
    type Result = Result<SyncOutcome, EngineError>;
}

impl Handler<ApplySync> for InventoryActor {
    type Result = Reply<SyncOutcome>;

    fn handle(&mut self, message: ApplySync, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let decided = self.decide_sync(message);
        let (change, outcome) = match decided {
            Ok(decided) => decided,
            Err(error) => return ready(Err(error)),
        };
        self.sync_window = None;
        Box::pin(self.finish(change, outcome).map(|result, actor, _| {
            if result.is_ok() {
                actor.health.mark_synced();
                actor.observe(false, false);
            }
            result
        }))
    }
}

impl InventoryActor {
    fn decide_sync(&self, message: ApplySync) -> Result<(Change, SyncOutcome), EngineError> {
        self.ensure_writable()?;
        let window = self
            .sync_window
            .filter(|window| window.token == message.token.0)
            .ok_or(EngineError::Overloaded("a newer sync started"))?;
        let consumed_in_flight = window.consumed;
        let previous = self.state.provider_balance;
        let balance = message.real.saturating_sub(consumed_in_flight);
        // What the provider should have reported if nothing drifted: today's
        // database balance plus what was consumed after the request left.
        let expected = previous.checked_add(consumed_in_flight)?;
        let drift = self.state.last_sync.map(|_| signed(message.real).saturating_sub(signed(expected)));
        let mut change = self.begin();
        change.next.provider_balance = balance;
        change.next.last_sync = Some(SyncRecord { at_ms: change.at_ms, real: message.real, drift });
        let kind = EntryKind::ProviderSync { real: message.real, previous, consumed_in_flight, drift };
        change.record(None, None, kind, None)?;
        Ok((change, SyncOutcome { real: message.real, previous, balance, drift }))
    }
}

/// Quantities are bounded by 2^53, so they always fit an `i64`.
fn signed(credits: ProviderCredits) -> i64 {
    i64::try_from(credits.get()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------
// Operators (SPEC §5 admin): the kill switch and the packages.

/// Turn the kill switch on (`enabled: false`, with a reason) or off.
#[derive(Debug, Clone)]
pub struct SetPurchasesEnabled {
    pub enabled: bool,
    pub reason: Option<String>,
}

/// The kill switch after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchasesState {
    pub enabled: bool,
    pub reason: Option<String>,
}

impl Message for SetPurchasesEnabled {
    type Result = Result<PurchasesState, EngineError>;
}

impl Handler<SetPurchasesEnabled> for InventoryActor {
    type Result = Reply<PurchasesState>;

    fn handle(&mut self, message: SetPurchasesEnabled, _: &mut Self::Context) -> Self::Result {
        let decision = self.decide_kill_switch(message);
        self.respond(decision)
    }
}

impl InventoryActor {
    fn decide_kill_switch(&self, message: SetPurchasesEnabled) -> Result<Decision<PurchasesState>, EngineError> {
        self.ensure_writable()?;
        let reason = if message.enabled { None } else { message.reason };
        let answer = PurchasesState { enabled: message.enabled, reason: reason.clone() };
        if self.state.purchases_enabled == message.enabled && self.state.disabled_reason == reason {
            return Ok(Decision::Replay(answer));
        }
        let mut change = self.begin();
        change.next.purchases_enabled = message.enabled;
        change.next.disabled_reason.clone_from(&reason);
        let kind = match reason {
            Some(reason) => EntryKind::PurchasesDisabled { reason },
            None => EntryKind::PurchasesEnabled,
        };
        change.record(None, None, kind, None)?;
        Ok(Decision::Apply(Box::new(change), answer))
    }
}

/// Change a package's settings; `None` keeps a field as it is.
#[derive(Debug, Clone)]
pub struct UpdatePackage {
    pub package_id: PackageId,
    pub enabled: Option<bool>,
    pub credits: Option<UserCredits>,
    pub price_minor_units: Option<u64>,
}

impl Message for UpdatePackage {
    type Result = Result<Package, EngineError>;
}

impl Handler<UpdatePackage> for InventoryActor {
    type Result = Reply<Package>;

    fn handle(&mut self, message: UpdatePackage, _: &mut Self::Context) -> Self::Result {
        let decision = self.decide_package(&message);
        self.respond(decision)
    }
}

impl InventoryActor {
    fn decide_package(&self, message: &UpdatePackage) -> Result<Decision<Package>, EngineError> {
        self.ensure_writable()?;
        let current = self
            .packages
            .iter()
            .find(|package| package.id == message.package_id)
            .ok_or_else(|| EngineError::UnknownPackage(message.package_id.clone()))?;
        let price = match message.price_minor_units {
            Some(minor) => crate::domain::Money::new(minor, current.price.currency())
                .map_err(|_| EngineError::Quantity(crate::domain::QuantityError::Overflow))?,
            None => current.price,
        };
        let updated = Package {
            id: current.id.clone(),
            credits: message.credits.unwrap_or(current.credits),
            price,
            enabled: message.enabled.unwrap_or(current.enabled),
        };
        if &updated == current {
            return Ok(Decision::Replay(updated));
        }
        let mut change = self.begin();
        let kind = EntryKind::PackageChanged {
            package_id: updated.id.clone(),
            enabled: updated.enabled,
            credits: updated.credits,
            price: updated.price,
        };
        change.record(None, None, kind, None)?;
        let stored = PackageOverride { enabled: updated.enabled, credits: updated.credits, price: updated.price };
        change.writes.push(Write::Package { id: updated.id.clone(), settings: stored });
        change.package = Some(updated.clone());
        Ok(Decision::Apply(Box::new(change), updated))
    }
}
