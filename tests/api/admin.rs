use serde_json::json;

use crate::common::{
    admin_get, admin_post, answer, catalogue, client, ledger, open_alert, provider, purchase, spend, temp_dir, Server,
    ADMIN_TOKEN,
};

/// Goal: every admin route refuses a missing or wrong token with 401 and
/// accepts the right one, and never echoes the token (SPEC §9).
#[tokio::test]
async fn every_admin_route_checks_the_token() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    // Without the admin token the test client sends by default.
    let bare = reqwest::Client::new();
    let routes: [(&str, &str, Option<serde_json::Value>); 9] = [
        ("GET", "/api/admin/credits", None),
        ("POST", "/api/admin/credits/sync", None),
        ("POST", "/api/admin/purchases/disable", Some(json!({"reason": "auth matrix"}))),
        ("POST", "/api/admin/purchases/enable", None),
        ("PUT", "/api/admin/packages/starter", Some(json!({"enabled": true}))),
        ("GET", "/api/admin/alerts", None),
        ("GET", "/api/admin/report", None),
        ("GET", "/api/admin/ledger?after=0&limit=5", None),
        ("GET", "/api/admin/ledger", None),
    ];
    for (method, path, body) in routes {
        for token in [None, Some("wrong-token"), Some(ADMIN_TOKEN)] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = bare.request(method.clone(), server.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let got = answer(request.send().await.expect("answers")).await;
            if token == Some(ADMIN_TOKEN) {
                assert_eq!(got.status, 200, "{method} {path} with the token: {got:?}");
            } else {
                assert_eq!((got.status, got.code()), (401, "unauthorized"), "{method} {path} with {token:?}");
            }
            assert!(!got.body.to_string().contains(ADMIN_TOKEN), "{method} {path} echoes the token");
        }
    }
    let entries = ledger(&client, &server).await;
    assert!(!serde_json::to_string(&entries).expect("json").contains(ADMIN_TOKEN), "the ledger never holds the token");
}

/// Goal: the kill switch stops purchases and holds (503), not spends, shows
/// in the catalogue, raises an alert, and survives `kill -9`.
#[tokio::test]
async fn the_kill_switch_stops_sales_and_survives_kill_9() {
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "k", "pro", "p-1").await.status, 200);

    let disabled =
        admin_post(&client, &server.url("/api/admin/purchases/disable"), Some(json!({"reason": "provider outage"})))
            .await;
    assert_eq!((disabled.status, disabled.body["purchasesEnabled"].as_bool()), (200, Some(false)), "{disabled:?}");
    let alert = open_alert(&client, &server, "purchases_disabled").await.expect("alert");
    assert_eq!(alert["message"], "provider outage");
    server.kill9();
    server.restart().await;

    let refused = purchase(&client, &server.base, "k", "starter", "p-2").await;
    assert_eq!(
        (refused.status, refused.code(), refused.message()),
        (503, "purchases_disabled", "Purchases are temporarily disabled")
    );
    let hold = crate::common::hold(&client, &server, "k", "starter", 60).await;
    assert_eq!((hold.status, hold.code()), (503, "purchases_disabled"));
    assert_eq!(spend(&client, &server, "k", 5, "s-1").await.status, 200, "spends still work");
    let shown = catalogue(&client, &server).await;
    assert_eq!(
        (shown["status"].as_str(), shown["platformCapacity"]["purchasesEnabled"].as_bool()),
        (Some("disabled"), Some(false))
    );
    assert!(shown["packages"].as_array().expect("packages").iter().all(|p| p["disabled"] == true));
    assert!(open_alert(&client, &server, "purchases_disabled").await.is_some(), "the alert survives the restart");

    let enabled = admin_post(&client, &server.url("/api/admin/purchases/enable"), None).await;
    assert_eq!(enabled.body["purchasesEnabled"], true);
    assert_eq!(purchase(&client, &server.base, "k", "starter", "p-3").await.status, 200);
    assert!(open_alert(&client, &server, "purchases_disabled").await.is_none());
    let kinds: Vec<String> =
        ledger(&client, &server).await.iter().map(|e| e["kind"].as_str().unwrap_or("").to_owned()).collect();
    assert!(
        kinds.contains(&"purchasesDisabled".to_owned()) && kinds.contains(&"purchasesEnabled".to_owned()),
        "{kinds:?}"
    );
    let bad = admin_post(&client, &server.url("/api/admin/purchases/disable"), Some(json!({"reason": ""}))).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"));
}

/// Goal: operators can disable, re-price and resize a package; the change
/// is validated, shows in the catalogue, and survives a restart.
#[tokio::test]
async fn operators_change_packages_with_validation() {
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();
    let url = |id: &str| server.url(&format!("/api/admin/packages/{id}"));
    let put = |id: &str, body: serde_json::Value| {
        let request = client.put(url(id)).bearer_auth(ADMIN_TOKEN).json(&body);
        async move { answer(request.send().await.expect("answers")).await }
    };

    let changed = put("creative", json!({"price": 3499, "credits": 40})).await;
    assert_eq!(
        (changed.status, changed.body["price"].as_u64(), changed.body["credits"].as_u64()),
        (200, Some(3499), Some(40))
    );
    let off = put("starter", json!({"enabled": false})).await;
    assert_eq!(off.body["enabled"], false);
    for (body, field) in [
        (json!({"price": -1}), "price"),
        (json!({"price": 9_007_199_254_740_991_i64}), "price"),
        (json!({"price": 100_000_001}), "price"),
        (json!({"credits": 0}), "credits"),
        (json!({"credits": 1_000_001}), "credits"),
        (json!({}), "body"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let bad = put("pro", body.clone()).await;
        assert_eq!((bad.status, bad.code()), (400, "invalid_request"), "{body}");
        assert!(bad.message().contains(field), "{body}: {bad:?}");
    }
    let unknown = put("platinum", json!({"enabled": true})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));

    server.kill9();
    server.restart().await;
    let shown = catalogue(&client, &server).await;
    let find =
        |id: &str| shown["packages"].as_array().expect("packages").iter().find(|p| p["id"] == id).cloned().expect(id);
    assert_eq!((find("creative")["price"].as_u64(), find("creative")["credits"].as_u64()), (Some(3499), Some(40)));
    assert_eq!(
        (find("starter")["disabled"].as_bool(), find("starter")["message"].as_str()),
        (Some(true), Some("Temporarily unavailable"))
    );
    let refused = purchase(&client, &server.base, "p", "starter", "p-1").await;
    assert_eq!(
        (refused.status, refused.code(), refused.message()),
        (409, "package_disabled", "Temporarily unavailable")
    );
    let bought = purchase(&client, &server.base, "p", "creative", "p-2").await;
    assert_eq!(bought.body["credits"], 40);
    let status = admin_get(&client, &server.url("/api/admin/credits")).await;
    assert_eq!(status.body["reservedCredits"], 160);
}

/// Goal: an operator's extreme package cannot make later purchases fail
/// (SPEC §9.2). The reproduction: `price` 2^53 − 1 was accepted, and every
/// purchase of the package then answered a retryable 503 "revenue
/// overflow". Now the update is 400 `invalid_request` naming the field and
/// changes nothing, and the bounds themselves (credits 1 to 1 000 000, price
/// 0 to 100 000 000) are accepted and sell.
#[tokio::test]
async fn extreme_package_updates_are_refused_and_the_bounds_sell() {
    let provider = provider(100_000_000);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    let put = |id: &str, body: serde_json::Value| {
        let request = client.put(server.url(&format!("/api/admin/packages/{id}"))).bearer_auth(ADMIN_TOKEN).json(&body);
        async move { answer(request.send().await.expect("answers")).await }
    };
    let before = catalogue(&client, &server).await;
    let extreme = put("studio", json!({"price": 9_007_199_254_740_991_i64})).await;
    assert_eq!((extreme.status, extreme.code()), (400, "invalid_request"), "{extreme:?}");
    assert!(extreme.message().contains("price") && extreme.message().contains("100000000"), "{extreme:?}");
    assert_eq!(catalogue(&client, &server).await, before, "a refused update changes nothing");
    for n in 0..3 {
        let bought = purchase(&client, &server.base, "rich", "studio", &format!("s-{n}")).await;
        assert_eq!(bought.status, 200, "the package still sells: {bought:?}");
    }

    let top = put("studio", json!({"price": 100_000_000, "credits": 1_000_000})).await;
    assert_eq!(
        (top.status, top.body["price"].as_u64(), top.body["credits"].as_u64()),
        (200, Some(100_000_000), Some(1_000_000))
    );
    let free = put("starter", json!({"price": 0})).await;
    assert_eq!((free.status, free.body["price"].as_u64()), (200, Some(0)), "a free package is allowed");
    for n in 0..10 {
        let bought = purchase(&client, &server.base, "whale", "studio", &format!("w-{n}")).await;
        assert_eq!(bought.status, 200, "the largest package sells: {bought:?}");
    }
    let gift = purchase(&client, &server.base, "fan", "starter", "f-1").await;
    assert_eq!((gift.status, gift.body["balance"].as_u64()), (200, Some(10)), "{gift:?}");
    let report = admin_get(&client, &server.url("/api/admin/report")).await;
    assert_eq!(report.status, 200, "{report:?}");
}
