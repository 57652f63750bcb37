use std::time::Duration;

use crate::common::{
    admin_get, capacity, client, ledger, open_alert, provider, purchase, spend, sync_now, temp_dir, Behaviour, Server,
};

/// Goal: every way the provider can fail changes no balance, raises the
/// right alert, and the next good sync resolves it (SPEC §6).
/// Method: for each fault, the fake answers it (with a different real
/// balance, so any wrongful change shows), an operator presses sync, then
/// the fake recovers and sync is pressed again.
#[tokio::test]
async fn every_provider_fault_changes_nothing_alerts_and_recovers() {
    let provider = provider(938);
    let dir = temp_dir();
    let env = [("CREDITD_SYNC_INTERVAL_SECS", "3600"), ("CREDITD_PROVIDER_TIMEOUT_MS", "400")];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "f", "pro", "p-1").await.status, 200);
    let before = capacity(&client, &server).await;

    let faults = [
        ("HTTP 500", Behaviour::Status(500), "warning"),
        ("HTTP 503", Behaviour::Status(503), "warning"),
        ("HTTP 429", Behaviour::Status(429), "warning"),
        ("timeout", Behaviour::Slow(Duration::from_secs(3)), "warning"),
        ("not JSON", Behaviour::Garbage, "warning"),
        ("HTTP 200 with an error code", Behaviour::ErrorCode(500), "warning"),
        ("negative balance", Behaviour::Negative, "warning"),
        ("balance not an integer", Behaviour::NonInteger, "warning"),
        ("HTTP 401", Behaviour::Status(401), "critical"),
        ("HTTP 402", Behaviour::Status(402), "critical"),
    ];
    for (name, behaviour, severity) in faults {
        provider.set_behaviour(behaviour);
        provider.set_balance(777);
        let failed = sync_now(&client, &server).await;
        assert_eq!((failed.status, failed.code()), (502, "sync_failed"), "{name}: {failed:?}");
        assert_eq!(capacity(&client, &server).await, before, "{name}: no balance changed");
        let alert = open_alert(&client, &server, "sync_failed").await.unwrap_or_else(|| panic!("{name}: no alert"));
        assert_eq!(alert["severity"], severity, "{name}: {alert}");
        if name == "HTTP 401" {
            assert!(alert["message"].as_str().unwrap_or("").contains("key rejected"), "{alert}");
        }
        let status = admin_get(&client, &server.url("/api/admin/credits")).await.body;
        assert_eq!(status["lastSync"]["ok"], false, "{name}: {status}");

        provider.set_behaviour(Behaviour::Healthy);
        provider.set_balance(938);
        let recovered = sync_now(&client, &server).await;
        assert_eq!(recovered.status, 200, "{name}: {recovered:?}");
        assert!(open_alert(&client, &server, "sync_failed").await.is_none(), "{name}: the good sync resolves it");
        assert_eq!(capacity(&client, &server).await, before, "{name}");
    }
    let secret_free = admin_get(&client, &server.url("/api/admin/credits")).await;
    assert!(!secret_free.body.to_string().contains(crate::common::PROVIDER_KEY), "the provider key never shows");

    provider.set_behaviour(Behaviour::Slow(Duration::from_millis(150)));
    provider.set_balance(938);
    let slow = sync_now(&client, &server).await;
    assert_eq!(slow.status, 200, "a slow answer within the timeout is a good sync: {slow:?}");
    assert!(slow.body["durationMs"].as_u64().expect("duration") >= 150);
}

/// Goal: a sync keeps what was consumed while its request was in flight and
/// records the drift; purchases made meanwhile are kept (SPEC §6).
/// Method: the fake answers slowly with a lower balance; while the request
/// is in flight, users buy and spend; then the result is compared.
#[tokio::test]
async fn a_sync_in_flight_keeps_concurrent_consumption_and_records_drift() {
    let provider = provider(10_000);
    let dir = temp_dir();
    let env = [("CREDITD_SYNC_INTERVAL_SECS", "3600"), ("CREDITD_PROVIDER_TIMEOUT_MS", "5000")];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "early", "pro", "p-0").await.status, 200);

    provider.set_balance(9_000);
    provider.set_behaviour(Behaviour::Slow(Duration::from_millis(1500)));
    let requests_before = provider.requests();
    let in_flight = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/api/admin/credits/sync"));
        async move { crate::common::admin_post(&client, &url, None).await }
    });
    crate::common::eventually("the sync request reached the provider", || async {
        provider.requests() > requests_before
    })
    .await;
    for i in 0..5 {
        assert_eq!(
            purchase(&client, &server.base, &format!("during-{i}"), "starter", &format!("d-{i}")).await.status,
            200
        );
    }
    assert_eq!(spend(&client, &server, "early", 10, "s-1").await.status, 200);
    let synced = in_flight.await.expect("joins");
    assert_eq!(synced.status, 200, "{synced:?}");
    assert!(!in_flight_finished_early(&synced), "the purchases happened while the sync was in flight");

    assert_eq!(synced.body["realBalance"], 9_000);
    assert_eq!(synced.body["balance"], 9_000 - 40, "the spend made in flight is open: held back");
    assert_eq!(synced.body["drift"], -1_000);
    let after = capacity(&client, &server).await;
    assert_eq!(after["nanoBananaCredits"], 8_960);
    assert_eq!(after["reservedCredits"], 4 * (90 + 5 * 10), "the purchases made in flight are kept");
    let entry =
        ledger(&client, &server).await.into_iter().rev().find(|e| e["kind"] == "providerSync").expect("sync entry");
    assert_eq!((entry["heldBack"].as_u64(), entry["drift"].as_i64()), (Some(40), Some(-1_000)));
    let drift = open_alert(&client, &server, "drift").await.expect("a drift alert: more than the spend explains");
    assert!(drift["message"].as_str().unwrap_or("").contains("-1000"), "{drift}");

    // The provider did the work of the spend: it consumed its 40 credits.
    let spend_id = ledger(&client, &server).await.into_iter().rev().find(|e| e["kind"] == "spend").expect("spend")
        ["spendId"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert_eq!(crate::common::complete(&client, &server, &spend_id).await.status, 200);
    provider.set_behaviour(Behaviour::Healthy);
    provider.set_balance(8_960);
    assert_eq!(sync_now(&client, &server).await.body["drift"], 0);
    assert!(open_alert(&client, &server, "drift").await.is_none(), "a sync without drift resolves it");
}

fn in_flight_finished_early(synced: &crate::common::Answer) -> bool {
    synced.body["durationMs"].as_u64().unwrap_or(0) < 1_500
}

/// Goal: a real balance below `reserved` stops every sale until a sync
/// shows recovery, with a critical `overcommitted` alert.
#[tokio::test]
async fn an_overcommitted_platform_stops_sales_until_a_sync_recovers() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_SYNC_INTERVAL_SECS", "3600")]).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "a", "pro", "p-1").await.status, 200);
    assert_eq!(purchase(&client, &server.base, "b", "pro", "p-2").await.status, 200);

    provider.set_balance(500);
    assert_eq!(sync_now(&client, &server).await.status, 200);
    let alert = open_alert(&client, &server, "overcommitted").await.expect("overcommitted fires");
    assert_eq!(alert["severity"], "critical");
    let refused = purchase(&client, &server.base, "c", "starter", "p-3").await;
    assert_eq!((refused.status, refused.code()), (409, "insufficient_capacity"));
    let hold = crate::common::hold(&client, &server, "c", "starter", 60).await;
    assert_eq!((hold.status, hold.code()), (409, "insufficient_capacity"));
    let status = capacity(&client, &server).await;
    assert_eq!((status["availableCredits"].as_i64(), status["totalUserCredits"].as_u64()), (Some(-300), Some(0)));
    assert_eq!(spend(&client, &server, "a", 10, "s-1").await.status, 200, "spends still work");

    provider.set_balance(938);
    assert_eq!(sync_now(&client, &server).await.status, 200);
    assert!(open_alert(&client, &server, "overcommitted").await.is_none(), "recovery resolves it");
    assert_eq!(purchase(&client, &server.base, "c", "starter", "p-4").await.status, 200, "sales resume");
}

/// Goal: no successful sync for longer than the configured age raises
/// `sync_stale`; the next good sync resolves it.
#[tokio::test]
async fn a_stale_sync_raises_sync_stale_until_a_sync_succeeds() {
    let provider = provider(938);
    let dir = temp_dir();
    let env = [("CREDITD_SYNC_INTERVAL_SECS", "1"), ("CREDITD_SYNC_STALE_SECS", "2")];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let client = client();

    provider.set_behaviour(Behaviour::Status(500));
    crate::common::eventually("sync_stale fires", || async {
        open_alert(&client, &server, "sync_stale").await.is_some()
    })
    .await;
    assert!(open_alert(&client, &server, "sync_failed").await.is_some(), "the failures are alerted too");
    provider.set_behaviour(Behaviour::Healthy);
    assert_eq!(sync_now(&client, &server).await.status, 200);
    assert!(open_alert(&client, &server, "sync_stale").await.is_none(), "a good sync resolves it");
    assert!(open_alert(&client, &server, "sync_failed").await.is_none());
}
