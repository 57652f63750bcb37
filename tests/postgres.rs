//! Cluster mode on PostgreSQL (SPEC §12), against a real PostgreSQL the
//! test starts itself (Debian's `postgresql`, `initdb` in a temp dir, a
//! loopback port).

#[path = "common/mod.rs"]
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::process::Command;

use postgres::Postgres;

/// Runs `creditd` with `args` and `env` only: (exit code, stdout + stderr).
fn creditd(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(common::binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("creditd runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// The tables of `migrations/`.
const TABLES: [&str; 14] = [
    "alert_events",
    "api_keys",
    "expired_by_day",
    "grant_deadlines",
    "holds",
    "idempotency",
    "inventory",
    "lease",
    "ledger",
    "meta",
    "package_overrides",
    "prune_cursor",
    "spends",
    "wallets",
];

/// Goal: `creditd init --store postgres://…` (SPEC §11, §12) creates the
/// schema by its versioned migrations and records the store's ratio and
/// currency, an empty inventory and a lease nobody holds; a second init is
/// refused and changes nothing; errors never show a password.
#[tokio::test]
async fn init_creates_the_schema_once_and_never_shows_a_password() {
    let Some(database) = Postgres::start() else { return };
    // Trust authentication ignores the password; it is here to be hidden.
    let url = format!("postgres://{}:pw-never-shown@127.0.0.1:{}/postgres", postgres::USER, database.port);

    let (code, output) = creditd(&["init", "--store", &url], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("127.0.0.1:{}/postgres", database.port)), "{output}");
    assert!(!output.contains("pw-never-shown"), "the password is never printed: {output}");

    let client = creditd::store::postgres::connect(&database.url()).await.expect("connects");
    let rows = client
        .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename", &[])
        .await
        .expect("lists tables");
    let tables: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let ours: Vec<&str> = tables.iter().map(String::as_str).filter(|t| !t.starts_with("refinery")).collect();
    assert_eq!(ours, TABLES, "every table of the schema, and no other");
    let migrations: i64 =
        client.query_one("SELECT count(*) FROM refinery_schema_history", &[]).await.expect("history").get(0);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).expect("the migrations");
    let files = files.filter(|file| file.as_ref().is_ok_and(|file| file.path().extension() == Some("sql".as_ref())));
    assert_eq!(migrations, i64::try_from(files.count()).expect("few"), "every versioned migration applied");
    let meta = client.query_one("SELECT ratio, currency FROM meta", &[]).await.expect("meta");
    assert_eq!((meta.get::<_, i64>(0), meta.get::<_, String>(1)), (4, "EUR".to_owned()));
    let inventory = client
        .query_one("SELECT provider_balance, reserved, next_seq, purchases_enabled FROM inventory", &[])
        .await
        .expect("inventory");
    assert_eq!(
        (
            inventory.get::<_, i64>(0),
            inventory.get::<_, i64>(1),
            inventory.get::<_, i64>(2),
            inventory.get::<_, bool>(3)
        ),
        (0, 0, 1, true)
    );
    let lease: i64 = client.query_one("SELECT epoch FROM lease", &[]).await.expect("lease").get(0);
    assert_eq!(lease, 0, "nobody holds the lease yet");

    let usd = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(usd.path(), "currency = \"USD\"\n").expect("writes");
    let config = usd.path().display().to_string();
    let (code, output) = creditd(&["init", "--config", &config], &[("CREDITD_STORE", &url)]);
    assert_eq!(code, 2, "a second init is refused: {output}");
    assert!(output.contains("already holds a creditd store"), "{output}");
    assert!(!output.contains("pw-never-shown"), "{output}");
    let currency: String = client.query_one("SELECT currency FROM meta", &[]).await.expect("meta").get(0);
    assert_eq!(currency, "EUR", "the refused init changed nothing");
}

/// Goal: an unreachable database is a clear error (exit 2) naming where it
/// looked, without the password, and nothing is created.
#[test]
fn init_on_an_unreachable_database_names_it_without_the_password() {
    let port = common::free_port();
    let url = format!("postgres://creditd:pw-never-shown@127.0.0.1:{port}/creditd");
    let (code, output) = creditd(&["init", "--store", &url], &[]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(&format!("127.0.0.1:{port}/creditd")), "{output}");
    assert!(!output.contains("pw-never-shown"), "{output}");
}

/// Goal: a backup of a sled node under load, restored into PostgreSQL
/// (`creditd restore --store`), passes `creditd check --store` and holds the
/// same wallets, holds, spends, revenue, kill switch, API keys and
/// idempotency records (SPEC §11, §12); a node serving from it shows the
/// same wallets and replays an old key; a changed balance makes `check
/// --store` fail; a database that already holds a store is refused.
#[tokio::test]
async fn a_sled_backup_restored_into_postgres_passes_check_and_holds_the_same_wallets() {
    use common::{admin_post, capture, client, hold, purchase, refund, release, spend, ADMIN_TOKEN};
    let Some(database) = Postgres::start() else { return };
    let provider = common::provider(100_000);
    let dir = common::temp_dir();
    let server = common::Server::start(&provider, &dir.path().join("sled")).await;
    let admin = client();
    let (key_id, key) = common::create_key(&server, "shop", &["storefront", "enhancement"]).await;
    let (revoked_id, _) = common::create_key(&server, "old shop", &["read"]).await;
    let gone = admin.delete(server.url(&format!("/api/admin/keys/{revoked_id}"))).send().await.expect("answers");
    assert_eq!(gone.status(), 200);
    let shop = common::client_with_key(&key);
    let mut first = None;
    for n in 0..40 {
        let bought = purchase(&shop, &server.base, &format!("u{}", n % 7), "starter", &format!("p-{n}")).await;
        assert_eq!(bought.status, 200, "{bought:?}");
        first.get_or_insert(bought.body);
    }
    let held = |answer: common::Answer| answer.body["holdId"].as_str().expect("hold id").to_owned();
    let _open = held(hold(&shop, &server, "u1", "creative", 600).await);
    let captured = held(hold(&shop, &server, "u2", "starter", 600).await);
    assert_eq!(capture(&shop, &server, &captured).await.status, 200);
    let released = held(hold(&shop, &server, "u3", "starter", 600).await);
    assert_eq!(release(&shop, &server, &released).await.status, 200);
    let spent = spend(&shop, &server, "u4", 7, "s-1").await;
    assert_eq!(refund(&shop, &server, spent.body["spendId"].as_str().expect("id")).await.status, 200);
    assert_eq!(spend(&shop, &server, "u5", 3, "s-2").await.status, 200);
    let price = serde_json::json!({"price": 7_999});
    let repriced = admin.put(server.url("/api/admin/packages/pro")).bearer_auth(ADMIN_TOKEN).json(&price);
    assert_eq!(repriced.send().await.expect("answers").status(), 200);
    let reason = serde_json::json!({"reason": "moving to PostgreSQL"});
    assert_eq!(admin_post(&admin, &server.url("/api/admin/purchases/disable"), Some(reason)).await.status, 200);
    let mut wallets = Vec::new();
    for n in 0..7 {
        let wallet = common::get(&shop, &server.url(&format!("/api/users/u{n}/credits"))).await;
        wallets.push((format!("u{n}"), wallet.body["balance"].as_i64().expect("a balance")));
    }

    let backup = dir.path().join("full.ndjson");
    let output = Command::new(common::binary())
        .args(["backup", "--url", &server.base, "--to"])
        .arg(&backup)
        .env_clear()
        .env("CREDITD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("backup runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let backup = backup.display().to_string();

    let url = database.url();
    let (code, output) = creditd(&["restore", "--from", &backup, "--store", &url], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("OK"), "restore runs check --store: {output}");
    let (code, output) = creditd(&["check"], &[("CREDITD_STORE", &url)]);
    assert_eq!(code, 0, "{output}");

    let client = creditd::store::postgres::connect(&url).await.expect("connects");
    for (user, balance) in &wallets {
        let row = client.query_one("SELECT balance FROM wallets WHERE user_id = $1", &[user]).await.expect("wallet");
        assert_eq!(row.get::<_, i64>(0), *balance, "wallet {user}");
    }
    let inventory =
        client.query_one("SELECT purchases_enabled, disabled_reason FROM inventory", &[]).await.expect("row");
    assert_eq!(
        (inventory.get::<_, bool>(0), inventory.get::<_, Option<String>>(1)),
        (false, Some("moving to PostgreSQL".to_owned()))
    );
    let keys = client.query("SELECT id, revoked_at IS NOT NULL FROM api_keys ORDER BY id", &[]).await.expect("keys");
    let keys: Vec<(String, bool)> = keys.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert!(keys.contains(&(key_id.clone(), false)) && keys.contains(&(revoked_id, true)), "{keys:?}");
    let scoped: i64 = client
        .query_one("SELECT count(*) FROM idempotency WHERE caller = $1", &[&key_id])
        .await
        .expect("idempotency")
        .get(0);
    assert_eq!(scoped, 40 + 2, "every purchase and spend of the shop (its holds had no key), scoped to its key");
    let states =
        client.query("SELECT state, count(*) FROM holds GROUP BY state ORDER BY state", &[]).await.expect("holds");
    let states: Vec<(String, i64)> = states.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(states, [("captured".into(), 1), ("open".into(), 1), ("released".into(), 1)]);

    // A cluster node on the restored database serves the same wallets, to the
    // same API key, and answers a retry of an old key with its first answer.
    let node = common::Server::start_with(&provider, dir.path(), &[("CREDITD_STORE", &url)]).await;
    for (user, balance) in &wallets {
        let wallet = common::get(&shop, &node.url(&format!("/api/users/{user}/credits"))).await;
        assert_eq!(wallet.body["balance"].as_i64(), Some(*balance), "wallet {user} served from PostgreSQL: {wallet:?}");
    }
    let again = purchase(&shop, &node.base, "u0", "starter", "p-0").await;
    assert_eq!((again.status, Some(again.body)), (200, first), "the retry gets the first answer");
    drop(node);

    let (code, output) = creditd(&["restore", "--from", &backup, "--store", &url], &[]);
    assert_eq!(code, 2, "a database that holds a store is refused: {output}");
    client.execute("UPDATE wallets SET balance = balance + 1 WHERE user_id = 'u1'", &[]).await.expect("tampers");
    let (code, output) = creditd(&["check", "--store", &url], &[]);
    assert_eq!(code, 1, "a balance the ledger does not explain fails check: {output}");
    assert!(output.contains("wallet \"u1\""), "{output}");
}

/// Goal: `check --store` on a database without a store says so (exit 2).
#[tokio::test]
async fn check_on_a_database_without_a_store_says_so() {
    let Some(database) = Postgres::start() else { return };
    let (code, output) = creditd(&["check", "--store", &database.url()], &[]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("holds no creditd store"), "{output}");
}

/// Goal: the lease of SPEC §12. One holder at a time; another node takes it
/// only once it has expired by the database's clock, with the next epoch;
/// the old holder can neither renew nor commit (its group's fence fails),
/// while the new one can; a takeover waits for a group in flight instead of
/// slipping under it.
#[tokio::test]
async fn the_lease_has_one_holder_and_fences_the_old_one() {
    use creditd::store::postgres::lease::{fence, leader, renew, try_acquire, Fenced};
    use std::time::Duration;
    let Some(database) = Postgres::start() else { return };
    let (code, output) = creditd(&["init", "--store", &database.url()], &[]);
    assert_eq!(code, 0, "{output}");
    let mut a = creditd::store::postgres::connect(&database.url()).await.expect("a connects");
    let b = creditd::store::postgres::connect(&database.url()).await.expect("b connects");
    let ttl = Duration::from_millis(400);

    let first = try_acquire(&a, "a", "http://a:8080", ttl).await.expect("query").expect("a takes the free lease");
    assert_eq!(first.epoch, 1);
    assert_eq!(try_acquire(&b, "b", "http://b:8080", ttl).await.expect("query"), None, "held: b waits");
    let seen = leader(&b).await.expect("query").expect("a leader");
    assert_eq!((seen.epoch, seen.holder.as_str(), seen.advertise_url.as_deref()), (1, "a", Some("http://a:8080")));
    let renewed = renew(&a, "a", first.epoch, ttl).await.expect("query").expect("a renews");
    assert!(renewed.expires_at_ms >= first.expires_at_ms);
    assert_eq!(renew(&b, "b", first.epoch, ttl).await.expect("query"), None, "only the holder renews");

    // a stops renewing (paused): b takes over once the lease has expired.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(lease) = try_acquire(&b, "b", "http://b:8080", ttl).await.expect("query") {
            break lease;
        }
        assert!(std::time::Instant::now() < deadline, "b never took the expired lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(second.epoch, 2, "the next epoch");
    assert_eq!(renew(&a, "a", first.epoch, ttl).await.expect("query"), None, "a lost it");

    // a resumes and tries to commit a group under its old epoch: fenced.
    let transaction = a.transaction().await.expect("begins");
    let fenced = fence(&transaction, first.epoch).await.expect("query");
    assert!(matches!(&fenced, Err(Fenced { ours: 1, message }) if message.contains("lease's 2")), "{fenced:?}");
    transaction.rollback().await.expect("rolls back");
    let mut b = b;
    let transaction = b.transaction().await.expect("begins");
    assert_eq!(fence(&transaction, second.epoch).await.expect("query"), Ok(()), "the new leader commits");

    // While b's group holds the fence, a takeover (after expiry) waits for it.
    let c = creditd::store::postgres::connect(&database.url()).await.expect("c connects");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while leader(&c).await.expect("query").is_some() {
        assert!(std::time::Instant::now() < until, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover =
        tokio::spawn(async move { try_acquire(&c, "c", "http://c:8080", ttl).await.map(|lease| (lease, c)) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!takeover.is_finished(), "the takeover waits for the group in flight");
    transaction.commit().await.expect("b's group commits under its epoch");
    let (third, _c) = takeover.await.expect("joins").expect("query");
    assert_eq!(third.map(|lease| lease.epoch), Some(3), "then c takes it, with the next epoch");
}

/// Goal: the group commit itself is fenced (SPEC §12): a store opened by
/// the leader of an old epoch commits nothing once another node holds the
/// lease, even a group that collides with nothing the new leader wrote;
/// the new leader's group commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_an_old_epoch_commits_nothing() {
    use creditd::store::postgres::lease::try_acquire;
    use creditd::store::postgres::PgStore;
    use creditd::store::records::PruneCursor;
    use creditd::store::{Store, StoreError, Write, WriteSet};
    use std::sync::Arc;
    use std::time::Duration;
    let Some(database) = Postgres::start() else { return };
    let url = database.url();
    let (code, output) = creditd(&["init", "--store", &url], &[]);
    assert_eq!(code, 0, "{output}");
    let client = creditd::store::postgres::connect(&url).await.expect("connects");
    let ttl = Duration::from_millis(300);
    let old = try_acquire(&client, "old", "http://old", ttl).await.expect("query").expect("the free lease");
    let opened = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || PgStore::open(&url, old.epoch, ttl)).await.expect("joins")
    };
    let old_store = Store::Postgres(Arc::new(opened.expect("opens")));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let new = loop {
        if let Some(lease) = try_acquire(&client, "new", "http://new", ttl).await.expect("query") {
            break lease;
        }
        assert!(std::time::Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let opened = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || PgStore::open(&url, new.epoch, ttl)).await.expect("joins")
    };
    let new_store = Store::Postgres(Arc::new(opened.expect("opens")));

    let write = |store: Store, last_seq: u64| {
        tokio::task::spawn_blocking(move || {
            let mut writes = WriteSet::default();
            writes.push(Write::PruneCursor(PruneCursor { last_seq }));
            let outcome = store.write_durably([&writes]);
            (outcome, store.prune_cursor().expect("reads"))
        })
    };
    let (outcome, cursor) = write(old_store, 7).await.expect("joins");
    assert!(matches!(outcome, Err(StoreError::Fenced(_))), "{outcome:?}");
    assert_eq!(cursor, None, "the old epoch's group left nothing");
    let (outcome, cursor) = write(new_store, 9).await.expect("joins");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(cursor.map(|cursor| cursor.last_seq), Some(9), "the new leader's group is committed");
}
