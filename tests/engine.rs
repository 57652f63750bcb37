//! In-process tests of the engine without HTTP: the wallet actors' life
//! cycle, where timing matters and a controllable setting makes it quick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditd::actors::inventory::{ApplySync, BeginSync};
use creditd::clock::SystemClock;
use creditd::config::Config;
use creditd::domain::{Caller, IdempotencyKey, KeyId, PackageId, ProviderCredits, Scope, ScopedKey, Scopes, UserId};
use creditd::engine::{init, recover, Engine, EngineThreads, Settings};
use creditd::store::Store;
use futures_util::future::join_all;

async fn engine(dir: &std::path::Path, wallet_idle: Duration) -> (Engine, EngineThreads) {
    let config = Config::load_with(None, |_| None).expect("defaults");
    let mut settings = Settings::from_config(&config);
    settings.wallet_idle = wallet_idle;
    start_on(dir, settings, Arc::new(SystemClock), 1_000_000).await
}

/// Starts an engine on `dir` (made by `init` first if new) with `clock`,
/// synced to a provider balance of `balance`.
async fn start_on(
    dir: &std::path::Path,
    settings: Settings,
    clock: Arc<dyn creditd::clock::Clock>,
    balance: u64,
) -> (Engine, EngineThreads) {
    if !dir.join("db").exists() {
        init(dir, &settings, clock.as_ref()).expect("init");
    }
    let store = Store::when_unlocked(Duration::from_secs(30), || Store::open(dir)).expect("store opens");
    let recovered = recover(&store, &settings).expect("recovers");
    let (engine, threads) = Engine::start(recovered, settings, store, clock, None).expect("starts");
    let token = engine.inventory().send(BeginSync).await.expect("answers");
    let real = ProviderCredits::new(balance).expect("small");
    engine.inventory().send(ApplySync { real, token }).await.expect("answers").expect("syncs");
    (engine, threads)
}

fn ids(user: &str, key: &str) -> (UserId, PackageId, ScopedKey) {
    (UserId::parse(user).expect("valid"), PackageId::parse("starter").expect("valid"), scoped(key))
}

/// The storefront's API key, which makes and finishes holds and spends here.
fn maker() -> Caller {
    let scopes = Scopes::new([Scope::Storefront, Scope::Enhancement]).expect("two scopes");
    Caller { id: KeyId::parse("key_storefront").expect("valid"), scopes }
}

/// `key` as the storefront's API key sent it.
fn scoped(key: &str) -> ScopedKey {
    ScopedKey::new(KeyId::parse("key_storefront").expect("valid"), IdempotencyKey::parse(key).expect("valid"))
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Goal: an idle wallet actor retires, and the next operation starts a new
/// one, which loads the wallet again and resumes from the wallet on disk.
#[actix_rt::test]
async fn an_idle_wallet_actor_retires_and_the_next_operation_resumes_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, threads) = engine(dir.path(), Duration::from_millis(50)).await;
    let (user, package, key) = ids("idle-user", "k-1");
    let first = engine.purchase(user.clone(), package.clone(), key, [1; 32]).await.expect("buys");
    assert_eq!(first.balance.get(), 10);
    assert_eq!(engine.hot_wallets(), 1, "the user's wallet actor is live after its change");
    wait_until("the wallet actor retired", || engine.hot_wallets() == 0).await;
    let (_, _, key) = ids("idle-user", "k-2");
    let second = engine.purchase(user, package, key, [2; 32]).await.expect("buys again");
    assert_eq!(second.balance.get(), 20, "the wallet was loaded again from the disk");
    assert!(engine.health().ready());
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
}

/// Goal: wallet actors retiring under load never lose an update. Method:
/// they retire after 1 ms idle, while 400 purchases for 8 users race; each
/// user's successful answers must count up by 10 with no gap, and the
/// store's version check must never trip (the engine stays ready).
#[actix_rt::test]
async fn wallet_actors_retiring_under_load_lose_no_update() {
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
    let report =
        Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::check::check(dir.path())).expect("checks");
    assert!(report.passed(), "{report}");
}

/// Goal: the report of SPEC §8 is computed from the ledger, with a
/// controllable clock. Method: a synthetic week of purchases, spends and a
/// refund at chosen instants; every figure is computed by hand below.
#[actix_rt::test]
async fn the_report_follows_a_synthetic_week_computed_by_hand() {
    use creditd::clock::ManualClock;
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_at(1_750_000_000_000);
    let config = Config::load_with(None, |_| None).expect("defaults");
    let mut settings = Settings::from_config(&config);
    // s4 is refunded two hours after it was made: still open then.
    settings.spend_complete_after = std::time::Duration::from_millis(3 * HOUR);
    let (engine, threads) = start_on(dir.path(), settings, Arc::new(clock.clone()), 10_000).await;

    let buy = |user: &str, package: &str, key: &str| {
        let (engine, user, package, key) = (engine.clone(), user.to_owned(), package.to_owned(), key.to_owned());
        async move {
            let ids = (UserId::parse(&user).expect("valid"), PackageId::parse(&package).expect("valid"), scoped(&key));
            engine.purchase(ids.0, ids.1, ids.2, [9; 32]).await.expect("buys")
        }
    };
    let spend = |user: &str, credits: u64, key: &str| {
        let (engine, user, key) = (engine.clone(), user.to_owned(), key.to_owned());
        async move {
            let (user, key) = (UserId::parse(&user).expect("valid"), scoped(&key));
            let credits = creditd::domain::UserCredits::positive(credits).expect("positive");
            engine.spend(user, credits, None, key, [8; 32]).await.expect("spends")
        }
    };
    buy("a", "pro", "b1").await; // €69.99
    buy("b", "studio", "b2").await; // €299.99
    spend("a", 20, "s1").await; // 80 provider credits at T0: older than 7 days at the end.
    clock.advance_ms(5 * DAY);
    spend("b", 100, "s2").await; // 400 at T0 + 5 d
    clock.advance_ms(2 * DAY + 14 * HOUR);
    spend("b", 50, "s3").await; // 200 at T0 + 7 d 14 h
    clock.advance_ms(2 * HOUR);
    let refunded = spend("a", 5, "s4").await; // 20 at T0 + 7 d 16 h ...
    clock.advance_ms(2 * HOUR);
    engine.refund(refunded.spend_id, maker()).await.expect("refunds"); // ... given back at T0 + 7 d 18 h
    clock.advance_ms(4 * HOUR); // now: T0 + 7 d 22 h

    let (report, _) = engine.report().await.expect("report");
    assert_eq!(report.revenue.minor_units(), 6_999 + 29_999);
    assert_eq!(report.consumed_total.get(), 80 + 400 + 200, "the refund cancels its spend");
    assert_eq!(report.provider_cost_minor_units, 68, "680 credits × €0.001 = €0.68");
    assert_eq!(report.margin_minor_units, 36_998 - 68);
    assert_eq!(report.consumed_24h, 200 + 20 - 20);
    assert_eq!(report.consumed_7d, 400 + 200);
    // Balance 10 000 − 680 = 9 320; wallets a 80, b 350 → reserved 1 720; available 7 600.
    assert_eq!((report.provider_balance.get(), report.available), (9_320, 7_600));
    assert_eq!(report.runway_24h.burn_per_day, 200);
    assert_eq!(report.runway_24h.available_seconds, Some(7_600 * 86_400 / 200));
    assert_eq!(report.runway_24h.provider_balance_seconds, Some(9_320 * 86_400 / 200));
    assert_eq!(report.runway_7d.burn_per_day, 85, "600 / 7, rounded down");
    assert_eq!(report.runway_7d.available_seconds, Some(7_725_176));
    assert_eq!(report.runway_7d.provider_balance_seconds, Some(9_473_505));
    assert_eq!(report.band, creditd::domain::ReserveBand::Comfortable);
    assert_eq!((report.to_reach_minimum, report.to_reach_comfortable, report.to_reach_ideal), (0, 0, 2_400));
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
    let check =
        Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::check::check(dir.path())).expect("checks");
    assert!(check.passed(), "{check}");
}

/// Goal: a wallet changed on disk behind the inventory's back (a bug, or a
/// hand edit) is caught: at start-up when `verify_wallets_at_start` is set,
/// and always by `creditd check`. Without the option, start-up does not read
/// every wallet (it stays fast with a million users; see BENCHMARKS.md).
#[actix_rt::test]
async fn a_wallet_tampered_on_disk_is_caught_at_start_when_asked_and_by_check() {
    use creditd::store::records::WalletRecord;
    use creditd::store::WriteSet;
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, threads) = engine(dir.path(), Duration::from_secs(60)).await;
    let (user, package, key) = ids("tampered", "k-1");
    engine.purchase(user.clone(), package, key, [1; 32]).await.expect("buys");
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
    drop(engine);

    let store =
        Store::when_unlocked(std::time::Duration::from_secs(30), || Store::open(dir.path())).expect("store opens");
    let stored = store.wallet(&user).expect("reads").expect("has a wallet");
    let tampered = WalletRecord {
        balance: stored.balance.checked_add(creditd::domain::UserCredits::positive(1).expect("1")).expect("small"),
        version: stored.version + 1,
        ..stored
    };
    let mut writes = WriteSet::default();
    writes.put_wallet(&user, &tampered);
    store.write_durably([&writes]).expect("writes");

    let config = Config::load_with(None, |_| None).expect("defaults");
    let mut settings = Settings::from_config(&config);
    assert!(recover(&store, &settings).is_ok(), "the totals alone are consistent");
    settings.verify_wallets_at_start = true;
    let error = recover(&store, &settings).expect_err("Σ wallets disagrees");
    assert!(error.to_string().contains("Σ wallets on disk is 11"), "{error}");
    drop(store);
    let report = Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::check::check(dir.path()))
        .expect("check runs");
    assert!(!report.passed(), "check must fail on the tampered wallet: {report:?}");
}

/// Goal: hold deadlines and sync staleness follow elapsed time, not the wall
/// clock (issue 13.9): when the wall clock is set back an hour, a 60 s hold
/// still ends 60 s after it was made, and `sync_stale` still fires after its
/// age; the ledger's times never go back. Method: an engine on a manual
/// clock; the wall clock steps back, then time passes.
#[actix_rt::test]
async fn a_wall_clock_set_back_neither_stretches_holds_nor_silences_staleness() {
    use creditd::actors::inventory::Snapshot;
    use creditd::clock::ManualClock;
    const HOUR_MS: u64 = 3_600_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_at(1_750_000_000_000);
    let mut settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    settings.sync_stale_after = Duration::from_secs(300);
    let (engine, threads) = start_on(dir.path(), settings, Arc::new(clock.clone()), 10_000).await;
    let inventory = engine.inventory().clone();
    let (user, package) = (UserId::parse("h").expect("valid"), PackageId::parse("starter").expect("valid"));
    let hold = engine.create_hold(user, package, 60_000, None, [3; 32], maker().id).await.expect("holds");
    assert_eq!(inventory.send(Snapshot).await.expect("answers").open_holds, 1);

    clock.step_wall_back_ms(HOUR_MS);
    clock.advance_ms(59_999);
    assert_eq!(inventory.send(Snapshot).await.expect("answers").open_holds, 1, "not yet");
    clock.advance_ms(1);
    let view = inventory.send(Snapshot).await.expect("answers");
    assert_eq!(view.open_holds, 0, "the hold ends 60 s after it was made, an hour 'early' by the wall clock");
    assert_eq!(view.capacity.reserved, ProviderCredits::ZERO, "its capacity is back");

    clock.advance_ms(300_001);
    wait_until_async("sync_stale fires after 300 s of elapsed time", || {
        let engine = engine.clone();
        async move { engine.alerts().await.expect("answers").open.iter().any(|event| event.kind == "sync_stale") }
    })
    .await;

    let entries = engine.ledger_page(0, 100).await.expect("reads");
    assert!(entries.windows(2).all(|pair| pair[0].at_ms <= pair[1].at_ms), "the ledger's times never go back");
    let expired = entries.last().expect("the expiry");
    assert_eq!(expired.kind.name(), "holdExpired");
    assert!(expired.at_ms >= hold.expires_at_ms, "recorded no earlier than its expiresAt");
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
    let check =
        Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::check::check(dir.path())).expect("checks");
    assert!(check.passed(), "{check}");
}

async fn wait_until_async<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Goal: idempotency records are kept for `idempotency_retention_hours`
/// and then forgotten (SPEC §9.2): a retry inside the window gets the first
/// answer, also after a restart; after it, the key is free again; the ledger
/// keeps every key, and `check` passes. Method: a manual clock and a pass
/// of the pruner run on demand.
#[actix_rt::test]
async fn idempotency_records_are_kept_for_the_retention_then_pruned() {
    use creditd::clock::ManualClock;
    const HOUR: u64 = 3_600_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_at(1_750_000_000_000);
    let settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    assert_eq!(settings.idempotency_retention, Duration::from_secs(24 * 3600), "the default is 24 hours");
    let start = |settings: Settings| start_on(dir.path(), settings, Arc::new(clock.clone()), 1_000_000);
    let buy = |engine: &Engine, key: &str| {
        let (engine, (user, package, key)) = (engine.clone(), ids("kept", key));
        async move { engine.purchase(user, package, key, [5; 32]).await.expect("buys") }
    };

    let (engine, threads) = start(settings.clone()).await;
    let first = buy(&engine, "order-1").await;
    let _ = buy(&engine, "order-2").await;
    clock.advance_ms(23 * HOUR);
    assert_eq!(engine.prune_now().await.expect("prunes"), 0, "nothing is old enough");
    assert_eq!(buy(&engine, "order-1").await, first, "a retry inside the window gets the first answer");
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");

    let (engine, threads) = start(settings.clone()).await;
    assert_eq!(buy(&engine, "order-1").await, first, "also after a restart");
    let young = buy(&engine, "order-3").await;
    clock.advance_ms(2 * HOUR);
    assert_eq!(engine.prune_now().await.expect("prunes"), 2, "order-1 and order-2 are past 24 hours");
    assert_eq!(engine.prune_now().await.expect("prunes"), 0, "a second pass has nothing left");
    assert_eq!(buy(&engine, "order-3").await, young, "order-3 is 2 hours old: kept");
    let again = buy(&engine, "order-1").await;
    assert_ne!(again.purchase_id, first.purchase_id, "past the retention the key is free: a new purchase");
    assert_eq!(again.balance.get(), 40);
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");

    let report = Store::when_unlocked(Duration::from_secs(30), || creditd::check::check(dir.path())).expect("checks");
    assert!(report.passed(), "{report}");
    let store =
        Store::when_unlocked(Duration::from_secs(30), || creditd::store::SledStore::open(dir.path())).expect("opens");
    let keys: Vec<String> =
        store.ledger().filter_map(|item| item.expect("reads").1.idempotency_key.map(String::from)).collect();
    assert_eq!(keys, ["order-1", "order-2", "order-3", "order-1"], "the ledger keeps every key");
}

/// Goal: a wallet may change twice in one group (the inventory decides a
/// user's next change before the last is durable), and the store's version
/// check follows the chain inside the group; a write that expects any other
/// version is refused, and then nothing of its group is applied.
#[test]
fn the_wallet_version_check_follows_a_chain_of_writes_inside_one_group() {
    use creditd::domain::UserCredits;
    use creditd::store::records::WalletRecord;
    use creditd::store::{StoreError, WriteSet};
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    init(dir.path(), &settings, &SystemClock).expect("init");
    let store = Store::open(dir.path()).expect("opens");
    let user = UserId::parse("chain").expect("valid");
    let at = |balance: u64, version: u64| WalletRecord {
        balance: UserCredits::new(balance).expect("small"),
        version,
        recent: Vec::new(),
        grants: Vec::new(),
    };
    let write = |record: WalletRecord| {
        let mut writes = WriteSet::default();
        writes.put_wallet(&user, &record);
        writes
    };
    store.write_durably([&write(at(10, 1)), &write(at(20, 2))]).expect("a chain in one group");
    assert_eq!(store.wallet(&user).expect("reads"), Some(at(20, 2)));
    let refused = store.write_durably([&write(at(30, 3)), &write(at(40, 3))]);
    assert!(matches!(refused, Err(StoreError::Precondition(_))), "the second expects 2, the first left 3: {refused:?}");
    let refused = store.write_durably([&write(at(30, 2))]);
    assert!(matches!(refused, Err(StoreError::Precondition(_))), "expects 1, the store has 2: {refused:?}");
    assert_eq!(store.wallet(&user).expect("reads"), Some(at(20, 2)), "nothing of a refused group is applied");
}

/// Goal (SPEC §13): a paid grant of a package whose credits last a day
/// expires at its `expiresAt` on the engine's clock: the wallet stops
/// counting it at once, the sweep writes its `grantExpired` within a few
/// seconds with the revenue its credits had earned (breakage, pro rata),
/// `reserved` falls by exactly ratio × the credits, and a spend that drew
/// from it and was open across the expiry, once refunded, gives its credits
/// back to the expired grant, where they leave again as expired. The day's
/// totals survive a restart and `check` agrees. Method: an engine on a
/// manual clock moved past the day.
#[actix_rt::test]
async fn a_paid_grant_expires_with_its_breakage_and_a_refund_into_it_leaves_again() {
    use creditd::actors::inventory::Snapshot;
    use creditd::clock::{Clock, ManualClock};
    use creditd::domain::UserCredits;
    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_750_000_000_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_at(T0);
    let config = Config::load_with(None, |_| None).expect("defaults");
    let mut settings = Settings::from_config(&config);
    // The spend stays open across the expiry.
    settings.spend_complete_after = Duration::from_millis(3 * DAY);
    for package in &mut settings.packages {
        if package.id.as_str() == "pro" {
            *package = package.clone().expiring_after(Some(1)).expect("a day");
        }
    }
    let restart_settings = settings.clone();
    let (engine, threads) = start_on(dir.path(), settings, Arc::new(clock.clone()), 10_000).await;
    let user = UserId::parse("u").expect("valid");
    let pro = PackageId::parse("pro").expect("valid");
    let starter = PackageId::parse("starter").expect("valid");
    engine.purchase(user.clone(), pro, scoped("p-1"), [1; 32]).await.expect("buys pro"); // 100, €69.99, a day
    engine.purchase(user.clone(), starter, scoped("p-2"), [2; 32]).await.expect("buys starter"); // 10, never
    let credits = |n: u64| UserCredits::positive(n).expect("positive");
    let open = engine.spend(user.clone(), credits(30), None, scoped("s-1"), [3; 32]).await.expect("spends");
    assert_eq!(open.balance.get(), 80, "drawn from the expiring grant first");
    let reserved = |engine: &Engine| {
        let engine = engine.clone();
        async move { engine.inventory().send(Snapshot).await.expect("answers").capacity.reserved.get() }
    };
    assert_eq!(reserved(&engine).await, 4 * 80);

    clock.advance_ms(DAY);
    let (wallet, _) = engine.user_credits(user.clone(), 20).await.expect("a wallet");
    assert_eq!(wallet.balance_at(clock.now_ms()).get(), 10, "at its expiresAt the grant no longer counts");
    let mut expired = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while expired.is_none() {
        assert!(Instant::now() < deadline, "timed out waiting for the expiry entry");
        let (_, grants) = engine.report().await.expect("report");
        expired = (grants.expired_credits.get() > 0).then_some(grants);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let grants = expired.expect("expired");
    assert_eq!(grants.expired_credits.get(), 70);
    assert_eq!(grants.breakage.minor_units(), 6_999 * 70 / 100, "the price pro rata, rounded down");
    assert_eq!(reserved(&engine).await, 4 * 10, "ratio × the expired credits back in capacity");

    let balance_before = engine.inventory().send(Snapshot).await.expect("answers").capacity.provider_balance.get();
    let refunded = engine.refund(open.spend_id, maker()).await.expect("refunds");
    assert_eq!(refunded.balance.get(), 10, "given back to the expired grant, the credits leave again");
    let view = engine.inventory().send(Snapshot).await.expect("answers");
    assert_eq!(view.capacity.provider_balance.get(), balance_before + 4 * 30, "the provider did no work");
    assert_eq!(view.capacity.reserved.get(), 4 * 10);
    let (_, grants) = engine.report().await.expect("report");
    assert_eq!(grants.expired_credits.get(), 100);
    assert_eq!(grants.breakage.minor_units(), 6_999 * 70 / 100 + 6_999 * 30 / 100);
    assert!(grants.breakage.minor_units() <= 6_999, "never more than the grant was paid");
    let day = u32::try_from((T0 + DAY) / DAY).expect("a day");
    assert_eq!(
        grants.expired_by_day.iter().map(|(day, credits, _)| (*day, credits.get())).collect::<Vec<_>>(),
        [(day, 100)]
    );

    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
    let (engine, threads) = start_on(dir.path(), restart_settings, Arc::new(clock.clone()), 10_000).await;
    let (_, after) = engine.report().await.expect("report");
    assert_eq!(after, grants, "the totals and the days survive a restart");
    drop(engine);
    tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
    let check = Store::when_unlocked(Duration::from_secs(30), || creditd::check::check(dir.path())).expect("checks");
    assert!(check.passed(), "{check}");
}
