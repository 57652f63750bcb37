//! What changed recently, so that a decision can tell a prefetched record
//! that is still current from one that moved while its command waited.
//!
//! A record a change touches is in the books while the change is in flight
//! (open or closing holds and spends, keys in flight, wallets in flight),
//! and the books' copy is the newest. Once the change is durable the store
//! holds it, and the books forget it; for [`Settled::window_ms`] after that
//! they remember the sequence number of the last change to touch it (for a
//! wallet, its version). A read made before that change became visible (its
//! [`super::Prefetched::seen`] is lower) may show the record as it was: the
//! decision asks for a fresh read instead. A read older than the window
//! cannot be checked and is refetched too ([`Settled::floor`]).
//!
//! The window keeps 64-bit hashes of the records' names, not the names: a
//! few seconds of changes cost no allocation, and two names with one hash
//! can only make a read look stale (a refetch), never hide a staler one.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use super::change::KeyInFlight;
use crate::domain::{HoldId, SpendId, UserId};

/// A record's name, hashed (with its kind, so kinds never collide).
fn name(kind: u8, value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    kind.hash(&mut hasher);
    value.hash(&mut hasher);
    hasher.finish()
}

const KEY: u8 = 1;
const HOLD: u8 = 2;
const SPEND: u8 = 3;
const WALLET: u8 = 4;

/// What the window remembers of one settled change: the names it touched, hashed.
#[derive(Debug)]
struct Remembered {
    at_ms: u64,
    seq: u64,
    /// Keys, holds and spends.
    names: Vec<u64>,
    wallet: Option<(u64, u64)>,
}

/// What one durable change touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// The change's last ledger sequence number.
    pub seq: u64,
    pub key: Option<KeyInFlight>,
    pub holds: Vec<HoldId>,
    pub spends: Vec<SpendId>,
    /// The wallet it moved, and the version it left it at.
    pub wallet: Option<(UserId, u64)>,
}

/// The records touched by changes that became durable in the last
/// `window_ms` (monotonic).
#[derive(Debug)]
pub struct Settled {
    window_ms: u64,
    /// A key's, hold's or spend's name → the last change that touched it.
    records: HashMap<u64, u64>,
    /// A user's name → the newest version of their wallet that settled.
    wallets: HashMap<u64, u64>,
    /// In the order they settled.
    order: VecDeque<Remembered>,
    /// The highest sequence number forgotten: a read that saw less is too old to check.
    floor: u64,
}

/// A prefetched record that may have moved since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale;

impl Settled {
    pub fn new(window_ms: u64, floor: u64) -> Self {
        Self { window_ms, records: HashMap::new(), wallets: HashMap::new(), order: VecDeque::new(), floor }
    }

    /// `touched` is durable at `monotonic_ms`.
    pub fn settle(&mut self, touched: &Touched, monotonic_ms: u64) {
        let seq = touched.seq;
        let keys = touched.key.iter().map(|key| name(KEY, key));
        let holds = touched.holds.iter().map(|id| name(HOLD, id));
        let spends = touched.spends.iter().map(|id| name(SPEND, id));
        let names: Vec<u64> = keys.chain(holds).chain(spends).collect();
        // Changes settle in any order within a group: keep the latest.
        for record in &names {
            let known = self.records.entry(*record).or_default();
            *known = (*known).max(seq);
        }
        let wallet = touched.wallet.as_ref().map(|(user, version)| (name(WALLET, user), *version));
        if let Some((user, version)) = wallet {
            let known = self.wallets.entry(user).or_default();
            *known = (*known).max(version);
        }
        self.order.push_back(Remembered { at_ms: monotonic_ms, seq, names, wallet });
    }

    /// Forgets what settled more than the window before `monotonic_ms`.
    pub fn prune(&mut self, monotonic_ms: u64) {
        while let Some(front) = self.order.front() {
            if front.at_ms.saturating_add(self.window_ms) > monotonic_ms {
                break;
            }
            let Some(remembered) = self.order.pop_front() else { break };
            // A later change to the same record keeps it.
            for record in remembered.names {
                if self.records.get(&record) == Some(&remembered.seq) {
                    self.records.remove(&record);
                }
            }
            if let Some((user, version)) = remembered.wallet {
                if self.wallets.get(&user) == Some(&version) {
                    self.wallets.remove(&user);
                }
            }
            self.floor = self.floor.max(remembered.seq);
        }
    }

    /// Whether a read that saw every change up to `seen` still shows `seq_of`'s record as it is.
    fn check(&self, last_change: Option<&u64>, seen: u64) -> Result<(), Stale> {
        if seen < self.floor || last_change.is_some_and(|seq| *seq > seen) {
            return Err(Stale);
        }
        Ok(())
    }

    /// # Errors
    /// [`Stale`]: the key's record may have been written after the read.
    pub fn check_key(&self, key: &KeyInFlight, seen: u64) -> Result<(), Stale> {
        self.check(self.records.get(&name(KEY, key)), seen)
    }

    /// # Errors
    /// [`Stale`]: the hold may have moved after the read.
    pub fn check_hold(&self, id: &HoldId, seen: u64) -> Result<(), Stale> {
        self.check(self.records.get(&name(HOLD, id)), seen)
    }

    /// # Errors
    /// [`Stale`]: the spend may have moved after the read.
    pub fn check_spend(&self, id: &SpendId, seen: u64) -> Result<(), Stale> {
        self.check(self.records.get(&name(SPEND, id)), seen)
    }

    /// A wallet is checked by its version: the wallet actor keeps its
    /// user's wallet between commands, and a newer version settled here
    /// means the copy it sent is behind.
    ///
    /// # Errors
    /// [`Stale`]: a newer version of the wallet settled recently.
    pub fn check_wallet(&self, user: &UserId, version: u64) -> Result<(), Stale> {
        match self.wallets.get(&name(WALLET, user)) {
            Some(settled) if *settled > version => Err(Stale),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IdempotencyKey, KeyId, ScopedKey};
    use crate::store::records::Operation;

    fn key(text: &str) -> KeyInFlight {
        let caller = KeyId::parse("key_1").expect("valid");
        (Operation::Purchase, ScopedKey { caller, key: IdempotencyKey::parse(text).expect("valid") })
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("valid")
    }

    /// A record touched twice: when the first change leaves the window, the
    /// second still makes an older read stale; once both left, the floor does.
    #[test]
    fn a_later_change_to_a_record_outlives_the_earlier_one_in_the_window() {
        let mut settled = Settled::new(2_000, 0);
        let first = Touched { seq: 5, key: Some(key("k")), wallet: Some((user("ann"), 1)), ..Touched::default() };
        let second = Touched { seq: 9, key: Some(key("k")), wallet: Some((user("ann"), 2)), ..Touched::default() };
        settled.settle(&first, 0);
        settled.settle(&second, 1_500);
        settled.prune(2_000);
        assert_eq!(settled.check_key(&key("k"), 6), Err(Stale), "the second change (seq 9) is still remembered");
        assert_eq!(settled.check_key(&key("k"), 9), Ok(()));
        assert_eq!(settled.check_wallet(&user("ann"), 1), Err(Stale), "version 2 is still remembered");
        assert_eq!(settled.check_wallet(&user("ann"), 2), Ok(()));
        assert_eq!(settled.check_key(&key("other"), 4), Err(Stale), "older than the floor (5)");
        settled.prune(3_500);
        assert!(settled.records.is_empty() && settled.wallets.is_empty(), "both left the window");
        assert_eq!(settled.check_key(&key("k"), 8), Err(Stale), "older than the floor (9)");
        assert_eq!(settled.check_wallet(&user("ann"), 1), Ok(()), "a wallet is checked by version, within the window");
    }
}
