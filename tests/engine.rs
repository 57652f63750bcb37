//! In-process tests of the engine without HTTP: the wallet actors' life
//! cycle, where timing matters and a controllable setting makes it quick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditd::actors::inventory::{ApplySync, BeginSync};
use creditd::clock::SystemClock;
use creditd::config::Config;
use creditd::domain::{IdempotencyKey, PackageId, ProviderCredits, UserId};
use creditd::engine::{recover, Engine, EngineThreads, Settings};
use creditd::store::Store;
use futures_util::future::join_all;

async fn engine(dir: &std::path::Path, wallet_idle: Duration) -> (Engine, EngineThreads) {
    let config = Config::load_with(None, |_| None).expect("defaults");
    let mut settings = Settings::from_config(&config);
    settings.wallet_idle = wallet_idle;
    let store = Store::open(dir).expect("store opens");
    let recovered = recover(&store, &settings, &SystemClock).expect("recovers");
    let (engine, threads) = Engine::start(recovered, settings, store, Arc::new(SystemClock), None).expect("starts");
    let token = engine.inventory().send(BeginSync).await.expect("answers");
    let real = ProviderCredits::new(1_000_000).expect("small");
    engine.inventory().send(ApplySync { real, token }).await.expect("answers").expect("syncs");
    (engine, threads)
}

fn ids(user: &str, key: &str) -> (UserId, PackageId, IdempotencyKey) {
    (
        UserId::parse(user).expect("valid"),
        PackageId::parse("starter").expect("valid"),
        IdempotencyKey::parse(key).expect("valid"),
    )
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Goal: an idle wallet actor retires, and the next operation starts a new
/// one that resumes from the wallet on disk.
#[actix_rt::test]
async fn an_idle_wallet_actor_retires_and_its_successor_resumes_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, threads) = engine(dir.path(), Duration::from_millis(50)).await;
    let (user, package, key) = ids("idle-user", "k-1");
    let first = engine.purchase(user.clone(), package.clone(), key, [1; 32]).await.expect("buys");
    assert_eq!(first.balance.get(), 10);
    wait_until("the wallet actor retired", || engine.live_wallets() == 0).await;
    let (_, _, key) = ids("idle-user", "k-2");
    let second = engine.purchase(user, package, key, [2; 32]).await.expect("buys again");
    assert_eq!(second.balance.get(), 20, "the new actor started from the disk");
    assert!(engine.health().ready());
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
}

/// Goal: wallet actors retiring under load never lose an update. Method:
/// actors retire after 1 ms idle, while 400 purchases for 8 users race; each
/// user's successful answers must count up by 10 with no gap, and the
/// store's version check must never trip (the engine stays ready).
#[actix_rt::test]
async fn retiring_wallet_actors_under_load_lose_no_update() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, threads) = engine(dir.path(), Duration::from_millis(1)).await;
    let answers = join_all((0..400).map(|i| {
        let engine = engine.clone();
        async move {
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let (user, package, key) = ids(&format!("user-{}", i % 8), &format!("key-{i}"));
            (i % 8, engine.purchase(user, package, key, [0; 32]).await)
        }
    }))
    .await;
    for user in 0..8 {
        let mut balances: Vec<u64> = answers
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, answer)| answer.as_ref().expect("every purchase succeeds").balance.get())
            .collect();
        balances.sort_unstable();
        assert_eq!(balances, (1..=50).map(|n| n * 10).collect::<Vec<_>>(), "user {user}");
    }
    assert!(engine.health().ready(), "no stale wallet write was attempted");
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
    let report = creditd::check::check(dir.path()).expect("checks");
    assert!(report.passed(), "{report}");
}
