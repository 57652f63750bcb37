use std::process::Command;

use futures_util::future::join_all;

use crate::common::{binary, client, get, provider, try_purchase, temp_dir, Server};

/// Goal: `serve` refuses to start without its configuration (SPEC §11),
/// with exit code 2 and the name of every missing variable.
#[test]
fn serve_without_provider_or_admin_configuration_exits_2_naming_what_is_missing() {
    let dir = temp_dir();
    let cases: [(&[(&str, &str)], &[&str]); 3] = [
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
    let buyers = tokio::spawn({
        let client = client.clone();
        async move {
            join_all((0..64).map(|i| {
                let (client, base) = (client.clone(), base.clone());
                async move { try_purchase(&client, &base, &format!("drain-{i}"), "starter", &format!("drain-{i}")).await }
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
