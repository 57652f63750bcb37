//! Where a user's wallet actor is found: a map from user to actor, split in
//! [`SHARDS`] independently locked shards, so that requests for different
//! users almost never wait for one another and no lock is global. A lock is
//! held only to look up, insert or remove one entry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use actix::prelude::*;

use super::{Retire, WalletActor, WalletDeps};
use crate::domain::UserId;

/// Independently locked parts of the directory.
const SHARDS: usize = 64;

/// In [`Entry::used`] while the actor serves a request.
pub(super) const BUSY: u64 = u64::MAX;

struct Entry {
    addr: Addr<WalletActor>,
    /// When the actor last finished a request (monotonic ms), or [`BUSY`]:
    /// written by the actor, read by the sweep.
    used: Arc<AtomicU64>,
}

type Shard = HashMap<UserId, Entry>;

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
    deps: Arc<WalletDeps>,
    live: AtomicUsize,
}

impl WalletDirectory {
    /// The directory, and its sweep on the first wallet thread: every quarter
    /// idle period, the actors idle for `deps.idle` leave the directory and
    /// are told to retire (one timer for all of them, none per actor).
    pub fn new(deps: WalletDeps, threads: &WalletThreads) -> Arc<Self> {
        let directory = Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            threads: threads.arbiters.iter().map(Arbiter::handle).collect(),
            deps: Arc::new(deps),
            live: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&directory);
        // Every quarter idle period: an actor lives from `idle` to 1¼ × `idle` after its last request.
        let every = (directory.deps.idle / 4).max(std::time::Duration::from_millis(1));
        directory.threads[0].spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(directory) = Weak::upgrade(&weak) else { return };
                directory.sweep();
            }
        });
        directory
    }

    /// Retires every actor idle for the idle period: out of the directory
    /// first (the next request for its user starts a new actor), then told
    /// to stop. A request that reached it meanwhile is served before the
    /// [`Retire`] (its mailbox is in order); one still queued behind it fails
    /// `Closed` unserved, and is sent to the new actor.
    pub fn sweep(&self) -> usize {
        let idle_ms = u64::try_from(self.deps.idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.deps.clock.monotonic_ms();
        let mut retired = 0;
        for shard in &self.shards {
            let mut idle = Vec::new();
            shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, entry| {
                let used = entry.used.load(Ordering::Acquire);
                let keep = used == BUSY || now.saturating_sub(used) < idle_ms;
                if !keep {
                    idle.push(entry.addr.clone());
                }
                keep
            });
            retired += idle.len();
            for addr in idle {
                addr.do_send(Retire);
            }
        }
        self.live.fetch_sub(retired, Ordering::Relaxed);
        retired
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
        if let Some(entry) = shard.get(user) {
            if entry.addr.connected() {
                return entry.addr.clone();
            }
        }
        let used = Arc::new(AtomicU64::new(self.deps.clock.monotonic_ms()));
        let actor = WalletActor::new(user.clone(), Arc::clone(&self.deps), Arc::clone(&used));
        let thread = &self.threads[usize::try_from(slot % self.threads.len() as u64).unwrap_or(0)];
        let addr = WalletActor::start_in_arbiter(thread, move |_| actor);
        if shard.insert(user.clone(), Entry { addr: addr.clone(), used }).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        addr
    }

    /// Runs `read` on a wallet thread (where the wallet actors read: at once
    /// on sled, on a blocking thread on PostgreSQL), never on the caller's.
    ///
    /// # Errors
    /// The read's error, or `Overloaded` when the wallet thread is gone.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&crate::store::Store) -> Result<T, crate::decide::EngineError> + Send + 'static,
    ) -> Result<T, crate::decide::EngineError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let store = self.deps.store.clone();
        let spawned = self.threads[0].spawn(async move {
            let result = if store.reads_locally() {
                read(&store)
            } else {
                match tokio::task::spawn_blocking(move || read(&store)).await {
                    Ok(result) => result,
                    Err(_) => Err(crate::decide::EngineError::Overloaded("the read was cancelled")),
                }
            };
            let _ = answer.send(result);
        });
        if !spawned {
            return Err(crate::decide::EngineError::Overloaded("the wallet threads stopped"));
        }
        answered.await.map_err(|_| crate::decide::EngineError::Overloaded("the read was cancelled"))?
    }

    /// How many wallet actors are live.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
