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
use std::sync::Arc;

use creditd::actors::inventory::{ApplySync, BeginSync};
use creditd::actors::EngineError;
use creditd::clock::SystemClock;
use creditd::config::Config;
use creditd::domain::{IdempotencyKey, PackageId, ProviderCredits, UserId};
use creditd::engine::{init, recover, Engine, EngineThreads, Settings};
use creditd::store::{StorageFaults, Store};

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

async fn start(dir: &std::path::Path, faults: Option<Arc<dyn StorageFaults>>) -> (Engine, EngineThreads) {
    let mut settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    settings.verify_wallets_at_start = true;
    if !dir.join("db").exists() {
        init(dir, &settings, &SystemClock).expect("init");
    }
    let mut store = Store::open(dir).expect("opens");
    if let Some(faults) = faults {
        store = store.with_faults(faults);
    }
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
            IdempotencyKey::parse(key).expect("valid"),
            [7; 32],
        )
        .await?;
    Ok(receipt.balance.get())
}

async fn wallet(engine: &Engine, user: &str) -> Option<u64> {
    engine.user_credits(UserId::parse(user).expect("valid"), 1).await.ok().map(|(wallet, _)| wallet.balance.get())
}

fn check_passes(dir: &std::path::Path) {
    let report = creditd::check::check(dir).expect("check runs");
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
    assert!(matches!(failed, Err(EngineError::Storage(_))), "{failed:?}");
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
