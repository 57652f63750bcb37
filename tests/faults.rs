//! Storage faults (SPEC §4.2): a failed write, a failed sync, a full disk.
//!
//! Goal: when storage fails, nothing is acknowledged, the engine turns
//! unready and refuses everything after (503 at the HTTP edge), and after a
//! restart the state is consistent and `creditd check` passes.
//!
//! Method: the engine runs in process on a real sled directory whose store
//! has a fault injected at a chosen group commit (`StorageFaults`); then the
//! directory is reopened without faults, as a restarted process would.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::FutureExt;

use creditd::actors::inventory::{
    ApplySync, BeginSync, Decide, Decided, SetPurchasesEnabled, Snapshot, UpdatePackage, UserCommand, UserReceipt,
};
use creditd::actors::EngineError;
use creditd::clock::SystemClock;
use creditd::config::Config;
use creditd::decide::Prefetched;
use creditd::domain::{
    Caller, IdempotencyKey, KeyId, PackageId, ProviderCredits, Scope, ScopedKey, Scopes, UserCredits, UserId,
};
use creditd::engine::{init, recover, Engine, EngineThreads, Settings};
use creditd::store::records::HoldReceipt;
use creditd::store::{StorageFaults, Store};

/// The API key that makes and finishes the holds of these tests.
fn maker() -> Caller {
    Caller { id: KeyId::parse("key_faults").expect("valid"), scopes: Scopes::new([Scope::Storefront]).expect("one") }
}

/// A hold of a starter for `user`, sent to the inventory as its wallet actor
/// would: nothing to read for it (no key), so nothing prefetched.
fn create_hold(user: &str) -> Decide {
    let command = UserCommand::Hold {
        package_id: PackageId::parse("starter").expect("valid"),
        ttl_ms: 60_000,
        key: None,
        fingerprint: [1; 32],
        owner: maker().id,
    };
    Decide { user: UserId::parse(user).expect("valid"), command, prefetched: Prefetched::default() }
}

/// A release of `user`'s open hold: the inventory holds every open hold,
/// so it decides without a read.
fn release(user: &str, hold_id: &creditd::domain::HoldId) -> Decide {
    let command = UserCommand::Release { hold_id: hold_id.clone(), by: maker() };
    Decide { user: UserId::parse(user).expect("valid"), command, prefetched: Prefetched::default() }
}

fn held(answer: Result<Decided, EngineError>) -> HoldReceipt {
    match receipt(answer.expect("holds")) {
        UserReceipt::Hold(receipt) => receipt,
        other => panic!("{other:?}"),
    }
}

fn receipt(decided: Decided) -> UserReceipt {
    match decided {
        Decided::Done(receipt, _) => receipt,
        Decided::Refetch(command) => panic!("nothing to read again: {command:?}"),
    }
}

/// Once armed, fails the next group commit, before applying it or before
/// syncing it; then disarms.
struct Armed {
    armed: AtomicBool,
    before_sync: bool,
    kind: ErrorKind,
}

impl Armed {
    fn new(before_sync: bool, kind: ErrorKind) -> Arc<Self> {
        Arc::new(Self { armed: AtomicBool::new(false), before_sync, kind })
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn hit(&self, stage_is_sync: bool) -> std::io::Result<()> {
        if stage_is_sync == self.before_sync && self.armed.swap(false, Ordering::SeqCst) {
            Err(std::io::Error::new(self.kind, "injected storage fault"))
        } else {
            Ok(())
        }
    }
}

impl StorageFaults for Armed {
    fn before_apply(&self) -> std::io::Result<()> {
        self.hit(false)
    }

    fn before_sync(&self) -> std::io::Result<()> {
        self.hit(true)
    }
}

/// Holds the commit loop inside the sync of the next group, after its
/// batch is applied, until the test lets it go on or fail: the window in
/// which a change is decided and visible but not yet durable.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    armed: bool,
    holding: bool,
    /// `Some(true)`: let the held sync succeed; `Some(false)`: fail it.
    verdict: Option<bool>,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(GateState::default()), changed: Condvar::new() })
    }

    fn arm(&self) {
        *self.state.lock().expect("gate") = GateState { armed: true, ..GateState::default() };
    }

    /// Waits (off the async workers) until the commit loop is held.
    async fn held(self: &Arc<Self>) {
        let gate = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let state = gate.state.lock().expect("gate");
            drop(gate.changed.wait_while(state, |state| !state.holding).expect("gate"));
        })
        .await
        .expect("waits");
    }

    fn release(&self, succeed: bool) {
        self.state.lock().expect("gate").verdict = Some(succeed);
        self.changed.notify_all();
    }
}

impl StorageFaults for Gate {
    fn before_sync(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("gate");
        if !state.armed {
            return Ok(());
        }
        state.armed = false;
        state.holding = true;
        self.changed.notify_all();
        let state = self.changed.wait_while(state, |state| state.verdict.is_none()).expect("gate");
        match state.verdict {
            Some(true) => Ok(()),
            _ => Err(std::io::Error::other("injected: the sync failed after the batch was applied")),
        }
    }
}

async fn start(dir: &std::path::Path, faults: Option<Arc<dyn StorageFaults>>) -> (Engine, EngineThreads) {
    start_with(dir, faults, |_| {}).await
}

async fn start_with(
    dir: &std::path::Path,
    faults: Option<Arc<dyn StorageFaults>>,
    adjust: impl FnOnce(&mut Settings),
) -> (Engine, EngineThreads) {
    let mut settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    adjust(&mut settings);
    settings.verify_wallets_at_start = true;
    if !dir.join("db").exists() {
        init(dir, &settings, &SystemClock).expect("init");
    }
    let mut store = Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::store::SledStore::open(dir))
        .expect("opens");
    if let Some(faults) = faults {
        store = store.with_faults(faults);
    }
    let store = Store::Sled(store);
    let recovered = recover(&store, &settings).expect("the directory is consistent");
    let (engine, threads) = Engine::start(recovered, settings, store, Arc::new(SystemClock), None).expect("starts");
    let token = engine.inventory().send(BeginSync).await.expect("answers");
    let real = ProviderCredits::new(1_000_000).expect("small");
    let _ = engine.inventory().send(ApplySync { real, token }).await.expect("answers");
    (engine, threads)
}

async fn stop(engine: Engine, threads: EngineThreads) {
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
}

async fn buy(engine: &Engine, user: &str, key: &str) -> Result<u64, EngineError> {
    let receipt = engine
        .purchase(
            UserId::parse(user).expect("valid"),
            PackageId::parse("starter").expect("valid"),
            ScopedKey::new(KeyId::parse("key_shop").expect("valid"), IdempotencyKey::parse(key).expect("valid")),
            [7; 32],
        )
        .await?;
    Ok(receipt.balance.get())
}

async fn wallet(engine: &Engine, user: &str) -> Option<u64> {
    engine.user_credits(UserId::parse(user).expect("valid"), 1).await.ok().map(|(wallet, _)| wallet.balance.get())
}

fn check_passes(dir: &std::path::Path) {
    let report =
        Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::check::check(dir)).expect("check runs");
    assert!(report.passed(), "{report}");
}

/// A failed write (and a full disk, the same path with ENOSPC) is answered
/// as a failure, turns the engine unready, and leaves nothing behind.
#[actix_rt::test]
async fn a_failed_write_is_not_acknowledged_and_stops_the_engine() {
    for kind in [ErrorKind::Other, ErrorKind::StorageFull] {
        let dir = tempfile::tempdir().expect("temp dir");
        let faults = Armed::new(false, kind);
        let (engine, threads) = start(dir.path(), Some(faults.clone())).await;
        assert_eq!(buy(&engine, "a", "k1").await, Ok(10));
        assert_eq!(buy(&engine, "b", "k2").await, Ok(10));
        faults.arm();
        let failed = buy(&engine, "c", "k3").await;
        assert!(matches!(failed, Err(EngineError::Storage(_))), "{kind:?}: {failed:?}");
        assert!(!engine.health().ready(), "{kind:?}: the engine turns unready");
        assert!(
            matches!(buy(&engine, "d", "k4").await, Err(EngineError::NotReady(_))),
            "{kind:?}: and refuses what follows"
        );
        stop(engine, threads).await;
        check_passes(dir.path());

        let (engine, threads) = start(dir.path(), None).await;
        assert_eq!((wallet(&engine, "a").await, wallet(&engine, "b").await), (Some(10), Some(10)));
        assert_eq!(wallet(&engine, "c").await, None, "{kind:?}: the failed write left nothing");
        assert_eq!(buy(&engine, "c", "k3").await, Ok(10), "{kind:?}: its retry applies it once");
        stop(engine, threads).await;
        check_passes(dir.path());
    }
}

/// A failed sync is answered as a failure although the change may be on
/// disk: the client does not know, and its retry with the same key gets the
/// change exactly once.
#[actix_rt::test]
async fn a_failed_sync_is_not_acknowledged_and_its_retry_applies_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Armed::new(true, ErrorKind::Other);
    let (engine, threads) = start(dir.path(), Some(faults.clone())).await;
    assert_eq!(buy(&engine, "a", "k1").await, Ok(10));
    faults.arm();
    let failed = buy(&engine, "a", "k2").await;
    assert!(matches!(failed, Err(EngineError::OutcomeUnknown(_))), "not 'nothing applied': {failed:?}");
    assert!(!engine.health().ready());
    let snapshot = engine.snapshot().await.expect("answers");
    assert!(!snapshot.ready, "the catalogue reports not ready too");
    stop(engine, threads).await;
    check_passes(dir.path());

    let (engine, threads) = start(dir.path(), None).await;
    let retried = buy(&engine, "a", "k2").await;
    assert_eq!(retried, Ok(20), "the retry answers the one purchase, applied once");
    assert_eq!(wallet(&engine, "a").await, Some(20));
    stop(engine, threads).await;
    check_passes(dir.path());
}

/// Goal: a replay (a second release, a second kill switch, the same
/// package settings again) is answered only once the change it repeats is
/// durable (SPEC §9): a crash in between must not leave a 2xx that the
/// disk contradicts. Method: hold the commit loop in the sync of the first
/// change; send the replay; after a later message proves the actor has
/// decided the replay, its answer must still be pending; fail the held sync:
/// both answers are `outcome_unknown`, never a success.
#[actix_rt::test]
async fn a_replay_waits_for_the_durability_of_the_change_it_repeats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gate = Gate::new();
    let (engine, threads) = start(dir.path(), Some(gate.clone())).await;
    let inventory = engine.inventory().clone();
    let hold = held(inventory.send(create_hold("h")).await.expect("answers"));

    gate.arm();
    let first = inventory.send(release("h", &hold.hold_id));
    gate.held().await;
    let mut replay = Box::pin(inventory.send(release("h", &hold.hold_id)));
    let mut kill = Box::pin(inventory.send(SetPurchasesEnabled { enabled: true, reason: None }));
    let package = UpdatePackage {
        package_id: PackageId::parse("pro").expect("valid"),
        enabled: None,
        credits: None,
        price_minor_units: None,
        expires_after_days: None,
    };
    let mut unchanged = Box::pin(inventory.send(package));
    // The actor handles its mailbox in order: once this answers, the three above were decided.
    inventory.send(Snapshot).await.expect("answers");
    assert!(replay.as_mut().now_or_never().is_none(), "the second release waits for the first one's sync");
    assert!(kill.as_mut().now_or_never().is_none(), "a kill-switch replay waits for the sync in flight");
    assert!(unchanged.as_mut().now_or_never().is_none(), "a package replay waits for the sync in flight");

    gate.release(false);
    let first = first.await.expect("answers");
    assert!(matches!(first, Err(EngineError::OutcomeUnknown(_))), "{first:?}");
    let replay = replay.await.expect("answers");
    assert!(matches!(replay, Err(EngineError::OutcomeUnknown(_))), "never a success: {replay:?}");
    assert!(matches!(kill.await.expect("answers"), Err(EngineError::OutcomeUnknown(_))));
    assert!(matches!(unchanged.await.expect("answers"), Err(EngineError::OutcomeUnknown(_))));
    stop(engine, threads).await;
    check_passes(dir.path());
}

/// Goal: the same, when the held sync succeeds: the replay then answers the
/// first answer, and a release of a hold whose capture is not yet durable
/// learns `hold_captured` only once it is.
#[actix_rt::test]
async fn a_replay_answers_the_first_answer_once_it_is_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gate = Gate::new();
    let (engine, threads) = start(dir.path(), Some(gate.clone())).await;
    let inventory = engine.inventory().clone();
    let released = held(inventory.send(create_hold("r")).await.expect("answers")).hold_id;
    let captured = held(inventory.send(create_hold("c")).await.expect("answers")).hold_id;

    gate.arm();
    let first = inventory.send(release("r", &released));
    gate.held().await;
    let mut replay = Box::pin(inventory.send(release("r", &released)));
    inventory.send(Snapshot).await.expect("answers");
    assert!(replay.as_mut().now_or_never().is_none(), "the replay waits");
    gate.release(true);
    let first = receipt(first.await.expect("answers").expect("released"));
    assert_eq!(receipt(replay.await.expect("answers").expect("replayed")), first, "the first answer, once durable");

    gate.arm();
    let capture = {
        let engine = engine.clone();
        let hold_id = captured.clone();
        actix_rt::spawn(async move { engine.capture(hold_id, maker()).await })
    };
    gate.held().await;
    let mut release = Box::pin(inventory.send(release("c", &captured)));
    inventory.send(Snapshot).await.expect("answers");
    assert!(release.as_mut().now_or_never().is_none(), "hold_captured is not said before the capture is durable");
    gate.release(true);
    assert_eq!(capture.await.expect("joins").expect("captured").credits, UserCredits::new(10).expect("small"));
    assert!(matches!(release.await.expect("answers"), Err(EngineError::HoldCaptured)));
    stop(engine, threads).await;
    check_passes(dir.path());
}

/// Goal: a request that gives up waiting for its commit says so: 503
/// `outcome_unknown` (SPEC §9), never a code that promises nothing was
/// applied. Method: hold the commit loop past a short request timeout; then
/// let the sync succeed: the purchase was applied after all, and its retry
/// with the same key answers it once.
#[actix_rt::test]
async fn a_timeout_waiting_for_the_commit_is_outcome_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gate = Gate::new();
    let (engine, threads) =
        start_with(dir.path(), Some(gate.clone()), |settings| settings.request_timeout = Duration::from_millis(100))
            .await;
    gate.arm();
    let waiting = actix_rt::spawn({
        let engine = engine.clone();
        async move { buy(&engine, "t", "k-timeout").await }
    });
    gate.held().await;
    let answer = waiting.await.expect("joins");
    assert!(matches!(answer, Err(EngineError::OutcomeUnknown(_))), "{answer:?}");
    gate.release(true);
    // A retry may itself give up while the first is still finishing; a client retries again.
    let mut retried = buy(&engine, "t", "k-timeout").await;
    for _ in 0..100 {
        if !matches!(retried, Err(EngineError::OutcomeUnknown(_) | EngineError::IdempotencyKeyInUse)) {
            break;
        }
        retried = buy(&engine, "t", "k-timeout").await;
    }
    assert_eq!(retried, Ok(10), "the retry learns it was applied, once");
    assert_eq!(wallet(&engine, "t").await, Some(10));
    stop(engine, threads).await;
    check_passes(dir.path());
}
