//! The inventory actor: the single owner of the provider balance, `reserved`,
//! the open holds, the revenue, the ledger sequence and the idempotency keys
//! in flight.
//!
//! Every change is decided inside one handler (check, build the new state,
//! queue the writes) so nothing interleaves between the check and the apply:
//! concurrent buyers are serialised here and cannot jointly exceed capacity
//! (SPEC §4.1). The handler does not wait for the disk: it queues the change
//! on the commit loop and goes on deciding; the reply waits for the group
//! commit that makes the change durable (SPEC §4.2). A failed commit turns
//! the engine unready and every later change is refused.
//!
//! Expired holds stop counting at their deadline, and open spends complete
//! when their time runs out: every handler first expires the holds whose
//! `expiresAt` has passed and completes the spends made
//! `spend_complete_after` ago ([`InventoryActor::expire_due`]), and a timer
//! does the same every [`EXPIRY_SWEEP_INTERVAL`] so the ledger records them
//! within a second or so even when nothing else happens.
//!
//! Messages: [`WalletChange`] (from the engine facade: purchase, capture,
//! spend, refund; see `hot.rs` for the wallets it keeps), [`CreateHold`],
//! [`ReleaseHold`], [`HoldOwner`], [`SpendOwner`], [`CompleteSpend`], [`Snapshot`], [`SetPurchasesEnabled`], [`UpdatePackage`] (from the engine
//! facade), [`BeginSync`] and [`ApplySync`] (from the sync actor). Sends
//! `alert::InventoryObserved` after every change and capacity refusal.
//!
//! Files: this one holds the actor, its state and what every decision shares
//! (`check_key`, `commit`, `respond`, the expiry sweep); `change.rs` a change
//! being built; `wallets.rs`, `holds.rs`, `operators.rs` and `api_keys.rs` the
//! messages and their decisions; `view.rs` what the actor publishes.
//!
//! Invariants asserted on every change: `reserved == ratio × (Σ wallets + Σ
//! open holds)`; a sale or hold never leaves `reserved > providerBalance`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

mod api_keys;
mod books;
mod change;
mod holds;
mod hot;
mod operators;
mod spends;
mod view;
mod wallets;

pub use api_keys::{ApiKeys, CreateApiKey, ListApiKeys, RevokeApiKey};
pub use books::Records;
use books::{Books, Inputs};
use change::{ready, Change, Consumption, Decision, Reply};
pub use holds::{CreateHold, HoldOwner, ReleaseHold, ReleaseReceipt, SpendOwner};
pub use hot::{LoadTicket, LoadedWallet};
pub use operators::{
    ApplySync, BeginSync, DurableSequence, PurchasesState, SetPurchasesEnabled, SyncOutcome, SyncToken, UpdatePackage,
};
pub use spends::CompleteSpend;
pub use view::{InventoryView, PackageView, Snapshot, ViewInputs, PACKAGE_UNAVAILABLE};
pub use wallets::{WalletAnswer, WalletChange, WalletCommand, WalletReceipt};

use super::alert::{AlertActor, InventoryObserved};
use super::EngineError;
use crate::actors::setup::{Health, Recovered, Settings};
use crate::clock::Clock;
use crate::domain::{HoldId, PackageId, SpendId};
use crate::store::commit::{CommitFailed, CommitQueue, CommitReceipt};
use crate::store::records::{HoldState, SpendState};
use crate::store::Store;

/// Messages queued for the inventory before senders wait.
const MAILBOX_CAPACITY: usize = 4_096;

/// The metrics label of a purchase of a package that does not exist.
const UNKNOWN_PACKAGE_LABEL: &str = "unknown";

/// How often expired holds are written to the ledger when nothing else happens.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A SHA-256 fingerprint of a canonical request.
pub type Fingerprint = [u8; 32];

pub struct InventoryActor {
    /// What decisions read and change: the state of the books, no IO.
    books: Books,
    store: Store,
    commits: CommitQueue,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    alerts: Addr<AlertActor>,
    /// What the view is made of after the last change, published for the
    /// public reads (catalogue, status) so that they never queue for this
    /// actor (SPEC §9.2).
    views: watch::Sender<Option<Arc<ViewInputs>>>,
}

impl InventoryActor {
    /// Starts from what `engine::recover` found on disk.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        recovered: Recovered,
        settings: &Settings,
        store: Store,
        commits: CommitQueue,
        clock: Arc<dyn Clock>,
        health: Arc<Health>,
        alerts: Addr<AlertActor>,
        keys: ApiKeys,
        views: watch::Sender<Option<Arc<ViewInputs>>>,
    ) -> Self {
        let books = Books::new(recovered, settings, keys, clock.now_ms(), clock.monotonic_ms());
        Self { books, store, commits, clock, health, alerts, views }
    }

    /// What a decision reads now besides the books.
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            now_ms: self.clock.now_ms(),
            monotonic_ms: self.clock.monotonic_ms(),
            writable: !self.health.storage_failed(),
            synced: self.health.synced(),
            records: &self.store,
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

    /// Queues `change`; once queued, its state is the actor's.
    fn commit(&mut self, mut change: Change) -> Result<CommitReceipt, EngineError> {
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
        let sale = change.sale;
        if let Some(record) = change.api_key.take() {
            self.adopt_api_key(record);
        }
        self.books.adopt(change)?;
        self.observe(sale, false);
        self.publish_view();
        Ok(durable)
    }

    /// Publishes what the view is made of, as it stands, for the public reads.
    fn publish_view(&self) {
        self.views.send_replace(Some(Arc::new(self.view_inputs())));
    }

    /// Commits `change` and answers `value` once it is durable.
    fn finish<T: 'static>(&mut self, change: Change, value: T) -> Reply<T> {
        let closing: Vec<HoldId> =
            change.holds.iter().filter(|hold| hold.state != HoldState::Open).map(|hold| hold.hold_id.clone()).collect();
        let closing_spends: Vec<SpendId> = change
            .spends
            .iter()
            .filter(|spend| spend.state != SpendState::Open)
            .map(|spend| spend.spend_id.clone())
            .collect();
        let key = change.key_in_flight.as_ref().map(|(key, _)| key.clone());
        let wallet = change.wallet.as_ref().map(|(user, _)| user.clone());
        let durable = match self.commit(change) {
            Ok(durable) => durable,
            Err(error) => return ready(Err(error)),
        };
        Box::pin(durable.into_actor(self).map(move |result, actor, _| {
            for id in &closing {
                actor.books.closing_holds.remove(id);
            }
            for id in &closing_spends {
                actor.books.closing_spends.remove(id);
            }
            if let Some(key) = &key {
                actor.books.keys_in_flight.remove(key);
            }
            if let Some(user) = &wallet {
                actor.books.wallets.settled(user, actor.clock.monotonic_ms());
            }
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

    fn respond<T: 'static>(&mut self, decision: Result<Decision<T>, EngineError>) -> Reply<T> {
        match decision {
            Err(error) if error.names_a_state() => self.after_durable(Err(error)),
            Err(error) => ready(Err(error)),
            Ok(Decision::Replay(value)) => self.after_durable(Ok(value)),
            Ok(Decision::Apply(change, value)) => self.finish(*change, value),
        }
    }

    /// Expires every open hold whose deadline has passed, as one change, and
    /// completes every open spend whose time has run out, as another.
    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        if self.health.storage_failed() {
            return;
        }
        self.expire_due_holds(ctx);
        self.complete_due_spends(ctx);
    }

    fn complete_due_spends(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.monotonic_ms();
        let due: Vec<SpendId> = self
            .books
            .spend_deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        match self.books.decide_completions(&self.inputs(), &due) {
            Ok(change) => {
                let completed = u64::try_from(change.spends.len()).unwrap_or(u64::MAX);
                metrics::counter!("creditd_spend_completions_total", "by" => "time", "outcome" => "ok")
                    .increment(completed);
                let durable = self.finish(change, ());
                ctx.spawn(durable.map(|_, _, _| ()));
            }
            Err(error) => tracing::error!(%error, "cannot complete spends"),
        }
    }

    fn expire_due_holds(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.monotonic_ms();
        let due: Vec<HoldId> = self
            .books
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        match self.books.decide_expiries(&self.inputs(), &due) {
            Ok(change) => {
                let expired = u64::try_from(change.holds.len()).unwrap_or(u64::MAX);
                metrics::counter!("creditd_holds_total", "operation" => "expire", "outcome" => "ok").increment(expired);
                let durable = self.finish(change, ());
                ctx.spawn(durable.map(|_, _, _| ()));
            }
            Err(error) => tracing::error!(%error, "cannot expire holds"),
        }
    }
}

impl Actor for InventoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.publish_view();
        ctx.run_interval(EXPIRY_SWEEP_INTERVAL, |actor, ctx| actor.expire_due(ctx));
        let idle = Duration::from_millis(self.books.wallets.idle_ms());
        ctx.run_interval(idle / 2, |actor, _| {
            if actor.books.wallets.sweep(actor.clock.monotonic_ms()) > 0 {
                actor.publish_view();
            }
        });
        let every = Duration::from_millis(crate::access::LAST_USED_GRANULARITY_MS);
        ctx.run_interval(every, |actor, _| actor.persist_key_uses());
    }
}
