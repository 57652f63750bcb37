//! The books: the state every decision reads and changes, what every
//! decision shares (readiness, the sellable package, the idempotency key,
//! the hold, spend or wallet as it stands now), and how a queued change
//! becomes the state ([`Books::adopt`]) and a durable one is let go
//! ([`Books::settle`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::change::{Change, Consumption, KeyInFlight};
use super::settled::{Settled, Touched};
use super::{EngineError, Fingerprint, KeyBook, Now, Prefetched};
use crate::domain::grants::GrantDeadline;
use crate::domain::{
    Caller, Capacity, GrantId, HoldId, KeyId, Package, PackageId, ProviderCredits, Ratio, ScopedKey, SpendId,
    UserCredits, UserId,
};
use crate::store::records::{
    ApiKeyRecord, CompletedBy, EntryKind, ExpiredDay, HoldRecord, HoldState, InventoryRecord, Operation, Receipt,
    SpendRecord, SpendState, WalletRecord,
};
use crate::store::writes::WriteSet;

/// How long a durable change's records are remembered for the check of
/// prefetched reads ([`Settled`]): far longer than a read takes.
pub const SETTLED_WINDOW_MS: u64 = 2_000;

/// What the books start from: what `engine::recover` found in the store.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub state: InventoryRecord,
    /// Holds still open on disk; those past their deadline expire at the first decision.
    pub open_holds: Vec<HoldRecord>,
    /// Spends still open on disk; those past their time complete at the first decision.
    pub open_spends: Vec<SpendRecord>,
    /// The configured packages with the operators' stored changes applied.
    pub packages: Vec<Package>,
    /// The time of the last ledger entry (0 for an empty ledger).
    pub last_at_ms: u64,
    /// Every API key ever made (SPEC §9.1), revoked ones included.
    pub api_keys: Vec<ApiKeyRecord>,
    /// The deadlines of the grants not closed that will expire (SPEC §13).
    pub grant_deadlines: Vec<GrantDeadline>,
    /// The credits expired by UTC day.
    pub expired_by_day: Vec<ExpiredDay>,
}

/// The rules the books decide by, as plain values.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub ratio: Ratio,
    /// The provider balance under which the view warns.
    pub warning_level: ProviderCredits,
    /// An open spend completes by itself this long after it was made.
    pub spend_complete_after_ms: u64,
    /// Open holds one user may have at once (SPEC §9.2).
    pub max_open_holds_per_user: u32,
    /// Open holds one API key may have made and not finished (SPEC §9.2):
    /// a caller that invents users is bound by this one.
    pub max_open_holds_per_key: u32,
}

/// A wallet moved by changes not yet durable: its newest state.
#[derive(Debug)]
pub struct InFlightWallet {
    pub wallet: WalletRecord,
    pub changes: u32,
}

/// The window of one sync request (SPEC §6): what it must hold back besides
/// the spends still open when its answer arrives.
#[derive(Debug, Clone, Copy)]
pub struct SyncWindow {
    pub(super) token: u64,
    /// `ratio ×` the spends completed since the request left: the provider
    /// may or may not have consumed them when it read its balance.
    pub(super) completed: ProviderCredits,
}

/// An open spend and the moment it completes by itself, on the monotonic
/// clock (like a hold's deadline).
pub struct OpenSpend {
    pub(super) record: SpendRecord,
    pub(super) deadline_ms: u64,
}

/// An open hold and its deadline on the monotonic clock: the wall-clock
/// `expires_at_ms` is for people, and a wall clock set back must not stretch
/// the hold.
pub struct OpenHold {
    pub(super) record: HoldRecord,
    pub(super) deadline_ms: u64,
}

pub struct Books {
    pub state: InventoryRecord,
    pub ratio: Ratio,
    /// Shared with the published inputs; copied only when an operator changes one.
    pub packages: Arc<Vec<Package>>,
    pub warning_level: ProviderCredits,
    pub(super) open_holds: HashMap<HoldId, OpenHold>,
    /// Open holds by monotonic deadline, to find the due ones without a scan.
    pub(super) deadlines: BTreeSet<(u64, HoldId)>,
    /// The time of the last ledger entry: entries never go back in time,
    /// even when the wall clock does.
    pub(super) last_at_ms: u64,
    /// Holds closed by a change that is not durable yet: the store still shows them open.
    pub(super) closing_holds: HashMap<HoldId, HoldRecord>,
    /// Open spends (SPEC §5), and by monotonic deadline, to find the due ones without a scan.
    pub(super) open_spends: HashMap<SpendId, OpenSpend>,
    pub(super) spend_deadlines: BTreeSet<(u64, SpendId)>,
    /// Spends completed or refunded by a change that is not durable yet: the store still shows them open.
    pub(super) closing_spends: HashMap<SpendId, SpendRecord>,
    /// An open spend completes by itself this long after it was made.
    pub(super) spend_complete_after_ms: u64,
    /// Idempotency keys whose change is decided but not yet durable.
    pub(super) keys_in_flight: HashMap<KeyInFlight, Fingerprint>,
    pub(super) sync_window: Option<SyncWindow>,
    pub(super) next_sync_token: u64,
    /// The API keys (SPEC §9.1): their changes are ledger entries too.
    pub keys: KeyBook,
    /// Open holds by user, for `max_open_holds_per_user` (SPEC §9.2).
    pub(super) holds_per_user: HashMap<UserId, u32>,
    pub(super) max_open_holds_per_user: u32,
    /// Open holds by the API key that made them, for `max_open_holds_per_key`.
    pub(super) holds_per_key: HashMap<KeyId, u32>,
    pub(super) max_open_holds_per_key: u32,
    /// The wallets moved by changes not yet durable, newest state.
    pub(super) wallets: HashMap<UserId, InFlightWallet>,
    /// What durable changes touched lately, to check prefetched reads against.
    pub(super) settled: Settled,
    /// The grants not closed that will expire, by wall-clock `expiresAt`
    /// (SPEC §13): the sweep closes them through their users' wallets.
    pub(super) grant_deadlines: std::collections::BTreeMap<(u64, GrantId), (UserId, UserCredits)>,
    /// The credits expired by UTC day (`expiredByDay`), all time.
    pub(super) expired_by_day: std::collections::BTreeMap<u32, ExpiredDay>,
}

/// Counts one more (`opened`) or one less of `key` in `counts`; a count
/// that reaches 0 leaves the map, so it holds only what is open.
fn tally<K: std::hash::Hash + Eq + Clone>(counts: &mut HashMap<K, u32>, key: &K, opened: bool) {
    if opened {
        let count = counts.entry(key.clone()).or_default();
        *count = count.saturating_add(1);
    } else if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

impl Books {
    /// The books as they start: what `engine::recover` found in the store,
    /// with each open hold's deadline on the monotonic clock (what is left of
    /// it by the wall clock, never more than its whole TTL: the monotonic
    /// clock does not survive a restart).
    pub fn new(recovered: Recovered, rules: Rules, wall_ms: u64, monotonic_ms: u64) -> Self {
        let Recovered {
            state,
            open_holds,
            open_spends,
            packages,
            last_at_ms,
            api_keys,
            grant_deadlines,
            expired_by_day,
        } = recovered;
        let expired_by_day = expired_by_day.into_iter().map(|day| (day.day, day)).collect();
        let grant_deadlines = grant_deadlines
            .into_iter()
            .map(|deadline| ((deadline.expires_at_ms, deadline.grant), (deadline.user, deadline.remaining)))
            .collect();
        let spend_complete_after_ms = rules.spend_complete_after_ms;
        // The same for open spends: what is left of their time, by the wall clock.
        let open_spends: HashMap<SpendId, OpenSpend> = open_spends
            .into_iter()
            .map(|record| {
                let completes_at_ms = record.created_at_ms.saturating_add(spend_complete_after_ms);
                let left_ms = completes_at_ms.saturating_sub(wall_ms).min(spend_complete_after_ms);
                let deadline_ms = monotonic_ms.saturating_add(left_ms);
                (record.spend_id.clone(), OpenSpend { record, deadline_ms })
            })
            .collect();
        let spend_deadlines =
            open_spends.values().map(|open| (open.deadline_ms, open.record.spend_id.clone())).collect();
        // What is left of each hold, by the wall clock (the monotonic one does
        // not survive a restart), and never more than its whole TTL.
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
        let (mut holds_per_user, mut holds_per_key) = (HashMap::new(), HashMap::new());
        for open in open_holds.values() {
            tally(&mut holds_per_user, &open.record.user, true);
            if let Some(owner) = &open.record.owner {
                tally(&mut holds_per_key, owner, true);
            }
        }
        // Every change up to the last one on disk is visible to any read made from now on.
        let floor = state.next_seq.saturating_sub(1);
        Self {
            state,
            ratio: rules.ratio,
            packages: Arc::new(packages),
            warning_level: rules.warning_level,
            open_holds,
            deadlines,
            last_at_ms,
            closing_holds: HashMap::new(),
            open_spends,
            spend_deadlines,
            closing_spends: HashMap::new(),
            spend_complete_after_ms,
            keys_in_flight: HashMap::new(),
            sync_window: None,
            next_sync_token: 1,
            keys: KeyBook::load(api_keys),
            holds_per_user,
            max_open_holds_per_user: rules.max_open_holds_per_user,
            holds_per_key,
            max_open_holds_per_key: rules.max_open_holds_per_key,
            wallets: HashMap::new(),
            settled: Settled::new(SETTLED_WINDOW_MS, floor),
            grant_deadlines,
            expired_by_day,
        }
    }

    /// Makes a queued change's state the books': the inventory, the holds
    /// and spends (open, or closing until durable), the key and the wallet
    /// in flight, and the consumption a sync in flight must keep. Answers
    /// what the change touched, for [`Books::settle`] once it is durable.
    ///
    /// # Errors
    /// The consumption overflows (a bug: it is bounded by the balance).
    ///
    /// # Panics
    /// If the change moves a wallet from an older state than the newest in
    /// flight: writing it would lose an update.
    pub fn adopt(&mut self, change: Change) -> Result<Touched, EngineError> {
        let mut touched = Touched { seq: change.next.next_seq.saturating_sub(1), ..Touched::default() };
        if let Some(record) = &change.api_key {
            self.keys.adopt(record.clone());
        }
        self.state = change.next;
        if let Some(package) = change.package {
            if let Some(slot) = Arc::make_mut(&mut self.packages).iter_mut().find(|slot| slot.id == package.id) {
                *slot = package;
            }
        }
        self.last_at_ms = change.at_ms;
        for hold in change.holds {
            if let Some(open) = self.open_holds.remove(&hold.hold_id) {
                self.count_hold(&open.record, false);
                self.deadlines.remove(&(open.deadline_ms, open.record.hold_id));
            }
            if hold.state == HoldState::Open {
                self.count_hold(&hold, true);
                let ttl_ms = hold.expires_at_ms.saturating_sub(hold.created_at_ms);
                let deadline_ms = change.monotonic_ms.saturating_add(ttl_ms);
                self.deadlines.insert((deadline_ms, hold.hold_id.clone()));
                self.open_holds.insert(hold.hold_id.clone(), OpenHold { record: hold, deadline_ms });
            } else {
                touched.holds.push(hold.hold_id.clone());
                self.closing_holds.insert(hold.hold_id.clone(), hold);
            }
        }
        for spend in change.spends {
            if let Some(open) = self.open_spends.remove(&spend.spend_id) {
                self.spend_deadlines.remove(&(open.deadline_ms, open.record.spend_id));
            }
            if spend.state == SpendState::Open {
                let deadline_ms = change.monotonic_ms.saturating_add(self.spend_complete_after_ms);
                self.spend_deadlines.insert((deadline_ms, spend.spend_id.clone()));
                self.open_spends.insert(spend.spend_id.clone(), OpenSpend { record: spend, deadline_ms });
            } else {
                touched.spends.push(spend.spend_id.clone());
                self.closing_spends.insert(spend.spend_id.clone(), spend);
            }
        }
        if let Some((user, wallet)) = change.wallet {
            touched.wallet = Some((user.clone(), wallet.version));
            // What its expiring grants have left, for the gauge of credits expiring soon.
            for grant in wallet.grants.iter().filter(|grant| grant.closed.is_none()) {
                if let Some(slot) = grant.expires_at_ms.and_then(|at| self.grant_deadlines.get_mut(&(at, grant.id()))) {
                    slot.1 = grant.remaining;
                }
            }
            match self.wallets.get_mut(&user) {
                Some(in_flight) => {
                    assert!(
                        wallet.version > in_flight.wallet.version,
                        "a wallet change is decided on the newest wallet"
                    );
                    in_flight.wallet = wallet;
                    in_flight.changes = in_flight.changes.saturating_add(1);
                }
                None => {
                    self.wallets.insert(user, InFlightWallet { wallet, changes: 1 });
                }
            }
        }
        for deadline in change.grant_deadlines {
            let slot = (deadline.expires_at_ms, deadline.grant);
            if deadline.open {
                self.grant_deadlines.insert(slot, (deadline.user, deadline.remaining));
            } else {
                self.grant_deadlines.remove(&slot);
            }
        }
        for day in change.expired_days {
            self.expired_by_day.insert(day.day, day);
        }
        if let Some((key, fingerprint)) = change.key_in_flight {
            touched.key = Some(key.clone());
            self.keys_in_flight.insert(key, fingerprint);
        }
        if let (Some(window), Consumption::Completed(credits)) = (&mut self.sync_window, change.consumption) {
            window.completed = window.completed.checked_add(credits)?;
        }
        Ok(touched)
    }

    /// The change that touched `touched` is durable (or failed, and the
    /// store refuses every later one): the store holds what the books kept
    /// for it, and the books remember only when it settled.
    pub fn settle(&mut self, touched: &Touched, monotonic_ms: u64) {
        for id in &touched.holds {
            self.closing_holds.remove(id);
        }
        for id in &touched.spends {
            self.closing_spends.remove(id);
        }
        if let Some(key) = &touched.key {
            self.keys_in_flight.remove(key);
        }
        if let Some((user, _)) = &touched.wallet {
            if let Some(in_flight) = self.wallets.get_mut(user) {
                in_flight.changes = in_flight.changes.saturating_sub(1);
                // Changes of one group settle in any order: the wallet in
                // memory is the newest until the last of them settles.
                if in_flight.changes == 0 {
                    self.wallets.remove(user);
                }
            }
        }
        self.settled.prune(monotonic_ms);
        self.settled.settle(touched, monotonic_ms);
    }

    /// Forgets settled records older than the window (the sweep calls it
    /// when nothing settles).
    pub fn prune_settled(&mut self, monotonic_ms: u64) {
        self.settled.prune(monotonic_ms);
    }

    /// Whether `user` has a wallet (as [`Books::wallet`] finds it), without copying it.
    pub(super) fn has_wallet(&self, prefetched: &Prefetched, user: &UserId) -> Result<bool, EngineError> {
        if self.wallets.contains_key(user) {
            // A wallet in flight was written by a change: version 1 or more.
            return Ok(true);
        }
        let version = prefetched.wallet.as_ref().map_or(0, |wallet| wallet.version);
        self.settled.check_wallet(user, version).map_err(|_| EngineError::Stale)?;
        Ok(version > 0)
    }

    /// `user`'s wallet as it stands now: the newest in flight, else the
    /// one its actor sent, unless a newer version settled meanwhile.
    pub(super) fn wallet(&self, prefetched: &Prefetched, user: &UserId) -> Result<WalletRecord, EngineError> {
        if let Some(in_flight) = self.wallets.get(user) {
            return Ok(in_flight.wallet.clone());
        }
        let wallet = prefetched.wallet.clone().unwrap_or_default();
        self.settled.check_wallet(user, wallet.version).map_err(|_| EngineError::Stale)?;
        Ok(wallet)
    }

    pub fn capacity(&self) -> Capacity {
        Capacity {
            provider_balance: self.state.provider_balance,
            reserved: self.state.reserved,
            ratio: self.ratio,
            held_back: self.state.held_back,
        }
    }

    /// Storage has not failed: a change may still be written (an operator's
    /// too, before the first sync).
    pub fn ensure_writable(&self, inputs: &Now) -> Result<(), EngineError> {
        if !inputs.writable {
            return Err(EngineError::NotReady("storage failed; restart required"));
        }
        Ok(())
    }

    pub fn ensure_ready(&self, inputs: &Now) -> Result<(), EngineError> {
        self.ensure_writable(inputs)?;
        if !inputs.synced {
            return Err(EngineError::NotReady("waiting for the first provider sync"));
        }
        Ok(())
    }

    /// The checks every sale (purchase or hold) passes, in the order of SPEC §9.
    pub(super) fn sellable_package(&self, package_id: &PackageId) -> Result<(Package, ProviderCredits), EngineError> {
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

    /// The credits expired by UTC day, oldest first (the report's `expiredByDay`).
    pub fn expired_by_day(&self) -> Vec<ExpiredDay> {
        self.expired_by_day.values().copied().collect()
    }

    /// Panics on a broken invariant: that is a bug, and continuing would
    /// write a wrong state to disk.
    pub fn assert_invariants(&self, next: &InventoryRecord) {
        let spoken_for = next
            .wallets_total
            .checked_add(next.holds_total)
            .and_then(|credits| self.ratio.backing(credits))
            .expect("Σ wallets + Σ holds stays within bounds");
        assert_eq!(next.reserved, spoken_for, "reserved must equal ratio × (Σ wallets + Σ open holds)");
        assert!(next.next_seq > self.state.next_seq, "every change appends to the ledger");
    }

    /// Looks the key up among changes in flight, then in what was prefetched.
    pub(super) fn check_key(
        &self,
        prefetched: &Prefetched,
        operation: Operation,
        key: &ScopedKey,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Receipt>, EngineError> {
        let scoped = (operation, key.clone());
        if let Some(in_flight) = self.keys_in_flight.get(&scoped) {
            return Err(if in_flight == fingerprint {
                EngineError::IdempotencyKeyInUse
            } else {
                EngineError::IdempotencyKeyReused
            });
        }
        self.settled.check_key(&scoped, prefetched.seen).map_err(|_| EngineError::Stale)?;
        match &prefetched.idempotency {
            Some(record) if &record.fingerprint == fingerprint => Ok(Some(record.receipt.clone())),
            Some(_) => Err(EngineError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }

    pub(super) fn begin(&self, inputs: &Now) -> Change {
        Change {
            next: self.state.clone(),
            writes: WriteSet::default(),
            at_ms: inputs.now_ms.max(self.last_at_ms),
            monotonic_ms: inputs.monotonic_ms,
            holds: Vec::new(),
            spends: Vec::new(),
            key_in_flight: None,
            consumption: Consumption::None,
            sale: false,
            package: None,
            api_key: None,
            wallet: None,
            grant_deadlines: Vec::new(),
            expired_days: Vec::new(),
        }
    }

    /// The hold as it stands now: open, closing, or as prefetched.
    pub(super) fn hold(&self, prefetched: &Prefetched, id: &HoldId) -> Result<HoldRecord, EngineError> {
        if let Some(hold) = self.open_holds.get(id).map(|open| &open.record).or_else(|| self.closing_holds.get(id)) {
            return Ok(hold.clone());
        }
        self.settled.check_hold(id, prefetched.seen).map_err(|_| EngineError::Stale)?;
        prefetched.hold.clone().filter(|hold| &hold.hold_id == id).ok_or_else(|| EngineError::UnknownHold(id.clone()))
    }

    /// The spend as it stands now: open, closing, or as prefetched.
    pub(super) fn spend(&self, prefetched: &Prefetched, id: &SpendId) -> Result<SpendRecord, EngineError> {
        if let Some(spend) = self.open_spends.get(id).map(|open| &open.record).or_else(|| self.closing_spends.get(id)) {
            return Ok(spend.clone());
        }
        self.settled.check_spend(id, prefetched.seen).map_err(|_| EngineError::Stale)?;
        prefetched
            .spend
            .clone()
            .filter(|spend| &spend.spend_id == id)
            .ok_or_else(|| EngineError::UnknownSpend(id.clone()))
    }

    /// The hold `id` of `user`, if `by` may capture or release it (SPEC
    /// §9.1): another user's hold, or another key's, is as unknown as one
    /// that does not exist.
    pub(super) fn finishable_hold(
        &self,
        prefetched: &Prefetched,
        user: &UserId,
        id: &HoldId,
        by: &Caller,
    ) -> Result<HoldRecord, EngineError> {
        let hold = self.hold(prefetched, id)?;
        if &hold.user == user && by.may_finish(hold.owner.as_ref()) {
            Ok(hold)
        } else {
            Err(EngineError::UnknownHold(id.clone()))
        }
    }

    /// The spend `id` of `user`, if `by` may complete or refund it (SPEC
    /// §9.1), as [`Books::finishable_hold`].
    pub(super) fn finishable_spend(
        &self,
        prefetched: &Prefetched,
        user: &UserId,
        id: &SpendId,
        by: &Caller,
    ) -> Result<SpendRecord, EngineError> {
        let spend = self.spend(prefetched, id)?;
        if &spend.user == user && by.may_finish(spend.owner.as_ref()) {
            Ok(spend)
        } else {
            Err(EngineError::UnknownSpend(id.clone()))
        }
    }

    /// The open holds whose deadline has passed at `monotonic_ms`.
    pub fn due_holds(&self, monotonic_ms: u64) -> Vec<HoldId> {
        self.deadlines.iter().take_while(|(deadline, _)| *deadline <= monotonic_ms).map(|(_, id)| id.clone()).collect()
    }

    /// The open spends whose time has run out at `monotonic_ms`.
    pub fn due_spends(&self, monotonic_ms: u64) -> Vec<SpendId> {
        let due = self.spend_deadlines.iter().take_while(|(deadline, _)| *deadline <= monotonic_ms);
        due.map(|(_, id)| id.clone()).collect()
    }

    /// How many holds and spends are open.
    pub fn open_counts(&self) -> (usize, usize) {
        (self.open_holds.len(), self.open_spends.len())
    }

    /// Whether an open spend's time has run out at `monotonic_ms`.
    pub(super) fn spend_is_due(&self, id: &SpendId, monotonic_ms: u64) -> bool {
        self.open_spends.get(id).is_some_and(|open| open.deadline_ms <= monotonic_ms)
    }

    /// Completes `due` open spends by time, as one change (SPEC §5): each
    /// entry dated no earlier than the moment its time ran out.
    pub fn decide_completions(&self, inputs: &Now, due: &[SpendId]) -> Result<Change, EngineError> {
        let mut change = self.begin(inputs);
        let after = self.spend_complete_after_ms;
        let latest = due
            .iter()
            .filter_map(|id| self.open_spends.get(id))
            .map(|open| open.record.created_at_ms.saturating_add(after));
        change.at_ms = latest.fold(change.at_ms, u64::max);
        for id in due {
            let Some(OpenSpend { record: spend, .. }) = self.open_spends.get(id) else { continue };
            self.complete(&mut change, spend, CompletedBy::Time)?;
        }
        Ok(change)
    }

    /// Adds the completion of open `spend` to `change`: a ledger entry, the
    /// spend's new state; no quantity moves but Σ open spends.
    pub(super) fn complete(
        &self,
        change: &mut Change,
        spend: &SpendRecord,
        by: CompletedBy,
    ) -> Result<(), EngineError> {
        change.next.open_spends = change.next.open_spends.checked_sub(spend.credits)?;
        let provider = self.ratio.backing(spend.credits)?;
        change.consumption = match change.consumption {
            Consumption::Completed(before) => Consumption::Completed(before.checked_add(provider)?),
            _ => Consumption::Completed(provider),
        };
        let kind = EntryKind::SpendCompleted { spend_id: spend.spend_id.clone(), credits: spend.credits, by };
        change.record(Some(&spend.user), None, kind, None)?;
        change.put_spend(SpendRecord { state: SpendState::Completed { by, at_ms: change.at_ms }, ..spend.clone() });
        Ok(())
    }

    /// Keeps `holds_per_user` and `holds_per_key` as `open_holds` moves.
    pub(super) fn count_hold(&mut self, hold: &HoldRecord, opened: bool) {
        tally(&mut self.holds_per_user, &hold.user, opened);
        if let Some(owner) = &hold.owner {
            tally(&mut self.holds_per_key, owner, opened);
        }
    }

    /// Whether an open hold's deadline has passed at `monotonic_ms`.
    pub(super) fn is_due(&self, id: &HoldId, monotonic_ms: u64) -> bool {
        self.open_holds.get(id).is_some_and(|open| open.deadline_ms <= monotonic_ms)
    }

    pub fn decide_expiries(&self, inputs: &Now, due: &[HoldId]) -> Result<Change, EngineError> {
        let mut change = self.begin(inputs);
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
