//! Online backup and restore (SPEC §11): `creditd backup` from a running
//! server, `creditd restore` into a new store.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use creditd::store::records::LedgerEntry;
use serde_json::json;

use crate::common::{
    admin_post, binary, capture, client, get, hold, provider, purchase, refund, release, run_check, spend, temp_dir,
    Server, ADMIN_TOKEN,
};

/// Runs `creditd backup` against `server`: (exit code, stdout + stderr).
fn run_backup(server: &Server, to: &Path, after: u64) -> (i32, String) {
    run_backup_with(server, to, after, &[])
}

/// As [`run_backup`], with more environment (`CREDITD_BACKUP_KEY`).
fn run_backup_with(server: &Server, to: &Path, after: u64, env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(binary())
        .args(["backup", "--url", &server.base, "--after", &after.to_string(), "--to"])
        .arg(to)
        .env_clear()
        .env("CREDITD_ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(env.iter().copied())
        .output()
        .expect("creditd backup runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Runs `creditd restore`: (exit code, stdout + stderr).
fn run_restore(from: &[&Path], data_dir: &Path) -> (i32, String) {
    run_restore_with(from, data_dir, &[])
}

fn run_restore_with(from: &[&Path], data_dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(binary());
    command.arg("restore").arg("--data-dir").arg(data_dir).arg("--from");
    command.args(from);
    let output = command.env_clear().envs(env.iter().copied()).output().expect("creditd restore runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// The `upTo` of a backup file's header.
fn up_to(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).expect("reads");
    let header: serde_json::Value = serde_json::from_str(text.lines().next().expect("a header")).expect("JSON");
    header["upTo"].as_u64().expect("upTo")
}

/// Everything a store holds that a restore must reproduce, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    inventory: creditd::store::records::InventoryRecord,
    ledger: Vec<LedgerEntry>,
    wallets: BTreeMap<String, creditd::store::records::WalletRecord>,
    holds: Vec<creditd::store::records::HoldRecord>,
    open_holds: Vec<creditd::domain::HoldId>,
    spends: Vec<creditd::store::records::SpendRecord>,
    packages: Vec<(String, creditd::store::records::PackageOverride)>,
    idempotency: Vec<Option<creditd::store::records::IdempotencyRecord>>,
}

fn contents(data_dir: &Path) -> Contents {
    let store = creditd::store::SledStore::open(data_dir).expect("opens");
    let ledger: Vec<LedgerEntry> = store.ledger().map(|item| item.expect("reads").1).collect();
    let idempotency = ledger
        .iter()
        .filter_map(|entry| Some((entry.kind.operation()?, entry.caller.clone(), entry.idempotency_key.clone()?)))
        .map(|(operation, caller, key)| store.idempotency(operation, caller.as_ref(), &key).expect("reads"))
        .collect();
    Contents {
        inventory: store.inventory().expect("reads").expect("exists"),
        wallets: store.wallets().map(|item| item.expect("reads")).map(|(user, w)| (user.to_string(), w)).collect(),
        holds: store.holds().map(|item| item.expect("reads")).collect(),
        open_holds: store.open_hold_ids().expect("reads"),
        spends: store.spends().map(|item| item.expect("reads")).collect(),
        packages: store.package_overrides().expect("reads"),
        idempotency,
        ledger,
    }
}

/// Goal: a backup of a running server, restored into a new directory, is
/// the same store (SPEC §11): every ledger entry, wallet, hold, spend,
/// revenue figure, package setting, the kill switch and the idempotency
/// keys; `check` passes on it, and a retry of an old key gets its first
/// answer from the restored store. Method: every kind of change, a full
/// backup, more changes, an incremental backup, stop, restore both, compare
/// the two stores record by record; then the ways a restore must refuse.
#[tokio::test]
async fn a_full_and_an_incremental_backup_restore_into_the_same_store() {
    let provider = provider(100_000);
    let dir = temp_dir();
    let source = dir.path().join("source");
    let mut server = Server::start(&provider, &source).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "ann", "pro", "p-1").await.status, 200);
    assert_eq!(purchase(&client, &server.base, "bob", "starter", "p-2").await.status, 200);
    let held = |answer: crate::common::Answer| answer.body["holdId"].as_str().expect("hold id").to_owned();
    let open = held(hold(&client, &server, "ann", "creative", 600).await);
    let captured = held(hold(&client, &server, "bob", "starter", 600).await);
    assert_eq!(capture(&client, &server, &captured).await.status, 200);
    let released = held(hold(&client, &server, "cy", "starter", 600).await);
    assert_eq!(release(&client, &server, &released).await.status, 200);
    let spent = spend(&client, &server, "ann", 7, "s-1").await;
    assert_eq!(spend(&client, &server, "ann", 3, "s-2").await.status, 200);
    let spend_id = spent.body["spendId"].as_str().expect("spend id").to_owned();
    assert_eq!(refund(&client, &server, &spend_id).await.status, 200);
    let price = json!({"price": 7_999});
    let repriced = client.put(server.url("/api/admin/packages/pro")).bearer_auth(ADMIN_TOKEN).json(&price);
    assert_eq!(repriced.send().await.expect("answers").status(), 200);
    let reason = json!({"reason": "provider maintenance"});
    assert_eq!(admin_post(&client, &server.url("/api/admin/purchases/disable"), Some(reason)).await.status, 200);

    let full = dir.path().join("full.ndjson");
    let (code, output) = run_backup(&server, &full, 0);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("sha256"), "{output}");
    let point = up_to(&full);
    assert_eq!(admin_post(&client, &server.url("/api/admin/purchases/enable"), None).await.status, 200);
    assert_eq!(purchase(&client, &server.base, "dee", "studio", "p-3").await.status, 200);
    let incremental = dir.path().join("incremental.ndjson");
    let (code, output) = run_backup(&server, &incremental, point);
    assert_eq!(code, 0, "{output}");
    assert_eq!(up_to(&incremental), point + 2, "the kill switch and the purchase after the full backup");
    assert!(server.terminate().success());

    let restored = dir.path().join("restored");
    let (code, output) = run_restore(&[&full, &incremental], &restored);
    assert_eq!(code, 0, "{output}");
    assert_eq!(run_check(&restored).0, 0);
    assert_eq!(contents(&restored), contents(&source), "the restored store is the source, record by record");

    let at_point = dir.path().join("at-point");
    let (code, output) = run_restore(&[&full], &at_point);
    assert_eq!(code, 0, "{output}");
    let (then, now) = (contents(&at_point), contents(&source));
    assert_eq!(then.ledger[..], now.ledger[..usize::try_from(point).expect("small")], "the ledger up to its point");
    assert!(!then.inventory.purchases_enabled, "the kill switch as it was at the point");
    assert_eq!(then.inventory.disabled_reason.as_deref(), Some("provider maintenance"));
    assert!(!then.wallets.contains_key("dee"), "nothing after the point");

    let mut restarted = Server::start(&provider, &restored).await;
    let retried = purchase(&client, &restarted.base, "ann", "pro", "p-1").await;
    assert_eq!((retried.status, retried.body["balance"].clone()), (200, 100.into()), "the first answer: {retried:?}");
    let wallet = get(&client, &restarted.url("/api/users/ann/credits")).await;
    assert_eq!(wallet.body["balance"], 97, "100 bought, 7 spent and refunded, 3 spent");
    let still_open = release(&client, &restarted, &open).await;
    assert_eq!(still_open.status, 200, "the open hold is open in the restored store");
    assert!(restarted.terminate().success());

    let (code, output) = run_restore(&[&full], &restored);
    assert_eq!(code, 2, "never into a store that holds data: {output}");
    let (code, output) = run_restore(&[&incremental], &dir.path().join("gap"));
    assert_ne!(code, 0, "an incremental backup alone is not a store: {output}");
    assert!(output.contains("full one"), "{output}");
    let mut damaged = std::fs::read(&full).expect("reads");
    let middle = damaged.len() / 2;
    damaged[middle] = if damaged[middle] == b'1' { b'2' } else { b'1' };
    let damaged_file = dir.path().join("damaged.ndjson");
    std::fs::write(&damaged_file, damaged).expect("writes");
    let (code, output) = run_restore(&[&damaged_file], &dir.path().join("from-damaged"));
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("checksum") || output.contains("line"), "names the damage: {output}");
    assert!(!dir.path().join("from-damaged").exists(), "nothing is created from a damaged backup");
}

/// Goal: a backup taken while 64 clients buy, hold and spend is consistent
/// at its sequence number: restored alone it passes `check` and equals the
/// source's ledger up to that point; with an incremental backup taken after
/// the load, it equals the stopped source record by record. Method: `creditd
/// loadtest` runs beside `creditd backup`; `BACKUP_LOAD_SECS` (default 3)
/// sets how long the load runs, `BACKUP_AT_ENTRY` (default 5 000) how deep
/// into the ledger the backup starts.
#[tokio::test]
async fn a_backup_under_load_is_consistent_at_its_sequence_number() {
    let seconds: u64 = std::env::var("BACKUP_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let provider = provider(1_000_000_000_000);
    let dir = temp_dir();
    let source = dir.path().join("source");
    let mut server = Server::start(&provider, &source).await;
    let load = Command::new(binary())
        .args(["loadtest", "--quiet", "--clients", "64", "--users", "5000", "--seconds", &seconds.to_string()])
        .args(["--mix", "purchase=60,hold=20,spend=20", "--url", &server.base])
        .env_clear()
        .env("CREDITD_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("loadtest starts");
    let mut load = load;
    let client = client();
    // Well into the load: past entry BACKUP_AT_ENTRY, or (on a slow machine) as late as the load lasts.
    let at_entry: u64 = std::env::var("BACKUP_AT_ENTRY").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let deep_enough = server.url(&format!("/api/admin/ledger?after={at_entry}&limit=1"));
    loop {
        let answer = crate::common::admin_get(&client, &deep_enough).await;
        let far = answer.body["entries"].as_array().is_some_and(|entries| !entries.is_empty());
        if far || load.try_wait().expect("polls").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let full = dir.path().join("under-load.ndjson");
    let started = std::time::Instant::now();
    let (code, output) = run_backup(&server, &full, 0);
    let took = started.elapsed();
    assert_eq!(code, 0, "{output}");
    let load = load.wait_with_output().expect("loadtest ends");
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stdout));
    let point = up_to(&full);
    let incremental = dir.path().join("after-load.ndjson");
    let (code, output) = run_backup(&server, &incremental, point);
    assert_eq!(code, 0, "{output}");
    assert!(server.terminate().success());

    let at_point = dir.path().join("at-point");
    let (code, output) = run_restore(&[&full], &at_point);
    assert_eq!(code, 0, "{output}");
    let (then, now) = (contents(&at_point), contents(&source));
    let point_index = usize::try_from(point).expect("small");
    assert_eq!(then.ledger[..], now.ledger[..point_index], "the ledger up to the point, exactly");
    let last = &now.ledger[point_index - 1];
    assert_eq!(
        (then.inventory.provider_balance, then.inventory.reserved),
        (last.provider_balance_after, last.reserved_after),
        "the inventory as entry {point} left it"
    );
    let restored = dir.path().join("restored");
    let (code, output) = run_restore(&[&full, &incremental], &restored);
    assert_eq!(code, 0, "{output}");
    assert_eq!(contents(&restored), now, "full + incremental = the stopped source");
    eprintln!(
        "backup under 64-client load: {point} of {} entries at the point, {} wallets; backup took {took:?}; \
         {} entries after it; restore + check passed",
        now.ledger.len(),
        then.wallets.len(),
        now.ledger.len() - point_index
    );

    // The way from a sled node to cluster mode (SPEC §11, §12): the same backups into PostgreSQL.
    let Some(database) = crate::postgres::Postgres::start() else { return };
    let url = database.url();
    let restore = Command::new(binary())
        .args(["restore", "--store", &url, "--from"])
        .args([&full, &incremental])
        .env_clear()
        .output()
        .expect("restore runs");
    let text = String::from_utf8_lossy(&restore.stdout).into_owned() + &String::from_utf8_lossy(&restore.stderr);
    assert!(restore.status.success(), "restore --store: {text}");
    assert!(text.contains("OK"), "restore --store ran check --store: {text}");
    let client = creditd::store::postgres::connect(&url).await.expect("connects");
    let rows =
        client.query("SELECT user_id, balance, version FROM wallets ORDER BY user_id", &[]).await.expect("reads");
    let in_postgres: Vec<(String, i64, i64)> = rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect();
    let mut in_sled: Vec<(String, i64, i64)> = now
        .wallets
        .iter()
        .map(|(user, wallet)| {
            let big = |value: u64| i64::try_from(value).expect("small");
            (user.clone(), big(wallet.balance.get()), big(wallet.version))
        })
        .collect();
    in_sled.sort();
    assert_eq!(in_postgres, in_sled, "PostgreSQL holds the sled node's wallets");
    let entries: i64 = client.query_one("SELECT count(*) FROM ledger", &[]).await.expect("counts").get(0);
    assert_eq!(usize::try_from(entries).expect("small"), now.ledger.len(), "and every ledger entry");
    eprintln!("restored into PostgreSQL: {entries} entries, {} wallets, check --store passed", in_postgres.len());
}

/// The key a forger chooses to plant.
const CHOSEN: &str = "the forger's chosen admin key";

/// The reproduction of a forged backup: the hash of the first API key
/// replaced by the SHA-256 of a string the forger chose, its scopes set to
/// admin, and the checksum recomputed, as anyone who can edit the file can.
fn forge(signed: &Path, forged: &Path, chosen: &str) {
    let text = std::fs::read_to_string(signed).expect("reads");
    let (mut lines, mut replaced): (Vec<String>, usize) = (Vec::new(), 0);
    for line in text.lines() {
        let mut value: serde_json::Value = serde_json::from_str(line).expect("JSON");
        match value["type"].as_str() {
            Some("end") => {
                let before: String = lines.iter().map(|line| format!("{line}\n")).collect();
                value["sha256"] = json!(crate::common::sha256_hex(&before));
            }
            Some("signature") => continue,
            _ => {
                if let Some(kind) = value.pointer_mut("/entry/kind/ApiKeyCreated") {
                    let hash: Vec<u8> = (0..32)
                        .map(|i| {
                            u8::from_str_radix(&crate::common::sha256_hex(chosen)[i * 2..i * 2 + 2], 16).expect("hex")
                        })
                        .collect();
                    kind["key_hash"] = json!(hash);
                    kind["scopes"] = json!(["Admin"]);
                    replaced += 1;
                }
            }
        }
        lines.push(serde_json::to_string(&value).expect("JSON"));
    }
    let forged_text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    assert_eq!(replaced, 1, "one key was made, and it was replaced");
    std::fs::write(forged, forged_text).expect("writes");
}

/// Goal: a forged backup cannot plant an admin key (SPEC §11). With
/// `CREDITD_BACKUP_KEY`, `backup` signs the file (HMAC-SHA256 of every byte)
/// and `restore` refuses, with exit 2 and no store made, a file whose key
/// hash was replaced and checksum recomputed, an unsigned file, a file
/// signed under another key, and a short key; it restores the untouched
/// file. Without the key both commands warn that nothing is authenticated,
/// and the forgery restores: the reason the key exists.
#[tokio::test]
async fn a_forged_backup_is_refused_when_backups_are_signed() {
    let provider = provider(100_000);
    let dir = temp_dir();
    let server = Server::start(&provider, &dir.path().join("source")).await;
    let (_, shop) = crate::common::create_key(&server, "shop", &["storefront"]).await;
    assert_eq!(purchase(&crate::common::client_with_key(&shop), &server.base, "ann", "pro", "p-1").await.status, 200);
    let key = "k".repeat(40);
    let signing = [("CREDITD_BACKUP_KEY", key.as_str())];
    let (signed, unsigned, forged) =
        (dir.path().join("signed"), dir.path().join("unsigned"), dir.path().join("forged"));
    let (code, said) = run_backup_with(&server, &signed, 0, &signing);
    assert_eq!(code, 0, "{said}");
    assert!(!said.contains("not be authenticated"), "{said}");
    let last = std::fs::read_to_string(&signed).expect("reads").lines().last().expect("a line").to_owned();
    assert!(last.contains("\"type\":\"signature\"") && last.contains("hmacSha256"), "the last line signs: {last}");
    let (code, said) = run_backup(&server, &unsigned, 0);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("warning") && said.contains("not be authenticated"), "{said}");
    forge(&signed, &forged, CHOSEN);

    for (what, file, env) in [
        ("a forged file", &forged, signing.to_vec()),
        ("an unsigned file", &unsigned, signing.to_vec()),
        ("another key", &signed, vec![("CREDITD_BACKUP_KEY", "x".repeat(40).leak() as &str)]),
    ] {
        let target = dir.path().join(format!("restored-{}", what.replace(' ', "-")));
        let (code, said) = run_restore_with(&[file], &target, &env);
        assert_eq!(code, 2, "{what}: {said}");
        assert!(said.contains("not signed") || said.contains("does not match"), "{what}: {said}");
        assert!(!said.contains(&key), "the key is never printed");
        let made = std::fs::read_dir(&target).map(|entries| entries.count()).unwrap_or(0);
        assert_eq!(made, 0, "{what}: no store is made");
    }
    let (code, said) = run_restore_with(&[&signed], &dir.path().join("short"), &[("CREDITD_BACKUP_KEY", "too-short")]);
    assert_eq!(code, 2, "a key under 32 bytes is refused: {said}");
    assert!(said.contains("CREDITD_BACKUP_KEY") && !said.contains("too-short"), "{said}");

    let restored = dir.path().join("restored");
    let (code, said) = run_restore_with(&[&signed], &restored, &signing);
    assert_eq!(code, 0, "the untouched signed file restores: {said}");
    assert_eq!(run_check(&restored).0, 0);
    let unguarded = dir.path().join("unguarded");
    let (code, said) = run_restore(&[&forged], &unguarded);
    assert_eq!(code, 0, "without the key a forgery restores: {said}");
    assert!(said.contains("warning") && said.contains("not authenticated"), "{said}");
    let planted = Server::start(&provider, &unguarded).await;
    let keys = get(&crate::common::client_with_key(CHOSEN), &planted.url("/api/admin/keys")).await;
    assert_eq!(keys.status, 200, "what the key prevents: the chosen string is an admin key there: {keys:?}");
}
