//! The engine without HTTP: the reserve-and-commit path of a purchase (wallet
//! actor, inventory actor, group commit with `fdatasync` on a real sled
//! directory) and the record codec. `cargo bench --bench engine`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use creditd::actors::inventory::{ApplySync, BeginSync};
use creditd::clock::SystemClock;
use creditd::config::Config;
use creditd::domain::{IdempotencyKey, KeyId, Money, PackageId, ProviderCredits, ScopedKey, UserCredits, UserId};
use creditd::engine::{init, recover, Engine, EngineThreads, Settings};
use creditd::store::codec::{decode, encode};
use creditd::store::records::{EntryKind, InventoryRecord, LedgerEntry};
use creditd::store::Store;

fn ledger_entry() -> LedgerEntry {
    LedgerEntry {
        seq: 123_456,
        at_ms: 1_764_115_200_000,
        user: Some(UserId::parse("user-000123").expect("valid")),
        idempotency_key: Some(IdempotencyKey::parse("a1b2c3d4-e5f6-7890-abcd-ef0123456789").expect("valid")),
        kind: EntryKind::Purchase {
            purchase_id: "pur_123456".into(),
            package_id: PackageId::parse("starter").expect("valid"),
            credits: UserCredits::new(10).expect("small"),
            price: Money::new(999, creditd::domain::Currency::EUR).expect("small"),
        },
        provider_balance_after: ProviderCredits::new(938_000).expect("small"),
        reserved_after: ProviderCredits::new(400_000).expect("small"),
        wallet_after: Some(UserCredits::new(110).expect("small")),
        caller: Some(KeyId::parse("key_12").expect("valid")),
        grants: Some(creditd::domain::ledger::GrantEffect::Paid { expires_at_ms: None }),
    }
}

/// `key` as the benchmark's API key sent it.
fn scoped(key: &str) -> ScopedKey {
    ScopedKey::new(KeyId::parse("key_bench").expect("valid"), IdempotencyKey::parse(key).expect("valid"))
}

fn codec(c: &mut Criterion) {
    let entry = ledger_entry();
    let bytes = encode(&entry).expect("encodes");
    let state = InventoryRecord::empty(Money::zero(creditd::domain::Currency::EUR));
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode ledger entry", |b| b.iter(|| encode(std::hint::black_box(&entry)).expect("encodes")));
    group.bench_function("decode ledger entry", |b| {
        b.iter(|| decode::<LedgerEntry>(std::hint::black_box(&bytes)).expect("decodes"))
    });
    group.bench_function("encode inventory record", |b| {
        b.iter(|| encode(std::hint::black_box(&state)).expect("encodes"))
    });
    group.finish();
}

/// An engine on a fresh directory, synced with a balance no benchmark exhausts.
fn engine(system: &actix_rt::SystemRunner, dir: &std::path::Path) -> (Engine, EngineThreads) {
    system.block_on(async {
        let settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
        init(dir, &settings, &SystemClock).expect("init");
        let store = Store::open(dir).expect("opens");
        let recovered = recover(&store, &settings).expect("recovers");
        let (engine, threads) = Engine::start(recovered, settings, store, Arc::new(SystemClock), None).expect("starts");
        let token = engine.inventory().send(BeginSync).await.expect("answers");
        let real = ProviderCredits::new(9_000_000_000_000_000).expect("bounded");
        engine.inventory().send(ApplySync { real, token }).await.expect("answers").expect("syncs");
        (engine, threads)
    })
}

/// `count` durable purchases by `clients` concurrent callers over `users` users.
async fn purchases(engine: &Engine, clients: u64, count: u64, users: u64, round: u64) {
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let engine = engine.clone();
            actix_rt::spawn(async move {
                for n in (client..count).step_by(usize::try_from(clients).expect("small")) {
                    let user = UserId::parse(&format!("bench-{}", n % users)).expect("valid");
                    let key = scoped(&format!("r{round}-{n}"));
                    let package = PackageId::parse("starter").expect("valid");
                    engine.purchase(user, package, key, [0; 32]).await.expect("buys");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("joins");
    }
}

fn reserve_and_commit(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, threads) = engine(&system, dir.path());
    let mut group = c.benchmark_group("durable purchase (engine, no HTTP)");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(10)).sample_size(10);
    let mut round = 0;
    for clients in [1u64, 64] {
        group.bench_function(format!("{clients} concurrent callers"), |b| {
            b.iter_custom(|iterations| {
                round += 1;
                let started = Instant::now();
                system.block_on(purchases(&engine, clients, iterations, 100_000, round));
                started.elapsed()
            });
        });
    }
    group.bench_function("decide only: a refused purchase (no commit)", |b| {
        b.iter_batched(
            || (UserId::parse("refused").expect("valid"), PackageId::parse("platinum").expect("valid")),
            |(user, package)| {
                system.block_on(async {
                    let key = scoped("unknown-package");
                    let _ = engine.purchase(user, package, key, [1; 32]).await;
                });
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    drop(engine);
    threads.stop();
}

criterion_group!(benches, codec, reserve_and_commit);
criterion_main!(benches);
