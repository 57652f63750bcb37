//! The hot wallets: the wallets the inventory decided on recently, kept in
//! its memory so that a user's next operation is decided without reading
//! the store and without a hop through another actor.
//!
//! A hot wallet is always the newest state of that wallet: the one after the
//! last change the inventory queued for it, durable or not. (If a queued
//! change later fails, the store stops taking changes and every later change
//! is refused, exactly as for the rest of the books.) A wallet stays hot while
//! a change to it is in flight and for [`HotWallets::idle_ms`] after its last
//! use; the sweep then drops it, and the next operation loads it again.
//!
//! Loading is the delicate part, because it happens outside the inventory
//! (a store read may block): the inventory answers a cold wallet with a
//! [`LoadTicket`], the engine reads the wallet and sends it back with the
//! ticket, and the inventory accepts the read only if no sweep dropped a
//! wallet in between. Why that suffices: when the ticket was issued the
//! wallet was not hot, so every change to it was already applied to the
//! store, and the read saw the newest state. A change made after the ticket
//! would have made the wallet hot; if it is still hot the read is ignored,
//! and if a sweep dropped it again, the ticket no longer matches and the
//! engine reads again. The store's version check on every wallet write is
//! the second line: a stale write would fail loudly, never apply.

use std::collections::HashMap;

use crate::domain::UserId;
use crate::store::records::WalletRecord;

/// Proof of when the inventory asked for a wallet to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTicket(u64);

/// A wallet read from the store after the inventory issued `ticket`.
#[derive(Debug, Clone)]
pub struct LoadedWallet {
    pub wallet: WalletRecord,
    pub ticket: LoadTicket,
}

#[derive(Debug)]
struct HotWallet {
    wallet: WalletRecord,
    /// Changes to this wallet queued and not yet durable (or failed).
    in_flight: u32,
    last_used_ms: u64,
}

/// The inventory's table of hot wallets.
#[derive(Debug)]
pub struct HotWallets {
    wallets: HashMap<UserId, HotWallet>,
    /// Sweeps that dropped at least one wallet: a ticket is this number.
    drops: u64,
    idle_ms: u64,
}

impl HotWallets {
    pub fn new(idle_ms: u64) -> Self {
        Self { wallets: HashMap::new(), drops: 0, idle_ms }
    }

    /// How long an unused wallet stays hot.
    pub fn idle_ms(&self) -> u64 {
        self.idle_ms
    }

    /// The newest state of `user`'s wallet: the hot one, else `loaded` if
    /// its ticket is still good (the wallet becomes hot); else a ticket to
    /// load it with.
    pub fn wallet(
        &mut self,
        user: &UserId,
        loaded: Option<LoadedWallet>,
        now_ms: u64,
    ) -> Result<WalletRecord, LoadTicket> {
        if let Some(hot) = self.wallets.get_mut(user) {
            hot.last_used_ms = now_ms;
            return Ok(hot.wallet.clone());
        }
        match loaded {
            Some(loaded) if loaded.ticket == LoadTicket(self.drops) => {
                let hot = HotWallet { wallet: loaded.wallet.clone(), in_flight: 0, last_used_ms: now_ms };
                self.wallets.insert(user.clone(), hot);
                Ok(loaded.wallet)
            }
            _ => Err(LoadTicket(self.drops)),
        }
    }

    /// `wallet` is `user`'s wallet after a change just queued.
    ///
    /// # Panics
    /// If `wallet` is not newer than the hot one: a change decided on a stale
    /// wallet is a bug, and writing it would lose an update.
    pub fn queued(&mut self, user: &UserId, wallet: WalletRecord, now_ms: u64) {
        match self.wallets.get_mut(user) {
            Some(hot) => {
                assert!(wallet.version > hot.wallet.version, "a wallet change is decided on the newest wallet");
                hot.wallet = wallet;
                hot.in_flight += 1;
                hot.last_used_ms = now_ms;
            }
            None => {
                self.wallets.insert(user.clone(), HotWallet { wallet, in_flight: 1, last_used_ms: now_ms });
            }
        }
    }

    /// A change to `user`'s wallet queued earlier is durable, or failed.
    pub fn settled(&mut self, user: &UserId, now_ms: u64) {
        if let Some(hot) = self.wallets.get_mut(user) {
            hot.in_flight = hot.in_flight.saturating_sub(1);
            hot.last_used_ms = now_ms;
        }
    }

    /// Drops every wallet with nothing in flight and unused for `idle_ms`;
    /// returns how many it dropped.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.wallets.len();
        let idle_ms = self.idle_ms;
        self.wallets.retain(|_, hot| hot.in_flight > 0 || now_ms.saturating_sub(hot.last_used_ms) < idle_ms);
        let dropped = before - self.wallets.len();
        if dropped > 0 {
            self.drops += 1;
        }
        dropped
    }

    /// Whether `user`'s wallet is in memory.
    pub fn is_hot(&self, user: &UserId) -> bool {
        self.wallets.contains_key(user)
    }

    /// The ticket for a read starting now (see the module's comment).
    pub fn ticket(&self) -> LoadTicket {
        LoadTicket(self.drops)
    }

    /// How many wallets are hot.
    pub fn count(&self) -> usize {
        self.wallets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserCredits;

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("valid")
    }

    fn at(balance: u64, version: u64) -> WalletRecord {
        WalletRecord { balance: UserCredits::new(balance).expect("small"), version, recent: vec![version] }
    }

    /// Goal: a cold wallet is loaded with a ticket, then served hot.
    #[test]
    fn a_cold_wallet_is_loaded_once_then_served_hot() {
        let mut hot = HotWallets::new(1_000);
        let alice = user("alice");
        let ticket = hot.wallet(&alice, None, 0).expect_err("cold");
        assert!(!hot.is_hot(&alice));
        assert_eq!(ticket, hot.ticket(), "a read starting now gets the same ticket");
        let loaded = LoadedWallet { wallet: at(10, 1), ticket };
        assert_eq!(hot.wallet(&alice, Some(loaded), 1), Ok(at(10, 1)));
        assert!(hot.is_hot(&alice));
        assert_eq!(hot.wallet(&alice, None, 2), Ok(at(10, 1)), "hot now");
        assert_eq!(hot.count(), 1);
    }

    /// Goal: a read that a later change overtook is never used. Method: a
    /// ticket is issued; another request loads, changes, settles the wallet,
    /// and a sweep drops it; the first read, now stale, comes back.
    #[test]
    fn a_read_overtaken_by_a_change_and_a_drop_is_refused() {
        let mut hot = HotWallets::new(10);
        let alice = user("alice");
        let first = hot.wallet(&alice, None, 0).expect_err("cold");
        let second = hot.wallet(&alice, None, 0).expect_err("still cold");
        hot.wallet(&alice, Some(LoadedWallet { wallet: at(0, 0), ticket: second }), 1).expect("loads");
        hot.queued(&alice, at(10, 1), 1);
        hot.settled(&alice, 2);
        assert_eq!(hot.sweep(100), 1, "idle and settled: dropped");
        let stale = LoadedWallet { wallet: at(0, 0), ticket: first };
        let fresh = hot.wallet(&alice, Some(stale), 101).expect_err("the stale read is refused");
        assert_ne!(fresh, first);
        assert_eq!(hot.wallet(&alice, Some(LoadedWallet { wallet: at(10, 1), ticket: fresh }), 102), Ok(at(10, 1)));
    }

    /// Goal: while a wallet is hot, a read sent back is ignored for the hot one.
    #[test]
    fn a_hot_wallet_wins_over_a_read() {
        let mut hot = HotWallets::new(1_000);
        let alice = user("alice");
        let ticket = hot.wallet(&alice, None, 0).expect_err("cold");
        hot.queued(&alice, at(10, 1), 0);
        let read = LoadedWallet { wallet: at(0, 0), ticket };
        assert_eq!(hot.wallet(&alice, Some(read), 1), Ok(at(10, 1)));
    }

    /// Goal: a wallet with a change in flight is never dropped, however idle;
    /// an idle settled one is, and a recently used one is not.
    #[test]
    fn the_sweep_keeps_wallets_in_flight_and_recently_used() {
        let mut hot = HotWallets::new(10);
        let (busy, idle, recent, loaded) = (user("busy"), user("idle"), user("recent"), user("loaded"));
        hot.queued(&busy, at(10, 1), 0);
        let ticket = hot.wallet(&loaded, None, 0).expect_err("cold");
        hot.wallet(&loaded, Some(LoadedWallet { wallet: at(0, 0), ticket }), 0).expect("loads");
        hot.queued(&loaded, at(10, 1), 0);
        hot.queued(&idle, at(10, 1), 0);
        hot.settled(&idle, 0);
        hot.queued(&recent, at(10, 1), 0);
        hot.settled(&recent, 95);
        assert_eq!(hot.sweep(100), 1);
        assert!(hot.wallet(&busy, None, 100).is_ok());
        assert!(hot.wallet(&loaded, None, 100).is_ok(), "a loaded wallet with a change in flight is kept too");
        assert!(hot.wallet(&idle, None, 100).is_err());
        assert!(hot.wallet(&recent, None, 100).is_ok());
        assert_eq!(hot.sweep(109), 0, "nothing more to drop (`recent` was last read at 100)");
        assert_eq!(hot.sweep(110), 1, "unused for exactly the idle time: dropped");
        assert!(hot.wallet(&recent, None, 110).is_err());
        hot.settled(&busy, 100);
        hot.settled(&loaded, 100);
        assert_eq!(hot.sweep(200), 2);
        assert_eq!(hot.count(), 0);
    }

    /// Goal: a sweep that drops nothing does not invalidate tickets.
    #[test]
    fn a_sweep_that_drops_nothing_keeps_tickets_good() {
        let mut hot = HotWallets::new(10);
        let alice = user("alice");
        let ticket = hot.wallet(&alice, None, 0).expect_err("cold");
        assert_eq!(hot.sweep(1_000), 0);
        assert!(hot.wallet(&alice, Some(LoadedWallet { wallet: at(0, 0), ticket }), 1_000).is_ok());
    }

    /// Goal: a change decided on a stale wallet is caught before it is queued.
    #[test]
    #[should_panic(expected = "decided on the newest wallet")]
    fn a_change_not_newer_than_the_hot_wallet_panics() {
        let mut hot = HotWallets::new(10);
        let alice = user("alice");
        hot.queued(&alice, at(10, 2), 0);
        hot.queued(&alice, at(20, 2), 0);
    }
}
