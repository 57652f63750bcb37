use std::process::Command;

use futures_util::future::join_all;

use crate::common::{binary, client, get, provider, temp_dir, try_purchase, Server};

/// Goal: `serve` refuses to start without its configuration (SPEC §11),
/// with exit code 2 and the name of every missing variable.
#[test]
fn serve_without_provider_or_admin_configuration_exits_2_naming_what_is_missing() {
    let dir = temp_dir();
    type Variables<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Variables, &[&str]); 3] = [
        (&[], &["NANOBANANA_BASE_URL", "NANOBANANA_API_KEY", "CREDITD_ADMIN_TOKEN"]),
        (&[("NANOBANANA_BASE_URL", "http://127.0.0.1:9"), ("NANOBANANA_API_KEY", "k")], &["CREDITD_ADMIN_TOKEN"]),
        (&[("CREDITD_ADMIN_TOKEN", "t"), ("NANOBANANA_API_KEY", "k")], &["NANOBANANA_BASE_URL"]),
    ];
    for (env, missing) in cases {
        let output = Command::new(binary())
            .arg("serve")
            .env_clear()
            .env("CREDITD_DATA_DIR", dir.path())
            .env("CREDITD_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .output()
            .expect("creditd runs");
        assert_eq!(output.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for name in missing {
            assert!(stderr.contains(name), "{env:?}: {stderr}");
        }
        assert!(!stderr.contains("\"k\"") && !stderr.contains("=k"), "secrets are not printed: {stderr}");
    }
}

/// Goal: SIGTERM drains in-flight requests and exits 0, and what was
/// acknowledged is there after the restart.
#[tokio::test]
async fn sigterm_drains_in_flight_purchases_and_exits_0() {
    let provider = provider(1_000_000);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();

    let base = server.base.clone();
    let buyers =
        tokio::spawn({
            let client = client.clone();
            async move {
                join_all((0..64).map(|i| {
                    let (client, base) = (client.clone(), base.clone());
                    async move {
                        try_purchase(&client, &base, &format!("drain-{i}"), "starter", &format!("drain-{i}")).await
                    }
                }))
                .await
            }
        });
    // Wait until the server has started answering some of them, then stop it.
    while crate::common::ledger(&client, &server).await.len() < 2 {
        tokio::task::yield_now().await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    });
    let answers = buyers.await.expect("buyers finish");
    let (status, mut server) = status.await.expect("joins");
    assert!(status.success(), "exit status {status:?}");

    server.restart().await;
    for (i, answer) in answers.iter().enumerate() {
        if let Ok(answer) = answer {
            if answer.status == 200 {
                let wallet = get(&client, &server.url(&format!("/api/users/drain-{i}/credits"))).await;
                assert_eq!(wallet.body["balance"], 10, "acknowledged purchase {i} survived the shutdown");
            }
        }
    }
    assert!(answers.iter().filter(|a| matches!(a, Ok(a) if a.status == 200)).count() >= 1);
}

/// Goal: `creditd check` and the start-up check catch a state that the
/// ledger does not explain (SPEC §4.5, §4.6). Method: buy, stop the server,
/// credit a wallet behind the ledger's back, then run `check` and `serve`
/// with `CREDITD_VERIFY_WALLETS_AT_START` (start-up reads every wallet only
/// when asked; `tests/engine.rs` shows it does not otherwise).
#[tokio::test]
async fn check_and_start_up_refuse_a_wallet_the_ledger_does_not_explain() {
    let provider = provider(938);
    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    let mut server = Server::start(&provider, &data_dir).await;
    let client = client();
    assert_eq!(crate::common::purchase(&client, &server.base, "eve", "starter", "e-1").await.status, 200);
    assert!(server.terminate().success());
    let (code, report) = crate::common::run_check(&data_dir);
    assert_eq!(code, 0, "{report}");

    {
        let store = creditd::store::Store::open(&data_dir).expect("opens");
        let user = creditd::domain::UserId::parse("eve").expect("valid");
        let mut wallet = store.wallet(&user).expect("reads").expect("exists");
        wallet.balance = creditd::domain::UserCredits::new(1_000).expect("small");
        wallet.version += 1;
        let mut writes = creditd::store::WriteSet::default();
        writes.put_wallet(&user, &wallet);
        store.write_durably([&writes]).expect("writes");
    }
    let (code, report) = crate::common::run_check(&data_dir);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("wallet \"eve\": stored 1000, the ledger gives 10"), "{report}");

    let output = Command::new(binary())
        .arg("serve")
        .env_clear()
        .env("CREDITD_DATA_DIR", &data_dir)
        .env("CREDITD_LISTEN", "127.0.0.1:0")
        .env("CREDITD_ADMIN_TOKEN", crate::common::ADMIN_TOKEN)
        .env("CREDITD_VERIFY_WALLETS_AT_START", "true")
        .env("NANOBANANA_BASE_URL", provider.base_url())
        .env("NANOBANANA_API_KEY", crate::common::PROVIDER_KEY)
        .output()
        .expect("creditd runs");
    assert!(!output.status.success(), "serve refuses an inconsistent directory");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Σ wallets"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Goal: `check` names a directory that is not a creditd data directory,
/// and never creates one (SPEC §11).
#[test]
fn check_on_a_missing_directory_exits_2_and_creates_nothing() {
    let dir = temp_dir();
    let missing = dir.path().join("nothing-here");
    let (code, report) = crate::common::run_check(&missing);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("not a creditd data directory"), "{report}");
    assert!(!missing.exists(), "check created {}", missing.display());
}

/// `creditd serve` on `data_dir` with the test's provider settings, run to
/// its exit: (exit code, stderr).
fn serve_to_exit(data_dir: &std::path::Path, config: Option<&std::path::Path>) -> (Option<i32>, String) {
    let mut command = Command::new(binary());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let child = command
        .arg("serve")
        .env_clear()
        .env("CREDITD_DATA_DIR", data_dir)
        .env("CREDITD_LISTEN", "127.0.0.1:0")
        .env("CREDITD_ADMIN_TOKEN", crate::common::ADMIN_TOKEN)
        .env("NANOBANANA_BASE_URL", "http://127.0.0.1:9")
        .env("NANOBANANA_API_KEY", crate::common::PROVIDER_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("creditd runs");
    // A server that starts instead of refusing would never exit: give up after a while.
    let mut guard = crate::common::Guarded(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("waits") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let Some(status) = status else { return (None, "serve started instead of refusing".to_owned()) };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut guard.0.stderr.take().expect("piped"), &mut stderr).expect("reads");
    (status.code(), stderr)
}

/// Goal: an unmounted volume or a wrong working directory never silently
/// becomes a fresh ledger (SPEC §11). Method: `serve` on a missing
/// directory, an empty one, one holding someone else's files, and a sled
/// directory without creditd's records; each exits 2 naming `creditd init`
/// and leaves the directory as it found it.
#[test]
fn serve_refuses_a_missing_empty_or_foreign_data_directory_naming_creditd_init() {
    let dir = temp_dir();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("creates");
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).expect("creates");
    std::fs::write(foreign.join("notes.txt"), "someone else's").expect("writes");
    let bare_sled = dir.path().join("bare-sled");
    drop(creditd::store::SledStore::create(&bare_sled).expect("a sled directory without creditd's records"));
    for (name, data_dir) in [("missing", &missing), ("empty", &empty), ("foreign", &foreign), ("bare sled", &bare_sled)]
    {
        let listing = |path: &std::path::Path| {
            std::fs::read_dir(path)
                .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect::<Vec<_>>())
                .ok()
        };
        let before = listing(data_dir);
        let (code, stderr) = serve_to_exit(data_dir, None);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("creditd init"), "{name}: names creditd init: {stderr}");
        assert_eq!(listing(data_dir), before, "{name}: serve changed the directory");
    }
}

/// Goal: `creditd init` is the deliberate step that makes a store, once
/// (SPEC §11), and `serve` then starts on it.
#[tokio::test]
async fn init_creates_a_store_once_and_serve_starts_on_it() {
    let provider = provider(938);
    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    let (code, output) = crate::common::run_init(&data_dir, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("ratio 4") && output.contains("EUR"), "init says what it recorded: {output}");
    let (code, output) = crate::common::run_init(&data_dir, &[]);
    assert_eq!(code, 2, "a second init refuses a store that holds data: {output}");
    let mut server = Server::start(&provider, &data_dir).await;
    assert_eq!(crate::common::purchase(&client(), &server.base, "u", "starter", "k").await.status, 200);
    assert!(server.terminate().success());
    let (code, output) = crate::common::run_init(&data_dir, &[]);
    assert_eq!(code, 2, "{output}");
    let (code, report) = crate::common::run_check(&data_dir);
    assert_eq!(code, 0, "init refused without touching the store: {report}");
}

/// Goal: a store keeps the ratio and currency it was made with; a server
/// configured otherwise refuses to start (SPEC §11) instead of answering
/// every purchase with an error.
#[test]
fn serve_refuses_a_ratio_or_currency_other_than_the_stores() {
    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    let (code, output) = crate::common::run_init(&data_dir, &[]);
    assert_eq!(code, 0, "{output}");
    for (setting, mentions) in [("ratio = 5", "ratio"), ("currency = \"USD\"", "currency")] {
        let config = dir.path().join("creditd.toml");
        std::fs::write(&config, format!("{setting}\n")).expect("writes");
        let (code, stderr) = serve_to_exit(&data_dir, Some(&config));
        assert_eq!(code, Some(2), "{setting}: {stderr}");
        assert!(stderr.contains(mentions), "{setting}: {stderr}");
    }
}

/// Goal: `creditd demo` needs no step before it (SPEC §11): it makes its
/// own fresh store and serves the storefront API at once.
#[tokio::test]
async fn demo_needs_no_init_and_sells() {
    let mut child = Command::new(binary())
        .arg("demo")
        .env_clear()
        .env("CREDITD_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    // Read to the end: the demo prints its banner after the address, and a
    // closed pipe would fail that print.
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("creditd listening on ") {
                let _ = sender.send(base.to_owned());
            }
            if let Some(key) = line.trim().strip_prefix("API key") {
                let _ = sender.send(key.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let wait = std::time::Duration::from_secs(60);
    let base = receiver.recv_timeout(wait).expect("demo prints its address");
    let key = receiver.recv_timeout(wait).expect("demo prints its API key");
    let guard = crate::common::Guarded(child);
    let client = crate::common::client_with_key(&key);
    crate::common::eventually("the demo is ready", || {
        let (client, url) = (client.clone(), format!("{base}/readyz"));
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let anonymous = crate::common::purchase(&reqwest::Client::new(), &base, "alice", "pro", "demo-0").await;
    assert_eq!(anonymous.status, 401, "no purchase without a key: {anonymous:?}");
    let bought = crate::common::purchase(&client, &base, "alice", "pro", "demo-1").await;
    assert_eq!((bought.status, bought.body["balance"].clone()), (200, 100.into()), "with the printed key: {bought:?}");
    drop(guard);
}

/// Goal: a server whose standard output is closed (a supervisor that drops
/// it, a full disk under a redirect) keeps serving: printing its address
/// must not fail it (with the panic policy, a failed `println!` would abort).
#[tokio::test]
async fn serve_keeps_serving_when_its_standard_output_is_closed() {
    let provider = provider(938);
    let dir = temp_dir();
    crate::common::init_if_new(dir.path(), &[]);
    let port = crate::common::free_port();
    let mut child = Command::new(binary())
        .arg("serve")
        .env_clear()
        .env("CREDITD_DATA_DIR", dir.path())
        .env("CREDITD_LISTEN", format!("127.0.0.1:{port}"))
        .env("CREDITD_ADMIN_TOKEN", crate::common::ADMIN_TOKEN)
        .env("NANOBANANA_BASE_URL", provider.base_url())
        .env("NANOBANANA_API_KEY", crate::common::PROVIDER_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    drop(child.stdout.take());
    let guard = crate::common::Guarded(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    crate::common::eventually("the server is ready", || {
        let (client, url) = (client.clone(), format!("{base}/readyz"));
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert_eq!(crate::common::purchase(&client, &base, "u", "starter", "k").await.status, 200);
    drop(guard);
}
