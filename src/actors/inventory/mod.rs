//! The inventory actor: the one decider. It owns the books
//! ([`crate::decide::Books`]: the provider balance, `reserved`, the open
//! holds and spends, the revenue, the ledger sequence, what is in flight)
//! and only sequences: receive a command with what was read for it, decide
//! ([`crate::decide::decide`]), hand the change to the commit loop, adopt it,
//! answer once it is durable. It never reads the store: a command whose
//! prefetched records moved while it waited goes back to its wallet actor
//! to be read again ([`Decided::Refetch`]).
//!
//! Every change is decided inside one handler, so nothing interleaves
//! between the check and the apply: concurrent buyers are serialised here
//! and cannot jointly exceed capacity (SPEC §4.1). The handler does not wait
//! for the disk: it queues the change on the commit loop and goes on
//! deciding; the reply waits for the group commit that makes the change
//! durable (SPEC §4.2). A failed commit turns the engine unready and every
//! later change is refused.
//!
//! Expired holds stop counting at their deadline, and open spends complete
//! when their time runs out: every handler that decides first expires the
//! holds whose `expiresAt` has passed and completes the spends made
//! `spend_complete_after` ago ([`InventoryActor::expire_due`]), and a timer
//! does the same every [`EXPIRY_SWEEP_INTERVAL`] so that the ledger records
//! them within a second or so even when nothing else happens.
//!
//! Messages: [`Decide`] (from the wallet actors: every command about a
//! user), [`Snapshot`], [`SetPurchasesEnabled`], [`UpdatePackage`],
//! [`CreateApiKey`], [`RevokeApiKey`], [`ListApiKeys`], [`DurableSequence`]
//! (from the engine facade), [`BeginSync`] and [`ApplySync`] (from the sync
//! actor). Sends `alert::InventoryObserved` after every change and capacity
//! refusal.
//!
//! Files: this one holds the actor and what every message shares
//! (`commit`, `finish`, `respond`, the expiry sweep); `messages.rs` the
//! handlers; `view.rs` what the actor publishes.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

mod messages;
mod view;

pub use crate::decide::{
    ApplySync, CreateApiKey, Fingerprint, PurchasesState, ReleaseReceipt, RevokeApiKey, SetPurchasesEnabled,
    SyncOutcome, SyncToken, UpdatePackage, UserCommand, UserReceipt,
};
pub use messages::{BeginSync, Decide, Decided, DueGrants, DurableSequence, ListApiKeys};
pub use view::{InventoryView, PackageView, Snapshot, ViewInputs, PACKAGE_UNAVAILABLE};

use super::alert::{AlertActor, InventoryObserved};
use super::EngineError;
use crate::access::KeyRing;
use crate::actors::setup::Health;
use crate::clock::Clock;
use crate::decide::{Books, Change, Consumption, Decision, Now};
use crate::domain::PackageId;
use crate::store::commit::{CommitFailed, CommitQueue, CommitReceipt};

/// Messages queued for the inventory before senders wait.
const MAILBOX_CAPACITY: usize = 4_096;

/// The metrics label of a purchase of a package that does not exist.
const UNKNOWN_PACKAGE_LABEL: &str = "unknown";

/// How often expired holds are written to the ledger when nothing else happens.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// An answer that waits for the commit loop.
pub type Reply<T> = ResponseActFuture<InventoryActor, Result<T, EngineError>>;

fn ready<T: 'static>(result: Result<T, EngineError>) -> Reply<T> {
    Box::pin(fut::ready(result))
}

pub struct InventoryActor {
    /// What decisions read and change: the state of the books, no IO.
    books: Books,
    commits: CommitQueue,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    alerts: Addr<AlertActor>,
    /// What the view is made of after the last change, published for the
    /// public reads (catalogue, status) so that they never queue for this
    /// actor (SPEC §9.2).
    views: watch::Sender<Option<Arc<ViewInputs>>>,
    /// The live API keys, published after every key change for the HTTP
    /// layer to authenticate against without a message.
    ring: watch::Sender<Arc<KeyRing>>,
}

impl InventoryActor {
    /// Starts from the books `engine::recover` found on disk.
    pub fn new(
        books: Books,
        commits: CommitQueue,
        clock: Arc<dyn Clock>,
        health: Arc<Health>,
        alerts: Addr<AlertActor>,
        views: watch::Sender<Option<Arc<ViewInputs>>>,
        ring: watch::Sender<Arc<KeyRing>>,
    ) -> Self {
        Self { books, commits, clock, health, alerts, views, ring }
    }

    /// The time and health a decision reads.
    fn now(&self) -> Now {
        Now {
            now_ms: self.clock.now_ms(),
            monotonic_ms: self.clock.monotonic_ms(),
            writable: !self.health.storage_failed(),
            synced: self.health.synced(),
        }
    }

    /// Tells the alert actor how the inventory stands (only once it has synced:
    /// before that the balance is not known).
    fn observe(&self, sale: bool, refused_for_capacity: bool) {
        if !self.health.synced() {
            return;
        }
        let capacity = self.books.capacity();
        self.alerts.do_send(InventoryObserved {
            available: capacity.available(),
            provider_balance: capacity.provider_balance,
            reserved: capacity.reserved,
            overcommitted: capacity.overcommitted(),
            capacity: capacity.user_credits(),
            purchases_enabled: self.books.state.purchases_enabled,
            disabled_reason: self.books.state.disabled_reason.clone(),
            sale,
            refused_for_capacity,
        });
    }

    /// Reports a refusal for capacity to the alerts, then passes the decision on.
    fn note_refusal<T>(&self, decision: Result<T, EngineError>) -> Result<T, EngineError> {
        if matches!(decision, Err(EngineError::InsufficientCapacity)) {
            metrics::counter!("creditd_capacity_refusals_total").increment(1);
            self.observe(false, true);
        }
        decision
    }

    /// The `package` label of a purchase: a configured package's id, or
    /// `unknown`, so that request input never makes a new metric series.
    fn package_label(&self, package_id: &PackageId) -> String {
        match self.books.packages.iter().find(|package| &package.id == package_id) {
            Some(package) => package.id.to_string(),
            None => UNKNOWN_PACKAGE_LABEL.to_owned(),
        }
    }

    /// Queues `change`, makes it the books' state, and answers its receipt
    /// with what it touched.
    fn commit(&mut self, mut change: Change) -> Result<(CommitReceipt, crate::decide::Touched), EngineError> {
        self.books.assert_invariants(&change.next);
        change.writes.inventory(change.next.clone());
        let durable = self.commits.submit(std::mem::take(&mut change.writes))?;
        let earned = change.next.revenue.minor_units().saturating_sub(self.books.state.revenue.minor_units());
        if earned > 0 {
            let currency = change.next.revenue.currency().to_string();
            metrics::counter!("creditd_revenue_minor_units_total", "currency" => currency).increment(earned);
        }
        match change.consumption {
            Consumption::Spent(credits) => {
                metrics::counter!("creditd_consumed_provider_credits_total").increment(credits.get());
            }
            Consumption::Refunded(credits) => {
                metrics::counter!("creditd_refunded_provider_credits_total").increment(credits.get());
            }
            Consumption::Completed(_) | Consumption::None => {}
        }
        let (sale, key_changed) = (change.sale, change.api_key.is_some());
        let touched = self.books.adopt(change)?;
        if key_changed {
            self.ring.send_replace(Arc::new(KeyRing::new(self.books.keys.live())));
        }
        self.observe(sale, false);
        self.publish_view();
        Ok((durable, touched))
    }

    /// Publishes what the view is made of, as it stands, for the public reads.
    fn publish_view(&self) {
        self.views.send_replace(Some(Arc::new(self.view_inputs())));
    }

    /// Commits `change` and answers `value` once it is durable.
    fn finish<T: 'static>(&mut self, change: Change, value: T) -> Reply<T> {
        let (durable, touched) = match self.commit(change) {
            Ok(committed) => committed,
            Err(error) => return ready(Err(error)),
        };
        Box::pin(durable.into_actor(self).map(move |result, actor, _| {
            actor.books.settle(&touched, actor.clock.monotonic_ms());
            actor.durable(result).map(|()| value)
        }))
    }

    /// What a commit receipt means for the request waiting on it.
    fn durable(&self, receipt: Result<Result<(), CommitFailed>, oneshot::error::RecvError>) -> Result<(), EngineError> {
        let failure = match receipt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(CommitFailed::NotApplied(reason))) => EngineError::Storage(reason),
            Ok(Err(CommitFailed::Unconfirmed(reason))) => EngineError::OutcomeUnknown(reason),
            Err(_) => EngineError::OutcomeUnknown("the commit loop stopped".into()),
        };
        self.health.mark_storage_failed();
        Err(failure)
    }

    /// Answers `answer` once every change queued so far is durable: a replay
    /// (or a refusal that names a state) repeats what an earlier change
    /// decided, and may not be said before that change is on disk (SPEC §9).
    /// If the wait fails, the earlier change may or may not be applied.
    fn after_durable<T: 'static>(&mut self, answer: Result<T, EngineError>) -> Reply<T> {
        let barrier = match self.commits.barrier() {
            Ok(barrier) => barrier,
            Err(error) => return ready(Err(error.into())),
        };
        Box::pin(barrier.into_actor(self).map(move |result, actor, _| match actor.durable(result) {
            Ok(()) => answer,
            Err(EngineError::Storage(reason) | EngineError::OutcomeUnknown(reason)) => {
                Err(EngineError::OutcomeUnknown(format!("the change this answer repeats: {reason}")))
            }
            Err(other) => Err(other),
        }))
    }

    /// Answers a decision: a change once durable, a replay (and a refusal
    /// that names a state) after a barrier, a refetch or another refusal at once.
    fn respond<T: 'static>(&mut self, decision: Result<Decision<T>, EngineError>, refetch: Option<T>) -> Reply<T> {
        match decision {
            Err(error) if error.names_a_state() => self.after_durable(Err(error)),
            Err(error) => ready(Err(error)),
            Ok(Decision::Replay(value)) => self.after_durable(Ok(value)),
            Ok(Decision::Apply(change, value)) => self.finish(*change, value),
            Ok(Decision::Refetch) => ready(refetch.ok_or(EngineError::Stale)),
        }
    }

    /// Expires every open hold whose deadline has passed, as one change, and
    /// completes every open spend whose time has run out, as another.
    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        if self.health.storage_failed() {
            return;
        }
        let now = self.now();
        let due = self.books.due_holds(now.monotonic_ms);
        if !due.is_empty() {
            match self.books.decide_expiries(&now, &due) {
                Ok(change) => {
                    let expired = u64::try_from(change.holds.len()).unwrap_or(u64::MAX);
                    metrics::counter!("creditd_holds_total", "operation" => "expire", "outcome" => "ok")
                        .increment(expired);
                    ctx.spawn(self.finish(change, ()).map(|_, _, _| ()));
                }
                Err(error) => tracing::error!(%error, "cannot expire holds"),
            }
        }
        let due = self.books.due_spends(now.monotonic_ms);
        if !due.is_empty() {
            match self.books.decide_completions(&now, &due) {
                Ok(change) => {
                    let completed = u64::try_from(change.spends.len()).unwrap_or(u64::MAX);
                    metrics::counter!("creditd_spend_completions_total", "by" => "time", "outcome" => "ok")
                        .increment(completed);
                    ctx.spawn(self.finish(change, ()).map(|_, _, _| ()));
                }
                Err(error) => tracing::error!(%error, "cannot complete spends"),
            }
        }
    }

    /// Writes the API key uses noted since the last time (a write per key
    /// and minute at most, outside the ledger).
    fn persist_key_uses(&mut self) {
        if self.health.storage_failed() {
            return;
        }
        let used = self.books.keys.unsaved_uses();
        if used.is_empty() {
            return;
        }
        let mut writes = crate::store::WriteSet::default();
        for record in &used {
            writes.api_key(record.clone());
        }
        // Not awaited: nobody is told, and a lost minute of `lastUsedAt` is harmless.
        if self.commits.submit(writes).is_ok() {
            self.books.keys.saved(used);
        }
    }
}

impl Actor for InventoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.publish_view();
        ctx.run_interval(EXPIRY_SWEEP_INTERVAL, |actor, ctx| {
            actor.expire_due(ctx);
            actor.books.prune_settled(actor.clock.monotonic_ms());
        });
        let every = Duration::from_millis(crate::access::LAST_USED_GRANULARITY_MS);
        ctx.run_interval(every, |actor, _| actor.persist_key_uses());
    }
}
