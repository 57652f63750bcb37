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
        writes.put_wallet(&user, &wallet).expect("encodes");
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
        .env("CREDITD_ADMIN_TOKEN", "t")
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

/// Goal: `check` names a directory that is not a creditd data directory.
#[test]
fn check_on_a_missing_directory_exits_2() {
    let dir = temp_dir();
    let (code, report) = crate::common::run_check(&dir.path().join("nothing-here"));
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("not a creditd data directory"), "{report}");
}
