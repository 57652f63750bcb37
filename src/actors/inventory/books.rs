//! The books: the state every decision reads and changes, and the
//! decisions themselves as a state machine: the books, a command, the time
//! and the stored records a decision may look up ([`Inputs`]) give a
//! [`Change`] (the next state, its ledger entries and writes) and the
//! answer, or a refusal. Nothing here does IO, waits or sends a message:
//! the actor ([`super::InventoryActor`]) sequences the commands, hands each
//! change to the commit loop and adopts it ([`Books::adopt`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::change::{Change, Consumption};
use super::hot::HotWallets;
use super::{ApiKeys, Fingerprint};
use crate::actors::setup::{Recovered, Settings};
use crate::actors::EngineError;
use crate::domain::{
    Capacity, HoldId, IdempotencyKey, KeyId, Package, PackageId, ProviderCredits, Ratio, ScopedKey, SpendId, UserId,
};
use crate::store::records::{
    CompletedBy, EntryKind, HoldRecord, HoldState, IdempotencyRecord, InventoryRecord, Operation, Receipt, SpendRecord,
    SpendState,
};
use crate::store::{keys, Store, StoreError, WriteSet};

/// The stored records a decision may need beyond the books: an idempotency
/// key used by a change that is durable, a hold no longer open, a spend.
pub trait Records {
    /// # Errors
    /// A read failure.
    fn idempotency(
        &self,
        operation: Operation,
        caller: Option<&KeyId>,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// # Errors
    /// A read failure.
    fn hold(&self, id: &HoldId) -> Result<Option<HoldRecord>, StoreError>;

    /// # Errors
    /// A read failure.
    fn spend(&self, id: &SpendId) -> Result<Option<SpendRecord>, StoreError>;
}

impl Records for Store {
    fn idempotency(
        &self,
        operation: Operation,
        caller: Option<&KeyId>,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Store::idempotency(self, operation, caller, key)
    }

    fn hold(&self, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
        Store::hold(self, id)
    }

    fn spend(&self, id: &SpendId) -> Result<Option<SpendRecord>, StoreError> {
        Store::spend(self, id)
    }
}

/// What a decision reads besides the books and its command.
pub struct Inputs<'a> {
    /// Wall time, for the ledger and for people.
    pub now_ms: u64,
    /// Monotonic time, for hold deadlines.
    pub monotonic_ms: u64,
    /// Storage has not failed.
    pub writable: bool,
    /// The provider has been synced once since start.
    pub synced: bool,
    pub records: &'a dyn Records,
}

/// The window of one sync request (SPEC §6): what it must hold back besides
/// the spends still open when its answer arrives.
#[derive(Debug, Clone, Copy)]
pub(super) struct SyncWindow {
    pub(super) token: u64,
    /// `ratio ×` the spends completed since the request left: the provider
    /// may or may not have consumed them when it read its balance.
    pub(super) completed: ProviderCredits,
}

/// An open spend and the moment it completes by itself, on the monotonic
/// clock (like a hold's deadline).
pub(super) struct OpenSpend {
    pub(super) record: SpendRecord,
    pub(super) deadline_ms: u64,
}

/// An open hold and its deadline on the monotonic clock: the wall-clock
/// `expires_at_ms` is for people, and a wall clock set back must not stretch
/// the hold.
pub(super) struct OpenHold {
    pub(super) record: HoldRecord,
    pub(super) deadline_ms: u64,
}

pub(super) struct Books {
    pub(super) state: InventoryRecord,
    pub(super) ratio: Ratio,
    /// Shared with the published inputs; copied only when an operator changes one.
    pub(super) packages: Arc<Vec<Package>>,
    pub(super) warning_level: ProviderCredits,
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
    pub(super) keys_in_flight: HashMap<Vec<u8>, Fingerprint>,
    pub(super) sync_window: Option<SyncWindow>,
    pub(super) next_sync_token: u64,
    /// The API keys (SPEC §9.1): their changes are ledger entries too.
    pub(super) keys: ApiKeys,
    /// Open holds by user, for `max_open_holds_per_user` (SPEC §9.2).
    pub(super) holds_per_user: HashMap<UserId, u32>,
    pub(super) max_open_holds_per_user: u32,
    /// The wallets decided on recently, newest state first (see `hot.rs`).
    pub(super) wallets: HotWallets,
}

impl Books {
    /// The books as they start: what `engine::recover` found in the store,
    /// with each open hold's deadline on the monotonic clock (what is left of
    /// it by the wall clock, never more than its whole TTL: the monotonic
    /// clock does not survive a restart).
    pub(super) fn new(
        recovered: Recovered,
        settings: &Settings,
        keys: ApiKeys,
        wall_ms: u64,
        monotonic_ms: u64,
    ) -> Self {
        let Recovered { state, open_holds, open_spends, packages, last_at_ms, .. } = recovered;
        let spend_complete_after_ms = u64::try_from(settings.spend_complete_after.as_millis()).unwrap_or(u64::MAX);
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
            keys,
            holds_per_user,
            max_open_holds_per_user: settings.max_open_holds_per_user,
            wallets: HotWallets::new(u64::try_from(settings.wallet_idle.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Makes a queued change's state the books': the inventory, the holds
    /// (open, or closing until durable), the refund and the key in flight,
    /// and the consumption a sync in flight must keep.
    ///
    /// # Errors
    /// The consumption overflows (a bug: it is bounded by the balance).
    pub(super) fn adopt(&mut self, change: Change) -> Result<(), EngineError> {
        self.state = change.next;
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
        for spend in change.spends {
            if let Some(open) = self.open_spends.remove(&spend.spend_id) {
                self.spend_deadlines.remove(&(open.deadline_ms, open.record.spend_id));
            }
            if spend.state == SpendState::Open {
                let deadline_ms = change.monotonic_ms.saturating_add(self.spend_complete_after_ms);
                self.spend_deadlines.insert((deadline_ms, spend.spend_id.clone()));
                self.open_spends.insert(spend.spend_id.clone(), OpenSpend { record: spend, deadline_ms });
            } else {
                self.closing_spends.insert(spend.spend_id.clone(), spend);
            }
        }
        if let Some((user, wallet)) = change.wallet {
            self.wallets.queued(&user, wallet, change.monotonic_ms);
        }
        if let Some((key, fingerprint)) = &change.key_in_flight {
            self.keys_in_flight.insert(key.clone(), *fingerprint);
        }
        if let (Some(window), Consumption::Completed(credits)) = (&mut self.sync_window, change.consumption) {
            window.completed = window.completed.checked_add(credits)?;
        }
        Ok(())
    }

    pub(super) fn capacity(&self) -> Capacity {
        Capacity {
            provider_balance: self.state.provider_balance,
            reserved: self.state.reserved,
            ratio: self.ratio,
            held_back: self.state.held_back,
        }
    }

    /// Storage has not failed: a change may still be written (an operator's
    /// too, before the first sync).
    pub(super) fn ensure_writable(&self, inputs: &Inputs<'_>) -> Result<(), EngineError> {
        if !inputs.writable {
            return Err(EngineError::NotReady("storage failed; restart required"));
        }
        Ok(())
    }

    pub(super) fn ensure_ready(&self, inputs: &Inputs<'_>) -> Result<(), EngineError> {
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

    /// Panics on a broken invariant: that is a bug, and continuing would
    /// write a wrong state to disk.
    pub(super) fn assert_invariants(&self, next: &InventoryRecord) {
        let spoken_for = next
            .wallets_total
            .checked_add(next.holds_total)
            .and_then(|credits| self.ratio.backing(credits))
            .expect("Σ wallets + Σ holds stays within bounds");
        assert_eq!(next.reserved, spoken_for, "reserved must equal ratio × (Σ wallets + Σ open holds)");
        assert!(next.next_seq > self.state.next_seq, "every change appends to the ledger");
    }

    /// Looks the key up among changes in flight, then on disk.
    pub(super) fn check_key(
        &self,
        inputs: &Inputs<'_>,
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
        match inputs.records.idempotency(operation, Some(&key.caller), &key.key)? {
            Some(record) if &record.fingerprint == fingerprint => Ok(Some(record.receipt)),
            Some(_) => Err(EngineError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }

    pub(super) fn begin(&self, inputs: &Inputs<'_>) -> Change {
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
        }
    }

    /// The hold as it stands now: open, closing, or as stored.
    pub(super) fn hold(&self, inputs: &Inputs<'_>, id: &HoldId) -> Result<HoldRecord, EngineError> {
        if let Some(hold) = self.open_holds.get(id).map(|open| &open.record).or_else(|| self.closing_holds.get(id)) {
            return Ok(hold.clone());
        }
        inputs.records.hold(id)?.ok_or_else(|| EngineError::UnknownHold(id.clone()))
    }

    /// The spend as it stands now: open, closing, or as stored.
    pub(super) fn spend(&self, inputs: &Inputs<'_>, id: &SpendId) -> Result<SpendRecord, EngineError> {
        if let Some(spend) = self.open_spends.get(id).map(|open| &open.record).or_else(|| self.closing_spends.get(id)) {
            return Ok(spend.clone());
        }
        inputs.records.spend(id)?.ok_or_else(|| EngineError::UnknownSpend(id.clone()))
    }

    /// Whether an open spend's time has run out at `monotonic_ms`.
    pub(super) fn spend_is_due(&self, id: &SpendId, monotonic_ms: u64) -> bool {
        self.open_spends.get(id).is_some_and(|open| open.deadline_ms <= monotonic_ms)
    }

    /// Completes `due` open spends by time, as one change (SPEC §5): each
    /// entry dated no earlier than the moment its time ran out.
    pub(super) fn decide_completions(&self, inputs: &Inputs<'_>, due: &[SpendId]) -> Result<Change, EngineError> {
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

    /// Keeps `holds_per_user` as `open_holds` moves.
    pub(super) fn count_hold(&mut self, user: &UserId, opened: bool) {
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

    /// Whether an open hold's deadline has passed at `monotonic_ms`.
    pub(super) fn is_due(&self, id: &HoldId, monotonic_ms: u64) -> bool {
        self.open_holds.get(id).is_some_and(|open| open.deadline_ms <= monotonic_ms)
    }

    pub(super) fn decide_expiries(&self, inputs: &Inputs<'_>, due: &[HoldId]) -> Result<Change, EngineError> {
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

/// The decisions driven directly, without an actor, a commit loop or a
/// store: the books, a command, the time and an in-memory `Records`.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::change::Decision;
    use super::super::holds::CreateHold;
    use super::super::wallets::WalletReceipt;
    use super::{ApiKeys, Books, Inputs, Records};
    use crate::actors::setup::{Recovered, Settings};
    use crate::actors::EngineError;
    use crate::config::Config;
    use crate::domain::{HoldId, IdempotencyKey, KeyId, PackageId, ProviderCredits, ScopedKey, SpendId, UserId};
    use crate::store::records::{CompletedBy, CompletionReceipt};
    use crate::store::records::{
        EntryKind, HoldRecord, IdempotencyRecord, InventoryRecord, Operation, SpendRecord, WalletRecord,
    };
    use crate::store::{StoreError, Write, WriteSet};

    /// What a store would hold once the changes so far were durable.
    #[derive(Default)]
    struct Memory {
        remembered: HashMap<(Operation, Option<KeyId>, IdempotencyKey), IdempotencyRecord>,
        holds: HashMap<HoldId, HoldRecord>,
        spends: HashMap<SpendId, SpendRecord>,
    }

    impl Records for Memory {
        fn idempotency(
            &self,
            operation: Operation,
            caller: Option<&KeyId>,
            key: &IdempotencyKey,
        ) -> Result<Option<IdempotencyRecord>, StoreError> {
            Ok(self.remembered.get(&(operation, caller.cloned(), key.clone())).cloned())
        }

        fn hold(&self, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
            Ok(self.holds.get(id).cloned())
        }

        fn spend(&self, id: &SpendId) -> Result<Option<SpendRecord>, StoreError> {
            Ok(self.spends.get(id).cloned())
        }
    }

    impl Memory {
        fn keep(&mut self, writes: &WriteSet) {
            for write in writes.writes() {
                match write {
                    Write::Remember { operation, caller, key, record } => {
                        self.remembered.insert((*operation, caller.clone(), key.clone()), record.clone());
                    }
                    Write::Hold(record) => {
                        self.holds.insert(record.hold_id.clone(), record.clone());
                    }
                    Write::Spend(record) => {
                        self.spends.insert(record.spend_id.clone(), record.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    const T0: u64 = 1_750_000_000_000;

    /// The default packages and ratio 4, with `balance` provider credits.
    fn books(balance: u64) -> Books {
        let settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
        let mut state = InventoryRecord::empty(settings.revenue_zero);
        state.provider_balance = ProviderCredits::new(balance).expect("small");
        let recovered = Recovered {
            state,
            open_holds: Vec::new(),
            packages: settings.packages.clone(),
            last_at_ms: 0,
            api_keys: Vec::new(),
            open_spends: Vec::new(),
        };
        Books::new(recovered, &settings, ApiKeys::load(Vec::new()).0, T0, 0)
    }

    fn inputs(records: &Memory, monotonic_ms: u64) -> Inputs<'_> {
        Inputs { now_ms: T0 + monotonic_ms, monotonic_ms, writable: true, synced: true, records }
    }

    fn key(text: &str) -> ScopedKey {
        ScopedKey { caller: KeyId::parse("key_1").expect("valid"), key: IdempotencyKey::parse(text).expect("valid") }
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("valid")
    }

    fn starter() -> PackageId {
        PackageId::parse("starter").expect("valid")
    }

    /// Decides a purchase, adopts it and keeps its writes, as the actor and
    /// the commit loop would once it is durable.
    fn buy(books: &mut Books, memory: &mut Memory, who: &str, order: &str) -> Result<WalletReceipt, EngineError> {
        let wallet = WalletRecord::default();
        let decided =
            books.decide_purchase(&inputs(memory, 0), &user(who), wallet, &starter(), &key(order), [1; 32])?;
        match decided {
            Decision::Apply(change, outcome) => {
                memory.keep(&change.writes);
                let key = change.key_in_flight.clone();
                books.adopt(*change)?;
                if let Some((key, _)) = key {
                    books.keys_in_flight.remove(&key);
                }
                Ok(outcome)
            }
            Decision::Replay(outcome) => Ok(outcome),
        }
    }

    #[test]
    fn purchases_sell_to_capacity_and_not_one_credit_beyond() {
        let (mut books, mut memory) = (books(400), Memory::default());
        for order in 0..10 {
            buy(&mut books, &mut memory, &format!("u{order}"), &format!("o{order}")).expect("fits");
        }
        assert_eq!(books.state.reserved, ProviderCredits::new(400).expect("small"), "10 × 10 credits × ratio 4");
        let refused = buy(&mut books, &mut memory, "late", "o10");
        assert!(matches!(refused, Err(EngineError::InsufficientCapacity)), "{refused:?}");
        assert_eq!(books.state.next_seq, 11, "a refusal writes nothing");
    }

    #[test]
    fn a_retry_is_in_use_while_in_flight_then_the_first_answer_and_another_body_is_refused() {
        let (mut books, mut memory) = (books(4_000), Memory::default());
        let decided = books
            .decide_purchase(&inputs(&memory, 0), &user("ann"), WalletRecord::default(), &starter(), &key("k"), [1; 32])
            .expect("fits");
        let Decision::Apply(change, first) = decided else { panic!("a new key is applied") };
        let in_flight = change.key_in_flight.clone().expect("the key is in flight");
        memory.keep(&change.writes);
        books.adopt(*change).expect("adopts");
        let again = books.decide_purchase(
            &inputs(&memory, 0),
            &user("ann"),
            WalletRecord::default(),
            &starter(),
            &key("k"),
            [1; 32],
        );
        assert!(matches!(again, Err(EngineError::IdempotencyKeyInUse)), "not durable yet: {:?}", again.err());
        books.keys_in_flight.remove(&in_flight.0);
        let replay = books
            .decide_purchase(&inputs(&memory, 0), &user("ann"), WalletRecord::default(), &starter(), &key("k"), [1; 32])
            .expect("answers");
        let Decision::Replay(replayed) = replay else { panic!("a durable key is replayed") };
        assert_eq!(replayed, first, "the first answer");
        let other = books.decide_purchase(
            &inputs(&memory, 0),
            &user("ann"),
            WalletRecord::default(),
            &starter(),
            &key("k"),
            [2; 32],
        );
        assert!(matches!(other, Err(EngineError::IdempotencyKeyReused)), "{:?}", other.err());
        assert!(matches!(first, WalletReceipt::Purchase(_)));
    }

    #[test]
    fn a_hold_expires_at_its_monotonic_deadline_and_gives_its_reservation_back() {
        let (mut books, memory) = (books(4_000), Memory::default());
        let hold =
            CreateHold { user: user("bo"), package_id: starter(), ttl_ms: 60_000, key: None, fingerprint: [3; 32] };
        let Decision::Apply(change, receipt) = books.decide_hold(&inputs(&memory, 1_000), &hold).expect("fits") else {
            panic!("a new hold is applied")
        };
        books.adopt(*change).expect("adopts");
        assert_eq!(books.state.reserved, ProviderCredits::new(40).expect("small"));
        assert!(!books.is_due(&receipt.hold_id, 60_999), "one millisecond before its deadline");
        assert!(books.is_due(&receipt.hold_id, 61_000), "at its deadline");
        let expired =
            books.decide_expiries(&inputs(&memory, 61_000), std::slice::from_ref(&receipt.hold_id)).expect("expires");
        let entry = expired.writes.writes().iter().find_map(|write| match write {
            Write::Ledger(entry) => Some(entry.clone()),
            _ => None,
        });
        let entry = entry.expect("an expiry entry");
        assert!(matches!(entry.kind, EntryKind::HoldExpired { .. }), "{entry:?}");
        assert!(entry.at_ms >= receipt.expires_at_ms, "dated no earlier than its expiresAt");
        books.adopt(expired).expect("adopts");
        assert_eq!(books.state.reserved, ProviderCredits::ZERO, "the reservation is back");
        assert!(books.open_holds.is_empty());
        assert!(books.holds_per_user.is_empty(), "no open hold is counted for the user any more");
    }

    /// Applies a decision that must change something; answers its outcome.
    fn apply<T>(books: &mut Books, memory: &mut Memory, decided: Result<Decision<T>, EngineError>) -> T {
        match decided.expect("decided") {
            Decision::Apply(change, outcome) => {
                memory.keep(&change.writes);
                books.adopt(*change).expect("adopts");
                books.keys_in_flight.clear();
                outcome
            }
            Decision::Replay(_) => panic!("expected a change"),
        }
    }

    fn credits(n: u64) -> ProviderCredits {
        ProviderCredits::new(n).expect("small")
    }

    /// Buys a starter (10 credits) for `who` and spends `n` of them; answers the spend's id.
    fn buy_and_spend(books: &mut Books, memory: &mut Memory, who: &str, n: u64) -> SpendId {
        buy(books, memory, who, &format!("buy-{who}-{}", books.state.next_seq)).expect("fits");
        spend(books, memory, who, n)
    }

    fn spend(books: &mut Books, memory: &mut Memory, who: &str, n: u64) -> SpendId {
        let wallet = books.wallets.wallet(&user(who), None, 0).expect("a queued change makes it hot");
        let amount = crate::domain::UserCredits::new(n).expect("small");
        let order = format!("spend-{who}-{}", books.state.next_seq);
        let decided = books.decide_spend(&inputs(memory, 0), &user(who), wallet, amount, None, &key(&order), [4; 32]);
        match apply(books, memory, decided) {
            WalletReceipt::Spend(receipt) => receipt.spend_id,
            other => panic!("{other:?}"),
        }
    }

    fn refund(books: &mut Books, memory: &mut Memory, who: &str, id: &SpendId) -> Result<(), EngineError> {
        let wallet = books.wallets.wallet(&user(who), None, 0).expect("hot");
        let decided = books.decide_refund(&inputs(memory, 0), &user(who), wallet, id)?;
        apply(books, memory, Ok(decided));
        Ok(())
    }

    /// Completes spend `id` as the actor would: a change is adopted and
    /// kept; answers whether there was one (false: a replay) and the receipt.
    fn complete(
        books: &mut Books,
        memory: &mut Memory,
        id: &SpendId,
    ) -> Result<(bool, CompletionReceipt), EngineError> {
        Ok(match books.decide_complete(&inputs(memory, 0), id)? {
            Decision::Apply(change, receipt) => {
                memory.keep(&change.writes);
                books.adopt(*change).expect("adopts");
                (true, receipt)
            }
            Decision::Replay(receipt) => (false, receipt),
        })
    }

    /// A sync whose request leaves now; `between` runs while it is in
    /// flight; the provider answers `real`.
    fn sync(
        books: &mut Books,
        memory: &mut Memory,
        real: u64,
        between: impl FnOnce(&mut Books, &mut Memory),
    ) -> super::super::SyncOutcome {
        let token = books.begin_sync();
        between(books, memory);
        let message = super::super::ApplySync { real: credits(real), token: super::super::SyncToken(token) };
        let (change, outcome) = books.decide_sync(&inputs(memory, 0), message).expect("applies");
        books.adopt(change).expect("adopts");
        books.sync_window = None;
        outcome
    }

    /// The scenario, on the books: a sync that lands while a spend is
    /// open must not count the spend's provider credits twice once it is refunded.
    #[test]
    fn a_sync_holds_back_an_open_spend_and_its_refund_gives_back_exactly_that() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        let spent = buy_and_spend(&mut books, &mut memory, "alice", 10);
        assert_eq!((books.state.provider_balance, books.state.reserved), (credits(960), credits(0)));
        let outcome = sync(&mut books, &mut memory, 1_000, |_, _| {});
        assert_eq!(outcome.held_back, credits(40), "the open spend");
        assert_eq!(books.state.provider_balance, credits(960), "the provider may still consume it");
        refund(&mut books, &mut memory, "alice", &spent).expect("refunds");
        assert_eq!(books.state.provider_balance, credits(1_000), "given back: what the sync held back");
        assert_eq!(books.state.held_back, credits(0));
        assert_eq!(books.capacity().user_credits().get(), 240, "(1000 − 40) / 4, not a credit more");
    }

    #[test]
    fn a_spend_completed_in_flight_is_held_back_and_one_refunded_in_flight_is_not() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        let done = buy_and_spend(&mut books, &mut memory, "ann", 5);
        let failed = buy_and_spend(&mut books, &mut memory, "bo", 3);
        let outcome = sync(&mut books, &mut memory, 900, |books, memory| {
            complete(books, memory, &done).expect("completes");
            refund(books, memory, "bo", &failed).expect("refunds");
        });
        assert_eq!(outcome.held_back, credits(20), "ann's 5 credits: the provider may have read before consuming");
        assert_eq!(books.state.provider_balance, credits(880));
        assert_eq!(outcome.previous, credits(980), "1000 − 20 spent (ann), bo's 12 given back");
        assert_eq!(outcome.drift, None, "the first sync of a store has no drift");
        let later = sync(&mut books, &mut memory, 900, |_, _| {});
        assert_eq!((later.held_back, later.drift, later.drift_explained), (credits(0), Some(20), true));
        assert_eq!(books.state.provider_balance, credits(900));
        let quiet = sync(&mut books, &mut memory, 900, |_, _| {});
        assert_eq!((quiet.drift, quiet.drift_explained), (Some(0), true), "two quiet syncs: drift 0");
        let lost = sync(&mut books, &mut memory, 899, |_, _| {});
        assert_eq!((lost.drift, lost.drift_explained), (Some(-1), false), "nothing in flight explains a lost credit");
    }

    #[test]
    fn a_drift_is_explained_only_within_what_the_syncs_held_back() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        sync(&mut books, &mut memory, 1_000, |_, _| {});
        let open = buy_and_spend(&mut books, &mut memory, "ann", 10);
        let consumed = sync(&mut books, &mut memory, 960, |_, _| {});
        assert_eq!((consumed.held_back, consumed.drift, consumed.drift_explained), (credits(40), Some(-40), true));
        complete(&mut books, &mut memory, &open).expect("completes");
        let back = sync(&mut books, &mut memory, 960, |_, _| {});
        assert_eq!((back.drift, back.drift_explained), (Some(40), true), "up to what the previous sync held back");
        let over = sync(&mut books, &mut memory, 961, |_, _| {});
        assert_eq!((over.drift, over.drift_explained), (Some(1), false), "the previous sync held back nothing");

        let (mut fresh, mut memory) = (self::books(1_000), Memory::default());
        sync(&mut fresh, &mut memory, 1_000, |_, _| {});
        buy_and_spend(&mut fresh, &mut memory, "ann", 10);
        let below = sync(&mut fresh, &mut memory, 959, |_, _| {});
        assert_eq!((below.drift, below.drift_explained), (Some(-41), false), "one credit past what it held back");
    }

    #[test]
    fn held_back_spends_leave_nothing_to_sell_without_overcommitting() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        buy(&mut books, &mut memory, "ann", "a").expect("fits");
        let open = spend(&mut books, &mut memory, "ann", 10);
        for order in 0..24 {
            buy(&mut books, &mut memory, &format!("u{order}"), &format!("o{order}")).expect("fits");
        }
        assert_eq!((books.state.provider_balance, books.state.reserved), (credits(960), credits(960)));
        sync(&mut books, &mut memory, 960, |_, _| {});
        assert_eq!(books.state.provider_balance, credits(920), "the provider consumed it, or may still");
        assert!(!books.capacity().overcommitted(), "920 + 40 held back cover 960");
        assert_eq!(books.capacity().user_credits().get(), 0, "but nothing is left to sell");
        complete(&mut books, &mut memory, &open).expect("completes");
        sync(&mut books, &mut memory, 959, |_, _| {});
        assert!(books.capacity().overcommitted(), "959 < 960 with nothing held back");
    }

    /// Spends that complete by time together, in one sweep, while a sync is
    /// in flight: the sync holds back every one of them.
    #[test]
    fn spends_completed_by_time_in_one_sweep_during_a_sync_are_all_held_back() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        let first = buy_and_spend(&mut books, &mut memory, "ann", 3);
        let second = buy_and_spend(&mut books, &mut memory, "bo", 5);
        let after = books.spend_complete_after_ms;
        let outcome = sync(&mut books, &mut memory, 1_000, |books, memory| {
            let both = [first.clone(), second.clone()];
            let swept = books.decide_completions(&inputs(memory, after), &both).expect("completes");
            memory.keep(&swept.writes);
            books.adopt(swept).expect("adopts");
        });
        assert_eq!(outcome.held_back, credits(32), "4 × (3 + 5): both may have been consumed after the read");
        assert_eq!(books.state.provider_balance, credits(968));
    }

    /// A spend may take the provider balance to zero, not one credit below
    /// (SPEC §5: "Enhancement temporarily unavailable").
    #[test]
    fn a_spend_may_use_the_whole_provider_balance_and_not_a_credit_more() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        buy(&mut books, &mut memory, "ann", "a").expect("fits");
        sync(&mut books, &mut memory, 20, |_, _| {});
        spend(&mut books, &mut memory, "ann", 5);
        assert_eq!(books.state.provider_balance, credits(0), "20 provider credits, exactly the balance");
        let wallet = books.wallets.wallet(&user("ann"), None, 0).expect("hot");
        let one = crate::domain::UserCredits::new(1).expect("small");
        let refused = books.decide_spend(&inputs(&memory, 0), &user("ann"), wallet, one, None, &key("more"), [5; 32]);
        assert!(matches!(refused, Err(EngineError::EnhancementUnavailable)), "{:?}", refused.err());
    }

    /// A refund after a spend's time ran out is refused even before the
    /// sweep has completed it: every answer after the instant treats it as
    /// completed (SPEC §5).
    #[test]
    fn a_refund_at_the_spends_time_is_refused_before_any_sweep() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        let late = buy_and_spend(&mut books, &mut memory, "ann", 2);
        let after = books.spend_complete_after_ms;
        let wallet = books.wallets.wallet(&user("ann"), None, 0).expect("hot");
        let refused = books.decide_refund(&inputs(&memory, after), &user("ann"), wallet, &late);
        assert!(matches!(refused, Err(EngineError::SpendCompleted)), "{:?}", refused.err());
        assert!(books.open_spends.contains_key(&late), "no sweep ran: it is the deadline that refuses");
    }

    #[test]
    fn a_spend_ends_once_completed_or_refunded_and_completes_by_itself_at_its_time() {
        let (mut books, mut memory) = (books(1_000), Memory::default());
        let done = buy_and_spend(&mut books, &mut memory, "ann", 2);
        let (applied, receipt) = complete(&mut books, &mut memory, &done).expect("completes");
        assert!(applied, "an open spend is completed");
        let again = complete(&mut books, &mut memory, &done).expect("answers");
        assert_eq!(again, (false, receipt), "a second completion replays the first answer");
        assert!(matches!(refund(&mut books, &mut memory, "ann", &done), Err(EngineError::SpendCompleted)));
        let failed = spend(&mut books, &mut memory, "ann", 3);
        refund(&mut books, &mut memory, "ann", &failed).expect("refunds");
        assert!(matches!(refund(&mut books, &mut memory, "ann", &failed), Err(EngineError::AlreadyRefunded)));
        assert!(matches!(complete(&mut books, &mut memory, &failed), Err(EngineError::AlreadyRefunded)));
        let late = spend(&mut books, &mut memory, "ann", 1);
        let after = books.spend_complete_after_ms;
        assert!(!books.spend_is_due(&late, after - 1), "one millisecond before its time");
        assert!(books.spend_is_due(&late, after), "at its time");
        let timed = books.decide_completions(&inputs(&memory, after), std::slice::from_ref(&late)).expect("completes");
        let entry = timed.writes.writes().iter().find_map(|write| match write {
            Write::Ledger(entry) => Some(entry.clone()),
            _ => None,
        });
        let entry = entry.expect("a completion entry");
        assert!(matches!(entry.kind, EntryKind::SpendCompleted { by: CompletedBy::Time, .. }), "{entry:?}");
        assert!(entry.at_ms >= T0 + after, "dated no earlier than its time");
        memory.keep(&timed.writes);
        books.adopt(timed).expect("adopts");
        assert_eq!(books.state.open_spends, crate::domain::UserCredits::ZERO);
        assert!(books.open_spends.is_empty() && books.spend_deadlines.is_empty());
        assert!(matches!(refund(&mut books, &mut memory, "ann", &late), Err(EngineError::SpendCompleted)));
    }

    #[test]
    fn a_package_change_replaces_that_package_and_no_other() {
        let (mut books, mut memory) = (books(4_000), Memory::default());
        let others: Vec<_> = books.packages.iter().filter(|package| package.id != starter()).cloned().collect();
        let update = super::super::operators::UpdatePackage {
            package_id: starter(),
            enabled: Some(false),
            credits: None,
            price_minor_units: Some(1_234),
        };
        let decided = books.decide_package(&inputs(&memory, 0), &update);
        let changed = apply(&mut books, &mut memory, decided);
        let starter_now = books.packages.iter().find(|package| package.id == starter()).expect("still there");
        assert_eq!((starter_now.enabled, starter_now.price.minor_units()), (false, 1_234));
        assert_eq!(starter_now, &changed);
        let others_now: Vec<_> = books.packages.iter().filter(|package| package.id != starter()).cloned().collect();
        assert_eq!(others_now, others, "the other packages are untouched");
    }

    #[test]
    fn nothing_is_decided_on_failed_storage_and_nothing_sold_before_the_first_sync() {
        let (books, memory) = (books(4_000), Memory::default());
        let failed = Inputs { writable: false, ..inputs(&memory, 0) };
        let unsynced = Inputs { synced: false, ..inputs(&memory, 0) };
        assert!(matches!(books.ensure_writable(&failed), Err(EngineError::NotReady(_))));
        assert!(matches!(books.ensure_ready(&failed), Err(EngineError::NotReady(_))));
        assert!(matches!(books.ensure_ready(&unsynced), Err(EngineError::NotReady(_))));
        assert!(books.ensure_writable(&unsynced).is_ok(), "an operator may act before the first sync");
        let switch = super::super::operators::SetPurchasesEnabled { enabled: false, reason: Some("x".into()) };
        assert!(matches!(books.decide_kill_switch(&failed, switch), Err(EngineError::NotReady(_))));
    }

    #[test]
    #[should_panic(expected = "reserved must equal")]
    fn a_state_whose_reserve_is_not_ratio_times_what_is_spoken_for_is_never_adopted() {
        let books = books(4_000);
        let mut next = books.state.clone();
        next.next_seq += 1;
        next.reserved = ProviderCredits::new(4).expect("small");
        books.assert_invariants(&next);
    }
}
