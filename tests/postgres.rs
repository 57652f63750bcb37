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

/// The tables of `migrations/V1__schema.sql`.
const TABLES: [&str; 11] = [
    "alert_events",
    "api_keys",
    "holds",
    "idempotency",
    "inventory",
    "lease",
    "ledger",
    "meta",
    "package_overrides",
    "spends",
    "wallets",
];

/// Goal: `creditd init --store postgres://…` (SPEC §11, §12) creates the
/// schema by its versioned migrations and records the store's ratio and
/// currency, an empty inventory and a lease nobody holds; a second init is
/// refused and changes nothing; errors never show a password; `serve` with
/// `CREDITD_STORE` refuses rather than fall back to a sled directory.
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
    assert_eq!(migrations, 1, "one versioned migration applied");
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

    let serve_env = [
        ("CREDITD_STORE", url.as_str()),
        ("NANOBANANA_BASE_URL", "http://127.0.0.1:9"),
        ("NANOBANANA_API_KEY", "k"),
        ("CREDITD_ADMIN_TOKEN", "t"),
        ("CREDITD_LISTEN", "127.0.0.1:0"),
    ];
    let (code, output) = creditd(&["serve"], &serve_env);
    assert_eq!(code, 2, "serve does not fall back to a sled directory: {output}");
    assert!(output.contains("CREDITD_STORE") && !output.contains("pw-never-shown"), "{output}");
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
