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

use std::collections::{HashMap, VecDeque};

use super::change::KeyInFlight;
use crate::domain::{HoldId, SpendId, UserId};

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
    keys: HashMap<KeyInFlight, u64>,
    holds: HashMap<HoldId, u64>,
    spends: HashMap<SpendId, u64>,
    wallets: HashMap<UserId, u64>,
    /// In the order they settled, with the monotonic time they did.
    order: VecDeque<(u64, Touched)>,
    /// The highest sequence number forgotten: a read that saw less is too old to check.
    floor: u64,
}

/// A prefetched record that may have moved since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale;

impl Settled {
    pub fn new(window_ms: u64, floor: u64) -> Self {
        Self {
            window_ms,
            keys: HashMap::new(),
            holds: HashMap::new(),
            spends: HashMap::new(),
            wallets: HashMap::new(),
            order: VecDeque::new(),
            floor,
        }
    }

    /// How long a settled record is remembered.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// A read older than this cannot be checked.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// How many records are remembered (for the view and the tests).
    pub fn len(&self) -> usize {
        self.keys.len() + self.holds.len() + self.spends.len() + self.wallets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `touched` is durable at `monotonic_ms`.
    pub fn settle(&mut self, touched: Touched, monotonic_ms: u64) {
        // Changes settle in any order within a group: keep the latest.
        let seq = touched.seq;
        if let Some(key) = &touched.key {
            let known = self.keys.entry(key.clone()).or_default();
            *known = (*known).max(seq);
        }
        for hold in &touched.holds {
            let known = self.holds.entry(hold.clone()).or_default();
            *known = (*known).max(seq);
        }
        for spend in &touched.spends {
            let known = self.spends.entry(spend.clone()).or_default();
            *known = (*known).max(seq);
        }
        if let Some((user, version)) = &touched.wallet {
            let known = self.wallets.entry(user.clone()).or_default();
            *known = (*known).max(*version);
        }
        self.order.push_back((monotonic_ms, touched));
    }

    /// Forgets what settled more than the window before `monotonic_ms`.
    pub fn prune(&mut self, monotonic_ms: u64) {
        while let Some((at_ms, _)) = self.order.front() {
            if at_ms.saturating_add(self.window_ms) > monotonic_ms {
                break;
            }
            let Some((_, touched)) = self.order.pop_front() else { break };
            let seq = touched.seq;
            // A later change to the same record keeps it.
            if let Some(key) = touched.key {
                if self.keys.get(&key) == Some(&seq) {
                    self.keys.remove(&key);
                }
            }
            for hold in touched.holds {
                if self.holds.get(&hold) == Some(&seq) {
                    self.holds.remove(&hold);
                }
            }
            for spend in touched.spends {
                if self.spends.get(&spend) == Some(&seq) {
                    self.spends.remove(&spend);
                }
            }
            if let Some((user, version)) = touched.wallet {
                if self.wallets.get(&user) == Some(&version) {
                    self.wallets.remove(&user);
                }
            }
            self.floor = self.floor.max(seq);
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
        self.check(self.keys.get(key), seen)
    }

    /// # Errors
    /// [`Stale`]: the hold may have moved after the read.
    pub fn check_hold(&self, id: &HoldId, seen: u64) -> Result<(), Stale> {
        self.check(self.holds.get(id), seen)
    }

    /// # Errors
    /// [`Stale`]: the spend may have moved after the read.
    pub fn check_spend(&self, id: &SpendId, seen: u64) -> Result<(), Stale> {
        self.check(self.spends.get(id), seen)
    }

    /// A wallet is checked by its version: the wallet actor keeps its
    /// user's wallet between commands, and a newer version settled here
    /// means the copy it sent is behind.
    ///
    /// # Errors
    /// [`Stale`]: a newer version of the wallet settled recently.
    pub fn check_wallet(&self, user: &UserId, version: u64) -> Result<(), Stale> {
        match self.wallets.get(user) {
            Some(settled) if *settled > version => Err(Stale),
            _ => Ok(()),
        }
    }
}
