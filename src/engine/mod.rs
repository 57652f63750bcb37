//! The engine: recovery at start-up, the actors and the commit loop wired
//! together, and the one facade (`Engine`) the HTTP layer talks to.

mod start;

pub use crate::actors::setup::{Health, Recovered, Settings, REQUEST_TIMEOUT};
pub use start::{init, recover, StartError};

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::alert::{AlertActor, AlertSettings, AlertsView, ListAlerts};
use crate::actors::inventory::{
    CreateApiKey, DueGrants, DurableSequence, Fingerprint, InventoryActor, InventoryView, ListApiKeys, PurchasesState,
    ReleaseReceipt, RevokeApiKey, SetPurchasesEnabled, Snapshot, UpdatePackage, UserCommand, UserReceipt,
};
use crate::actors::prune::{PruneActor, PruneNow};
use crate::actors::sync::{SyncActor, SyncError, SyncNow, SyncReport, SyncState, SyncStatus};
use crate::actors::wallet::{ReadWallet, Run, WalletDeps, WalletDirectory, WalletPage, WalletThreads};
use crate::actors::webhook::WebhookActor;
use crate::actors::EngineError;
use crate::clock::Clock;
use crate::decide::Books;
use crate::domain::report::{report, GrantsReport, Report, ReportInput, WEEK_MS};
use crate::domain::{
    Caller, GrantId, HoldId, KeyId, KeyName, Package, PackageId, Reason, ScopedKey, Scopes, SpendId, UserCredits,
    UserId,
};
use crate::provider::NanoBananaClient;
use crate::store::commit::CommitQueue;
use crate::store::records::{
    ApiKeyRecord, CaptureReceipt, CompletionReceipt, GrantReceipt, HoldReceipt, LedgerEntry, PurchaseReceipt,
    RefundReceipt, SpendReceipt, VoidReceipt,
};
use crate::store::Store;

/// How often a request is sent again to a user's wallet actor that retired
/// before it took the request (it never started on it).
const WALLET_ATTEMPTS_MAX: usize = 4;

fn timed_out() -> EngineError {
    EngineError::Overloaded("the engine did not answer in time")
}

/// A change request that gave up waiting: the change may have been decided
/// and queued, so nothing may be promised (SPEC §9 `outcome_unknown`).
fn change_timed_out() -> EngineError {
    EngineError::OutcomeUnknown("no answer in time; retry with the same Idempotency-Key to learn the outcome".into())
}

/// The inventory answered a command with another command's receipt: a bug.
fn unexpected(receipt: &UserReceipt) -> EngineError {
    EngineError::Storage(format!("unexpected receipt {receipt:?}"))
}

/// Threads for the wallet actors: half the cores, at least one (on two
/// cores, one wallet thread beside the two HTTP workers, the inventory and
/// the commit loop measured fastest: BENCHMARKS.md, issue 25).
fn wallet_thread_count() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// The facade the HTTP layer uses. Cheap to clone into every worker.
#[derive(Clone)]
pub struct Engine {
    inventory: Addr<InventoryActor>,
    sync: Option<Addr<SyncActor>>,
    alerts: Addr<AlertActor>,
    store: Store,
    health: Arc<Health>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    /// The live API keys, as the inventory last published them.
    keys: tokio::sync::watch::Receiver<Arc<crate::access::KeyRing>>,
    pruner: Addr<PruneActor>,
    /// The per-user wallet actors.
    wallets: Arc<WalletDirectory>,
    /// What the inventory's view is made of after its last change (`None` until it started).
    views: tokio::sync::watch::Receiver<Option<Arc<crate::actors::inventory::ViewInputs>>>,
}

/// The threads behind an engine, stopped by [`EngineThreads::stop`].
pub struct EngineThreads {
    /// Stopped in order: the operations (sync, alerts, webhook), then the engine.
    arbiters: Vec<Arbiter>,
    /// The wallet actors' threads, stopped first.
    wallet_threads: WalletThreads,
    commit_thread: JoinHandle<()>,
    store: Store,
}

impl EngineThreads {
    /// Stops the actors, lets the commit loop finish what it holds, and
    /// flushes once more. Blocking: call it off the async workers.
    pub fn stop(self) {
        self.wallet_threads.stop();
        for arbiter in self.arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
        let _ = self.commit_thread.join();
        if let Err(error) = self.store.sync() {
            tracing::error!(%error, "final flush failed");
        }
    }
}

impl Engine {
    /// Starts the actors on their own arbiter and the commit loop on its own
    /// thread. Must run inside an actix system.
    ///
    /// # Errors
    /// The commit thread could not be spawned.
    pub fn start(
        recovered: Recovered,
        settings: Settings,
        store: Store,
        clock: Arc<dyn Clock>,
        provider: Option<(NanoBananaClient, Duration)>,
    ) -> Result<(Self, EngineThreads), StartError> {
        let last_seq = recovered.state.next_seq.saturating_sub(1);
        let (commits, commit_thread) = CommitQueue::start(store.clone(), settings.commit_mode, last_seq)?;
        let visible = commits.visible();
        let health = Arc::new(Health::default());
        let engine_arbiter = Arbiter::new();
        let operations_arbiter = Arbiter::new();
        let webhook = match &settings.alert_webhook_url {
            Some(url) => {
                if settings.alert_webhook_secret.is_none() {
                    tracing::warn!("CREDITD_ALERT_WEBHOOK_SECRET is not set: alert webhooks are sent unsigned");
                }
                let actor = WebhookActor::new(url.clone(), settings.alert_webhook_secret.clone())
                    .map_err(|error| StartError::Invariant(error.to_string()))?;
                Some(WebhookActor::start_in_arbiter(&operations_arbiter.handle(), move |_| actor))
            }
            None => None,
        };
        let alert_settings = AlertSettings {
            levels: settings.levels,
            stale_after: settings.sync_stale_after,
            blocked_clear_after: settings.alert_blocked_clear_after,
        };
        let alert_actor = AlertActor::load(&store, commits.clone(), Arc::clone(&clock), alert_settings, webhook)?;
        // Beside the inventory: it is told about every change, and a message
        // on the same thread costs no wakeup of another.
        let alerts = AlertActor::start_in_arbiter(&engine_arbiter.handle(), move |_| alert_actor);
        let pruner = {
            let (store, commits, clock, retention) =
                (store.clone(), commits.clone(), Arc::clone(&clock), settings.idempotency_retention);
            PruneActor::start_in_arbiter(&operations_arbiter.handle(), move |_| {
                PruneActor::new(store, commits, clock, retention)
            })
        };
        let books = Books::new(recovered, settings.rules(), clock.now_ms(), clock.monotonic_ms());
        let (ring, keys) = tokio::sync::watch::channel(Arc::new(crate::access::KeyRing::new(books.keys.live())));
        let (published, views) = tokio::sync::watch::channel(None);
        let inventory = {
            let (health, clock, alerts) = (Arc::clone(&health), Arc::clone(&clock), alerts.clone());
            InventoryActor::start_in_arbiter(&engine_arbiter.handle(), move |_| {
                InventoryActor::new(books, commits, clock, health, alerts, published, ring)
            })
        };
        let wallet_threads = WalletThreads::start(wallet_thread_count());
        let wallets = WalletDirectory::new(
            WalletDeps {
                store: store.clone(),
                inventory: inventory.clone(),
                visible,
                clock: Arc::clone(&clock),
                idle: settings.wallet_idle,
            },
            &wallet_threads,
        );
        let engine_clock = Arc::clone(&clock);
        let sync = provider.map(|(client, interval)| {
            let (inventory, alerts) = (inventory.clone(), alerts.clone());
            SyncActor::start_in_arbiter(&operations_arbiter.handle(), move |_| {
                SyncActor::new(client, inventory, alerts, clock, interval)
            })
        });
        let engine = Self {
            inventory,
            sync,
            alerts,
            store: store.clone(),
            health,
            settings: Arc::new(settings),
            clock: engine_clock,
            keys,
            views,
            pruner,
            wallets,
        };
        operations_arbiter.spawn(sweep_grants(engine.clone()));
        let arbiters = vec![operations_arbiter, engine_arbiter];
        Ok((engine, EngineThreads { arbiters, wallet_threads, commit_thread, store }))
    }

    /// Wall time now, by the engine's clock (what answers about expiry use).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn inventory(&self) -> &Addr<InventoryActor> {
        &self.inventory
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The same health, shared (a cluster node's lease keeper watches it).
    pub fn health_handle(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs `command` through `user`'s wallet actor, which reads what it
    /// needs and hands it to the inventory. An actor that retired before it
    /// took the command never started on it: the command goes to its successor.
    async fn on_user(&self, user: &UserId, command: UserCommand) -> Result<UserReceipt, EngineError> {
        for _ in 0..WALLET_ATTEMPTS_MAX {
            let actor = self.wallets.get(user);
            match actor.send(Run(command.clone())).timeout(self.settings.request_timeout).await {
                Ok(outcome) => return outcome,
                Err(MailboxError::Closed) => {}
                Err(MailboxError::Timeout) => return Err(change_timed_out()),
            }
        }
        Err(EngineError::Overloaded("the user's wallet actor kept retiring"))
    }

    /// The user of hold `id`, as stored (an id is handed out only once its hold is durable).
    async fn hold_user(&self, id: &HoldId) -> Result<UserId, EngineError> {
        let id = id.clone();
        let read = move |store: &Store| Ok(store.hold(&id)?.ok_or(EngineError::UnknownHold(id))?.user);
        self.wallets.read(read).await
    }

    /// The user of spend `id`, as stored (an id is handed out only once its spend is durable).
    async fn spend_user(&self, id: &SpendId) -> Result<UserId, EngineError> {
        let id = id.clone();
        let read = move |store: &Store| Ok(store.spend(&id)?.ok_or(EngineError::UnknownSpend(id))?.user);
        self.wallets.read(read).await
    }

    /// Asks the inventory a question that changes nothing.
    async fn ask<M>(&self, message: M) -> Result<M::Result, EngineError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        InventoryActor: Handler<M>,
    {
        self.inventory.send(message).timeout(self.settings.request_timeout).await.map_err(|_| timed_out())
    }

    /// Asks the inventory for a change: if no answer comes, the change may
    /// still have been made.
    async fn change<M>(&self, message: M) -> Result<M::Result, EngineError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        InventoryActor: Handler<M>,
    {
        self.inventory.send(message).timeout(self.settings.request_timeout).await.map_err(|_| change_timed_out())
    }

    /// Buys `package_id` for `user` (SPEC §5), exactly once per `key`.
    ///
    /// # Errors
    /// The engine's refusal, or 503-class errors when it cannot answer.
    pub async fn purchase(
        &self,
        user: UserId,
        package_id: PackageId,
        key: ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<PurchaseReceipt, EngineError> {
        match self.on_user(&user, UserCommand::Purchase { package_id, key, fingerprint }).await? {
            UserReceipt::Purchase(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Reserves `package_id` for `user` for `ttl_ms` (SPEC §5, holds).
    ///
    /// # Errors
    /// The engine's refusal, or 503-class errors when it cannot answer.
    pub async fn create_hold(
        &self,
        user: UserId,
        package_id: PackageId,
        ttl_ms: u64,
        key: Option<ScopedKey>,
        fingerprint: Fingerprint,
        owner: KeyId,
    ) -> Result<HoldReceipt, EngineError> {
        match self.on_user(&user, UserCommand::Hold { package_id, ttl_ms, key, fingerprint, owner }).await? {
            UserReceipt::Hold(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Turns an open hold into wallet credits; a second capture gets the first answer.
    ///
    /// # Errors
    /// `UnknownHold`, `HoldReleased`, `HoldExpired`, or 503-class errors.
    pub async fn capture(&self, hold_id: HoldId, by: Caller) -> Result<CaptureReceipt, EngineError> {
        let user = self.hold_user(&hold_id).await?;
        match self.on_user(&user, UserCommand::Capture { hold_id, by }).await? {
            UserReceipt::Capture(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Returns an open hold's capacity; a second release gets the first answer.
    ///
    /// # Errors
    /// `UnknownHold`, `HoldCaptured`, `HoldExpired`, or 503-class errors.
    pub async fn release(&self, hold_id: HoldId, by: Caller) -> Result<ReleaseReceipt, EngineError> {
        let user = self.hold_user(&hold_id).await?;
        match self.on_user(&user, UserCommand::Release { hold_id, by }).await? {
            UserReceipt::Release(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Spends `credits` of `user`'s wallet (SPEC §5), exactly once per `key`.
    ///
    /// # Errors
    /// `UnknownUser`, `InsufficientFunds`, `EnhancementUnavailable`, or 503-class errors.
    pub async fn spend(
        &self,
        user: UserId,
        credits: UserCredits,
        reason: Option<Reason>,
        key: ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<SpendReceipt, EngineError> {
        match self.on_user(&user, UserCommand::Spend { credits, reason, key, fingerprint }).await? {
            UserReceipt::Spend(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// The provider did the work: makes an open spend final; a completed
    /// one answers the same again.
    ///
    /// # Errors
    /// `UnknownSpend`, `AlreadyRefunded`, or 503-class errors.
    pub async fn complete(&self, spend_id: SpendId, by: Caller) -> Result<CompletionReceipt, EngineError> {
        let user = self.spend_user(&spend_id).await?;
        match self.on_user(&user, UserCommand::Complete { spend_id, by }).await? {
            UserReceipt::Complete(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Undoes an open spend, once.
    ///
    /// # Errors
    /// `UnknownSpend`, `AlreadyRefunded`, `SpendCompleted`, or 503-class errors.
    pub async fn refund(&self, spend_id: SpendId, by: Caller) -> Result<RefundReceipt, EngineError> {
        let user = self.spend_user(&spend_id).await?;
        match self.on_user(&user, UserCommand::Refund { spend_id, by }).await? {
            UserReceipt::Refund(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// An admin's promotional grant of `credits` to `user` (SPEC §13),
    /// exactly once per `key`.
    ///
    /// # Errors
    /// `InsufficientCapacity`, `GrantClosed` (an `expiresAt` already past),
    /// or 503-class errors.
    pub async fn grant(
        &self,
        user: UserId,
        credits: UserCredits,
        expires_at_ms: Option<u64>,
        reason: Reason,
        key: ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<GrantReceipt, EngineError> {
        match self.on_user(&user, UserCommand::Grant { credits, expires_at_ms, reason, key, fingerprint }).await? {
            UserReceipt::Grant(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Voids grant `grant` (SPEC §13); voiding it again answers the first void.
    ///
    /// # Errors
    /// `UnknownGrant`, `GrantClosed` (it expired), or 503-class errors.
    pub async fn void_grant(&self, grant: GrantId, reason: Reason) -> Result<VoidReceipt, EngineError> {
        // The id names the ledger entry that made the grant, and so its user.
        let read = move |store: &Store| {
            let entry = store.ledger_entry(grant.0)?.ok_or(EngineError::UnknownGrant(grant))?;
            let user = entry.user.clone().ok_or(EngineError::UnknownGrant(grant))?;
            crate::decide::granted_by(&entry, &user).ok_or(EngineError::UnknownGrant(grant))?;
            Ok((user, entry))
        };
        let (user, origin) = self.wallets.read(read).await?;
        let command = UserCommand::Void { grant, reason, origin: Some(Arc::new(origin)) };
        match self.on_user(&user, command).await? {
            UserReceipt::Void(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Closes `user`'s grants past their `expiresAt`; answers how many.
    ///
    /// # Errors
    /// 503-class errors.
    pub async fn expire_grants(&self, user: &UserId) -> Result<usize, EngineError> {
        match self.on_user(user, UserCommand::ExpireGrants).await? {
            UserReceipt::Expired(closed) => Ok(closed),
            other => Err(unexpected(&other)),
        }
    }

    /// The catalogue, capacity and status as of now.
    ///
    /// # Errors
    /// 503-class errors when the inventory cannot answer.
    pub async fn snapshot(&self) -> Result<InventoryView, EngineError> {
        self.ask(Snapshot).await
    }

    /// The view the inventory published after its last change, for the
    /// public reads (SPEC §9.2): no message, so any number of them never
    /// delays a purchase. A hold past its deadline shows until the next
    /// change or the expiry sweep (within [`crate::actors::inventory::EXPIRY_SWEEP_INTERVAL`]).
    ///
    /// # Errors
    /// As [`Engine::snapshot`], before the first publication.
    pub async fn published_view(&self) -> Result<InventoryView, EngineError> {
        let published = self.views.borrow().clone();
        match published {
            Some(inputs) => Ok(InventoryView::of(&inputs, self.health.ready())),
            None => self.snapshot().await,
        }
    }

    /// A user's wallet and their `limit` most recent ledger entries, as
    /// the user's wallet actor serves them (after the user's changes in flight).
    ///
    /// # Errors
    /// [`EngineError::UnknownUser`] for a user who never had a wallet.
    pub async fn user_credits(&self, user: UserId, limit: usize) -> Result<WalletPage, EngineError> {
        for _ in 0..WALLET_ATTEMPTS_MAX {
            let actor = self.wallets.get(&user);
            match actor.send(ReadWallet { limit }).timeout(self.settings.request_timeout).await {
                Ok(page) => return page,
                Err(MailboxError::Closed) => {}
                Err(MailboxError::Timeout) => return Err(timed_out()),
            }
        }
        Err(EngineError::Overloaded("the user's wallet actor kept retiring"))
    }

    /// Ledger entries after `after`, in order.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, EngineError> {
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || store.ledger_page(after, limit).map_err(EngineError::from));
        read.await.map_err(|_| EngineError::Overloaded("the read was cancelled"))?
    }

    /// The last ledger sequence number, once everything up to it is durable.
    ///
    /// # Errors
    /// 503-class errors.
    pub async fn durable_sequence(&self) -> Result<u64, EngineError> {
        self.ask(DurableSequence).await?
    }

    /// Up to `limit` ledger entries with `after < seq <= up_to`, each with the
    /// fingerprint of the request behind its idempotency key, for a backup.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn backup_page(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<(LedgerEntry, Option<Fingerprint>)>, EngineError> {
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            let mut page = Vec::new();
            for entry in store.ledger_page(after, limit)? {
                if entry.seq > up_to {
                    break;
                }
                let fingerprint = store.fingerprint_of(&entry)?;
                page.push((entry, fingerprint));
            }
            Ok(page)
        });
        read.await.map_err(|_| EngineError::Overloaded("the read was cancelled"))?
    }

    /// Syncs with the provider now (an operator's "Sync Real Credits").
    ///
    /// # Errors
    /// Why the sync failed; `NotReady` when this engine has no provider.
    pub async fn sync_now(&self) -> Result<SyncReport, SyncError> {
        let sync = self.sync.as_ref().ok_or(EngineError::NotReady("no provider configured"))?;
        // A sync waits for the one in flight, and each attempt is bounded by the provider timeout.
        sync.send(SyncNow).await.map_err(|_| EngineError::Overloaded("the sync actor is unavailable"))?
    }

    /// The last sync attempt and the last success.
    ///
    /// # Errors
    /// 503-class errors when the sync actor cannot answer.
    pub async fn sync_status(&self) -> Result<SyncState, EngineError> {
        match &self.sync {
            Some(sync) => sync.send(SyncStatus).timeout(self.settings.request_timeout).await.map_err(|_| timed_out()),
            None => Ok(SyncState::default()),
        }
    }

    /// The open alerts and the recent events.
    ///
    /// # Errors
    /// 503-class errors when the alert actor cannot answer.
    pub async fn alerts(&self) -> Result<AlertsView, EngineError> {
        self.alerts.send(ListAlerts).timeout(self.settings.request_timeout).await.map_err(|_| timed_out())
    }

    /// The kill switch (SPEC §5 admin).
    ///
    /// # Errors
    /// 503-class errors.
    pub async fn set_purchases_enabled(
        &self,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<PurchasesState, EngineError> {
        self.change(SetPurchasesEnabled { enabled, reason }).await?
    }

    /// Changes a package's settings.
    ///
    /// # Errors
    /// `UnknownPackage`, or 503-class errors.
    pub async fn update_package(&self, update: UpdatePackage) -> Result<Package, EngineError> {
        self.change(update).await?
    }

    /// The caller a presented API key stands for, if it is live; notes the
    /// use (coarsely, in memory). Reads the latest published ring: no message.
    pub fn authenticate(&self, hash: &crate::access::KeyHash) -> Option<Arc<crate::access::LiveKey>> {
        let ring = Arc::clone(&self.keys.borrow());
        let key = Arc::clone(ring.find(hash)?);
        key.touch(self.clock.now_ms());
        Some(key)
    }

    /// Makes an API key (SPEC §9.1): the key is made here, only its hash
    /// goes to the inventory, and the key is returned this once.
    ///
    /// # Errors
    /// 503-class errors.
    pub async fn create_api_key(&self, name: KeyName, scopes: Scopes) -> Result<(ApiKeyRecord, String), EngineError> {
        let key = crate::access::new_key();
        let key_hash = crate::access::hash_key(&key);
        let record = self.change(CreateApiKey { name, scopes, key_hash }).await??;
        Ok((record, key))
    }

    /// Revokes an API key, at once and for good.
    ///
    /// # Errors
    /// `UnknownApiKey`, or 503-class errors.
    pub async fn revoke_api_key(&self, id: KeyId) -> Result<ApiKeyRecord, EngineError> {
        self.change(RevokeApiKey { id }).await?
    }

    /// Forgets the idempotency records past their retention now, instead of
    /// at the next pass; answers how many.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn prune_now(&self) -> Result<u64, EngineError> {
        Ok(self.pruner.send(PruneNow).await.map_err(|_| timed_out())??)
    }

    /// Every API key, revoked ones included (never the key itself).
    ///
    /// # Errors
    /// 503-class errors.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, EngineError> {
        self.inventory.send(ListApiKeys).timeout(self.settings.request_timeout).await.map_err(|_| timed_out())
    }

    /// The operators' report (SPEC §8) as of now.
    ///
    /// # Errors
    /// A storage failure, or 503-class errors.
    pub async fn report(&self) -> Result<(Report, GrantsReport), EngineError> {
        let view = self.snapshot().await?;
        let now_ms = self.clock.now_ms();
        let (store, ratio) = (self.store.clone(), self.settings.ratio);
        let since_ms = now_ms.saturating_sub(WEEK_MS);
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((store.consumption_since(since_ms, ratio)?, store.expired_days()?))
        });
        let (consumption, days) = read.await.map_err(|_| EngineError::Overloaded("the read was cancelled"))??;
        let totals = view.grants;
        let days = days.into_iter().map(|day| (day.day, day.credits, day.breakage)).collect();
        let grants = GrantsReport::new(ratio, totals.expired, totals.voided, totals.breakage, totals.promotional, days);
        let report = report(&ReportInput {
            now_ms,
            revenue: view.revenue,
            consumed_total: view.consumed_total,
            cost_micros_per_credit: self.settings.provider_credit_cost_micros,
            available: view.capacity.available(),
            provider_balance: view.capacity.provider_balance,
            consumption,
        });
        Ok((report, grants))
    }

    /// How many wallet actors are live (for metrics and tests).
    pub fn hot_wallets(&self) -> usize {
        self.wallets.len()
    }
}

/// The users the expiry sweep closes grants of at once, at most.
const GRANT_SWEEP_USERS_MAX: usize = 4_096;

/// Requests of the sweep in flight at once: their changes share group commits.
const GRANT_SWEEP_CONCURRENCY: usize = 64;

/// The expiry sweep of grants (SPEC §13): at the next grant's `expiresAt`
/// (and at least every second), the users with a grant past its
/// `expiresAt` have it closed through their wallet actors (the
/// `grantExpired` entry, `reserved` down), many at once so that a
/// campaign's grants expiring together share group commits; more than
/// [`GRANT_SWEEP_USERS_MAX`] due, and it goes on at once. A wallet a request
/// touches first closes its due grants itself.
async fn sweep_grants(engine: Engine) {
    use futures_util::StreamExt;
    let interval = crate::actors::inventory::EXPIRY_SWEEP_INTERVAL;
    let mut wait = interval;
    loop {
        tokio::time::sleep(wait).await;
        wait = interval;
        if engine.health.storage_failed() {
            continue;
        }
        let Ok(due) = engine.ask(DueGrants { limit: GRANT_SWEEP_USERS_MAX }).await else { continue };
        let more = due.users.len() >= GRANT_SWEEP_USERS_MAX;
        let closed = futures_util::stream::iter(due.users)
            .map(|user| {
                let engine = engine.clone();
                async move {
                    match engine.expire_grants(&user).await {
                        Ok(closed) => closed,
                        Err(error) => {
                            tracing::warn!(%error, "cannot close expired grants yet");
                            0
                        }
                    }
                }
            })
            .buffer_unordered(GRANT_SWEEP_CONCURRENCY)
            .fold(0usize, |total, closed| async move { total.saturating_add(closed) })
            .await;
        if closed > 0 {
            tracing::debug!(closed, "grants expired");
        }
        if more && closed > 0 {
            wait = Duration::ZERO;
        } else if let Some(next_ms) = due.next_deadline_ms {
            wait = wait.min(Duration::from_millis(next_ms.saturating_sub(engine.now_ms())));
        }
    }
}
