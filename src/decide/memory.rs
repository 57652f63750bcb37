//! The records a store would hold once the changes so far were durable,
//! kept in memory: what the decider is driven against without an actor or a
//! store (its unit tests, the model test). Reads here are what a wallet
//! actor's reads would give ([`Memory::prefetch`]).

use std::collections::HashMap;

use super::{Prefetched, Recovered, UserCommand};
use crate::domain::grants::GrantDeadline;
use crate::domain::{GrantId, HoldId, IdempotencyKey, KeyId, Package, SpendId, UserId};
use crate::store::records::{
    ExpiredDay, HoldRecord, HoldState, IdempotencyRecord, InventoryRecord, LedgerEntry, Operation, SpendRecord,
    SpendState, WalletRecord,
};
use crate::store::writes::{Write, WriteSet};

/// Records by key, as the writes of durable changes left them.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    remembered: HashMap<(Operation, Option<KeyId>, IdempotencyKey), IdempotencyRecord>,
    holds: HashMap<HoldId, HoldRecord>,
    spends: HashMap<SpendId, SpendRecord>,
    wallets: HashMap<UserId, WalletRecord>,
    inventory: Option<InventoryRecord>,
    /// The open grant deadlines, by grant.
    deadlines: HashMap<GrantId, GrantDeadline>,
    expired_days: std::collections::BTreeMap<u32, ExpiredDay>,
    /// The ledger entries kept, by sequence number (a void's origin).
    entries: HashMap<u64, LedgerEntry>,
    /// The last ledger sequence number kept, and its entry's time.
    seen: u64,
    last_at_ms: u64,
}

impl Memory {
    /// Keeps what `writes` write (a change made durable).
    pub fn keep(&mut self, writes: &WriteSet) {
        for write in writes.writes() {
            match write {
                Write::Remember { operation, caller, key, record } => {
                    self.remembered.insert((*operation, caller.clone(), key.clone()), record.clone());
                }
                Write::Forget { operation, caller, key } => {
                    self.remembered.remove(&(*operation, caller.clone(), key.clone()));
                }
                Write::Hold(record) => {
                    self.holds.insert(record.hold_id.clone(), record.clone());
                }
                Write::Spend(record) => {
                    self.spends.insert(record.spend_id.clone(), record.clone());
                }
                Write::Wallet { user, record, .. } => {
                    self.wallets.insert(user.clone(), record.clone());
                }
                Write::Inventory(record) => self.inventory = Some(record.clone()),
                Write::GrantDeadline(deadline) if deadline.open => {
                    self.deadlines.insert(deadline.grant, deadline.clone());
                }
                Write::GrantDeadline(deadline) => {
                    self.deadlines.remove(&deadline.grant);
                }
                Write::ExpiredDay(day) => {
                    self.expired_days.insert(day.day, *day);
                }
                Write::Ledger(entry) => {
                    self.entries.insert(entry.seq, entry.clone());
                    self.seen = self.seen.max(entry.seq);
                    self.last_at_ms = self.last_at_ms.max(entry.at_ms);
                }
                _ => {}
            }
        }
    }

    /// What a wallet actor would read for `command` about `user` now.
    pub fn prefetch(&self, user: &UserId, command: &UserCommand) -> Prefetched {
        let needs = command.needs();
        Prefetched {
            seen: self.seen,
            wallet: if needs.wallet { self.wallets.get(user).cloned() } else { None },
            idempotency: needs.key.and_then(|(operation, key)| {
                self.remembered.get(&(operation, Some(key.caller.clone()), key.key.clone())).cloned()
            }),
            hold: needs.hold.and_then(|id| self.holds.get(id).cloned()),
            spend: needs.spend.and_then(|id| self.spends.get(id).cloned()),
        }
    }

    /// Reads what is kept as this release reads the records of the release
    /// before grants: each wallet as one never-expiring paid grant of its
    /// balance named after its last entry (`WalletRecord`'s upgrade), spends
    /// without draws, entries without grant effects.
    #[cfg(test)]
    pub fn as_before_grants(&mut self) {
        for wallet in self.wallets.values_mut() {
            wallet.grants = crate::store::records::legacy_grants(&wallet.recent, wallet.balance);
        }
        for spend in self.spends.values_mut() {
            spend.draws = None;
        }
        for entry in self.entries.values_mut() {
            entry.grants = None;
        }
    }

    pub fn ledger_entry(&self, seq: u64) -> Option<&LedgerEntry> {
        self.entries.get(&seq)
    }

    pub fn hold(&self, id: &HoldId) -> Option<&HoldRecord> {
        self.holds.get(id)
    }

    pub fn spend(&self, id: &SpendId) -> Option<&SpendRecord> {
        self.spends.get(id)
    }

    pub fn wallet(&self, user: &UserId) -> Option<&WalletRecord> {
        self.wallets.get(user)
    }

    /// What a restart would recover: `initial` until a change wrote an
    /// inventory, the open holds and spends, `packages` as configured.
    pub fn recovered(&self, initial: &InventoryRecord, packages: Vec<Package>) -> Recovered {
        Recovered {
            state: self.inventory.clone().unwrap_or_else(|| initial.clone()),
            open_holds: self.holds.values().filter(|hold| hold.state == HoldState::Open).cloned().collect(),
            open_spends: self.spends.values().filter(|spend| spend.state == SpendState::Open).cloned().collect(),
            packages,
            last_at_ms: self.last_at_ms,
            api_keys: Vec::new(),
            grant_deadlines: self.deadlines.values().cloned().collect(),
            expired_by_day: self.expired_days.values().copied().collect(),
        }
    }
}
