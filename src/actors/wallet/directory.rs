//! Where a user's wallet actor is found: a map from user to actor, split in
//! [`SHARDS`] independently locked shards, so that requests for different
//! users almost never wait for one another and no lock is global. A lock is
//! held only to look up, insert or remove one entry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use super::{WalletActor, WalletDeps};
use crate::domain::UserId;

/// Independently locked parts of the directory.
const SHARDS: usize = 64;

type Shard = HashMap<UserId, (u64, Addr<WalletActor>)>;

/// The arbiters (threads) the wallet actors run on, stopped by the engine.
pub struct WalletThreads {
    arbiters: Vec<Arbiter>,
}

impl WalletThreads {
    /// `count` threads (at least one).
    pub fn start(count: usize) -> Self {
        Self { arbiters: (0..count.max(1)).map(|_| Arbiter::new()).collect() }
    }

    /// Stops the threads and waits for them. Blocking.
    pub fn stop(self) {
        for arbiter in self.arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
    }
}

/// Every live wallet actor, by user.
pub struct WalletDirectory {
    shards: Vec<Mutex<Shard>>,
    threads: Vec<ArbiterHandle>,
    deps: WalletDeps,
    next_id: AtomicU64,
    live: AtomicUsize,
}

impl WalletDirectory {
    pub fn new(deps: WalletDeps, threads: &WalletThreads) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            threads: threads.arbiters.iter().map(Arbiter::handle).collect(),
            deps,
            next_id: AtomicU64::new(1),
            live: AtomicUsize::new(0),
        })
    }

    fn slot(user: &UserId) -> u64 {
        let mut hasher = DefaultHasher::new();
        user.hash(&mut hasher);
        hasher.finish()
    }

    fn shard(&self, slot: u64) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(slot % SHARDS as u64).unwrap_or(0);
        // A panic while holding a shard cannot leave a map half-changed: every change is one call.
        self.shards[index].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user`'s wallet actor, started on one of the wallet threads if there is none.
    pub fn get(self: &Arc<Self>, user: &UserId) -> Addr<WalletActor> {
        let slot = Self::slot(user);
        let mut shard = self.shard(slot);
        if let Some((_, addr)) = shard.get(user) {
            if addr.connected() {
                return addr.clone();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let thread = &self.threads[usize::try_from(slot % self.threads.len() as u64).unwrap_or(0)];
        let (owner, deps, directory) = (user.clone(), self.deps.clone(), Arc::clone(self));
        let addr = WalletActor::start_in_arbiter(thread, move |_| WalletActor::new(owner, id, deps, directory));
        if shard.insert(user.clone(), (id, addr.clone())).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        addr
    }

    /// Removes actor `id` of `user`, if it is still the one listed.
    pub(super) fn retire(&self, user: &UserId, id: u64) -> bool {
        let mut shard = self.shard(Self::slot(user));
        match shard.get(user) {
            Some((listed, _)) if *listed == id => {
                shard.remove(user);
                self.live.fetch_sub(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// How many wallet actors are live.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
