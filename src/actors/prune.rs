//! `PruneActor`: forgets idempotency records older than
//! `idempotency_retention_hours` (SPEC §9.2), in the background.
//!
//! It walks the ledger from where it stopped last time (the cursor `r`):
//! entries are in time order, so the records to forget are those of the
//! entries before the first one younger than the retention, and a pass
//! reads only what it prunes. The removals and the new cursor go through the
//! commit loop in batches of [`PRUNE_BATCH`], beside the purchases, never
//! ahead of them; the ledger keeps every key forever. The reading runs on a
//! blocking thread, never on an actor's.
//!
//! Messages: [`PruneNow`] (from the engine facade and its own timer).

use std::time::Duration;

use actix::prelude::*;

use crate::clock::Clock;
use crate::store::commit::CommitQueue;
use crate::store::records::PruneCursor;
use crate::store::{Store, StoreError, Write, WriteSet};

/// How often a pass runs.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// Ledger entries read, and records removed at most, per durable batch.
pub const PRUNE_BATCH: usize = 1_000;

pub struct PruneActor {
    store: Store,
    commits: CommitQueue,
    clock: std::sync::Arc<dyn Clock>,
    retention: Duration,
    /// A pass is under way: a second one waits for the next tick.
    running: bool,
}

impl PruneActor {
    pub fn new(store: Store, commits: CommitQueue, clock: std::sync::Arc<dyn Clock>, retention: Duration) -> Self {
        Self { store, commits, clock, retention, running: false }
    }
}

impl Actor for PruneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(PRUNE_INTERVAL, |actor, ctx| {
            if !actor.running {
                ctx.notify(PruneNow);
            }
        });
    }
}

/// Run a pass now; answers how many records it forgot.
#[derive(Debug, Clone, Copy)]
pub struct PruneNow;

impl Message for PruneNow {
    type Result = Result<u64, StoreError>;
}

impl Handler<PruneNow> for PruneActor {
    type Result = ResponseActFuture<Self, Result<u64, StoreError>>;

    fn handle(&mut self, _: PruneNow, _: &mut Self::Context) -> Self::Result {
        self.running = true;
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = self.clock.now_ms().saturating_sub(retention_ms);
        let (store, commits) = (self.store.clone(), self.commits.clone());
        let pass = tokio::task::spawn_blocking(move || prune(&store, &commits, cutoff_ms));
        Box::pin(pass.into_actor(self).map(|joined, actor, _| {
            actor.running = false;
            let pruned = joined.map_err(|_| StoreError::Failed)?;
            if let Ok(count) = &pruned {
                metrics::counter!("creditd_idempotency_pruned_total").increment(*count);
            }
            pruned
        }))
    }
}

/// Forgets the idempotency records of the ledger entries written before
/// `cutoff_ms`, from the stored cursor on; returns how many. Blocking.
///
/// # Errors
/// A read failure, or the commit loop refused or failed a batch.
pub fn prune(store: &Store, commits: &CommitQueue, cutoff_ms: u64) -> Result<u64, StoreError> {
    let mut cursor = store.prune_cursor()?.map_or(0, |cursor| cursor.last_seq);
    let mut pruned = 0u64;
    loop {
        let page = store.ledger_page(cursor, PRUNE_BATCH)?;
        let mut writes = WriteSet::default();
        let mut reached_the_window = page.len() < PRUNE_BATCH;
        let start = cursor;
        for entry in &page {
            if entry.at_ms >= cutoff_ms {
                reached_the_window = true;
                break;
            }
            if let (Some(operation), Some(key)) = (entry.kind.operation(), &entry.idempotency_key) {
                writes.push(Write::Forget { operation, caller: entry.caller.clone(), key: key.clone() });
                pruned = pruned.saturating_add(1);
            }
            cursor = entry.seq;
        }
        if cursor == start {
            return Ok(pruned);
        }
        writes.push(Write::PruneCursor(PruneCursor { last_seq: cursor }));
        match commits.submit(writes)?.blocking_recv() {
            Ok(Ok(())) => {}
            Ok(Err(failed)) => return Err(StoreError::Unconfirmed(format!("pruning: {failed}"))),
            Err(_) => return Err(StoreError::Failed),
        }
        if reached_the_window {
            return Ok(pruned);
        }
    }
}
