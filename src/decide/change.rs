//! A change being built (the next state, its ledger entries, its writes) and
//! what a decision produced.

use super::{EngineError, Fingerprint};
use crate::domain::grants::GrantDeadline;
use crate::domain::GrantId;
use crate::domain::{KeyId, Package, ProviderCredits, ScopedKey, UserCredits, UserId};
use crate::store::records::{
    ApiKeyRecord, EntryKind, ExpiredDay, GrantEffect, HoldRecord, IdempotencyRecord, InventoryRecord, LedgerEntry,
    Operation, Receipt, SpendRecord, WalletRecord,
};
use crate::store::writes::{Write, WriteSet};

/// A change being built: the next state, its writes, and what the actor
/// must remember in memory once it is queued.
#[derive(Debug)]
pub struct Change {
    pub next: InventoryRecord,
    pub writes: WriteSet,
    /// Wall time of its ledger entries: never before the previous change's.
    pub at_ms: u64,
    /// Monotonic time of the decision, for the deadlines of holds it opens.
    pub monotonic_ms: u64,
    pub holds: Vec<HoldRecord>,
    /// The spends it opens, completes or refunds, as it leaves them.
    pub spends: Vec<SpendRecord>,
    pub key_in_flight: Option<(KeyInFlight, Fingerprint)>,
    pub consumption: Consumption,
    /// The change sells capacity (a purchase or a hold): alerts watch for "low after sale".
    pub sale: bool,
    /// A package's new settings, adopted once the change is queued.
    pub package: Option<Package>,
    /// An API key's new record, adopted once the change is queued.
    pub api_key: Option<ApiKeyRecord>,
    /// The wallet it moves, as it leaves it: hot from the moment it is queued.
    pub wallet: Option<(UserId, WalletRecord)>,
    /// The grant deadlines it opens or closes (SPEC §13).
    pub grant_deadlines: Vec<GrantDeadline>,
    /// The new totals of the days its expiries count in, in order.
    pub expired_days: Vec<ExpiredDay>,
}

/// The provider credits a change's spends move: for the metrics, and for
/// a sync in flight, which holds back the spends completed meanwhile.
#[derive(Debug, Clone, Copy)]
pub enum Consumption {
    None,
    Spent(ProviderCredits),
    Refunded(ProviderCredits),
    Completed(ProviderCredits),
}

impl Change {
    /// Appends a ledger entry describing `next` as it stands now; returns
    /// its sequence number. The entry's caller is the key's.
    pub(super) fn record(
        &mut self,
        user: Option<&UserId>,
        key: Option<&ScopedKey>,
        kind: EntryKind,
        wallet_after: Option<UserCredits>,
    ) -> Result<u64, EngineError> {
        self.record_by(user, key, key.map(|key| &key.caller), kind, wallet_after)
    }

    /// As [`Change::record`], with the caller named: a hold made without an
    /// `Idempotency-Key` still records the key that made it, which alone may
    /// finish it (SPEC §9.1).
    pub(super) fn record_by(
        &mut self,
        user: Option<&UserId>,
        key: Option<&ScopedKey>,
        caller: Option<&KeyId>,
        kind: EntryKind,
        wallet_after: Option<UserCredits>,
    ) -> Result<u64, EngineError> {
        self.record_entry(user, key, caller, kind, wallet_after, None)
    }

    /// As [`Change::record`], with what the entry did to the user's grants.
    pub(super) fn record_grants(
        &mut self,
        user: &UserId,
        key: Option<&ScopedKey>,
        kind: EntryKind,
        wallet_after: UserCredits,
        grants: GrantEffect,
    ) -> Result<u64, EngineError> {
        self.record_entry(Some(user), key, key.map(|key| &key.caller), kind, Some(wallet_after), Some(grants))
    }

    pub(super) fn record_entry(
        &mut self,
        user: Option<&UserId>,
        key: Option<&ScopedKey>,
        caller: Option<&KeyId>,
        kind: EntryKind,
        wallet_after: Option<UserCredits>,
        grants: Option<GrantEffect>,
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
            caller: caller.cloned(),
            grants,
        };
        self.writes.ledger(entry);
        Ok(seq)
    }

    /// The sequence number the next entry will get, for ids derived from it.
    pub(super) fn next_seq(&self) -> u64 {
        self.next.next_seq
    }

    pub(super) fn put_spend(&mut self, spend: SpendRecord) {
        self.writes.spend(spend.clone());
        self.spends.push(spend);
    }

    pub(super) fn put_hold(&mut self, hold: HoldRecord) -> Result<(), EngineError> {
        self.writes.hold(hold.clone());
        self.holds.push(hold);
        Ok(())
    }

    /// Writes `wallet` as moved by ledger entry `seq`.
    pub(super) fn put_wallet(&mut self, user: &UserId, wallet: &mut WalletRecord, seq: u64) -> Result<(), EngineError> {
        wallet.note_entry(seq);
        self.write_wallet(user, wallet.clone());
        Ok(())
    }

    /// Writes `wallet`, whose entries are noted already.
    ///
    /// # Panics
    /// If its balance is not the sum of its open grants (SPEC §13): a bug,
    /// and writing it would break §4.
    pub(super) fn write_wallet(&mut self, user: &UserId, wallet: WalletRecord) {
        assert!(wallet.grants_agree(), "a wallet is the sum of its grants: {wallet:?}");
        self.writes.put_wallet(user, &wallet);
        self.wallet = Some((user.clone(), wallet));
    }

    /// Opens (`open`, with `remaining`) or closes the deadline of grant
    /// `grant` of `user`.
    pub(super) fn grant_deadline(
        &mut self,
        expires_at_ms: u64,
        grant: GrantId,
        user: &UserId,
        open: bool,
        remaining: UserCredits,
    ) {
        let deadline = GrantDeadline { expires_at_ms, grant, user: user.clone(), open, remaining };
        self.writes.push(Write::GrantDeadline(deadline.clone()));
        self.grant_deadlines.push(deadline);
    }

    /// Remembers `receipt` under `key`, in the same batch as the effect.
    pub(super) fn remember(
        &mut self,
        operation: Operation,
        key: &ScopedKey,
        fingerprint: Fingerprint,
        receipt: Receipt,
    ) -> Result<(), EngineError> {
        let record = IdempotencyRecord { fingerprint, receipt, at_ms: self.at_ms };
        self.writes.push(Write::Remember { operation, caller: Some(key.caller.clone()), key: key.key.clone(), record });
        self.key_in_flight = Some(((operation, key.clone()), fingerprint));
        Ok(())
    }
}

/// An idempotency key as a decision knows it: the operation, the API key
/// that sent it and the key itself.
pub type KeyInFlight = (Operation, ScopedKey);

/// What a decision produced: a replayed answer, a change to commit, or a
/// request for fresher reads (a prefetched record moved while the command
/// waited: see [`super::Prefetched`]).
#[derive(Debug)]
pub enum Decision<T> {
    Replay(T),
    Apply(Box<Change>, T),
    Refetch,
}

impl<T> Decision<T> {
    /// The same decision with its answer mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decision<U> {
        match self {
            Decision::Replay(value) => Decision::Replay(f(value)),
            Decision::Apply(change, value) => Decision::Apply(change, f(value)),
            Decision::Refetch => Decision::Refetch,
        }
    }
}

/// The metrics label of a decision: `ok`, `replayed`, `refetch`, or the refusal.
pub fn outcome_label<T>(decision: &Result<Decision<T>, EngineError>) -> &'static str {
    match decision {
        Ok(Decision::Apply(..)) => "ok",
        Ok(Decision::Replay(_)) => "replayed",
        Ok(Decision::Refetch) => "refetch",
        Err(error) => error.label(),
    }
}

pub(super) fn id_from_seq<T>(
    prefix: &str,
    seq: u64,
    parse: impl Fn(&str) -> Result<T, crate::domain::IdError>,
) -> Result<T, EngineError> {
    parse(&format!("{prefix}_{seq}")).map_err(|error| EngineError::Storage(format!("generated id: {error}")))
}
