use crate::common::{catalogue, client, get, provider, purchase, temp_dir, Behaviour, Server};

/// SPEC §2's worked example, exactly: 938 provider credits, then A and B buy
/// Pro, then C's Creative is refused.
#[tokio::test]
async fn the_worked_example_of_section_2_holds_exactly() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let start = catalogue(&client, &server).await;
    let capacity = &start["platformCapacity"];
    assert_eq!(capacity["nanoBananaCredits"], 938);
    assert_eq!(capacity["totalUserCredits"], 234);
    assert_eq!(capacity["availableCredits"], 938);
    assert_eq!(capacity["reservedCredits"], 0);
    // Booleans, exactly as in the seed's example: storefronts test them for truth.
    assert_eq!(capacity["canSellStarter"], true);
    assert_eq!(capacity["canSellCreative"], true);
    assert_eq!(capacity["canSellPro"], true);
    assert_eq!(capacity["canSellStudio"], false);
    let sellable: Vec<(String, u64)> = start["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id").to_owned(), p["sellable"].as_u64().expect("a count")))
        .collect();
    let counts = [("starter", 23), ("creative", 4), ("pro", 2), ("studio", 0)].map(|(id, n)| (id.to_owned(), n));
    assert_eq!(sellable, counts, "the counts stay in packages[].sellable");
    assert_eq!(capacity["purchasesEnabled"], true);
    let studio = start["packages"].as_array().expect("packages").iter().find(|p| p["id"] == "studio").expect("studio");
    assert_eq!(studio["disabled"], true);
    assert_eq!(studio["message"], "Temporarily unavailable");
    assert_eq!(studio["price"], 29999);
    assert_eq!(studio["currency"], "EUR");
    let pro = start["packages"].as_array().expect("packages").iter().find(|p| p["id"] == "pro").expect("pro");
    assert_eq!(
        (pro["disabled"].clone(), pro["credits"].clone(), pro["price"].clone()),
        (false.into(), 100.into(), 6999.into())
    );
    assert_eq!(start["status"], "operational");

    let a = purchase(&client, &server.base, "user-a", "pro", "a-1").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!((a.body["credits"].clone(), a.body["balance"].clone()), (100.into(), 100.into()));
    let after_a = catalogue(&client, &server).await;
    assert_eq!(after_a["platformCapacity"]["availableCredits"], 538);
    assert_eq!(after_a["platformCapacity"]["totalUserCredits"], 134);

    let b = purchase(&client, &server.base, "user-b", "pro", "b-1").await;
    assert_eq!(b.status, 200, "{b:?}");
    let after_b = catalogue(&client, &server).await;
    assert_eq!(after_b["platformCapacity"]["availableCredits"], 138);
    assert_eq!(after_b["platformCapacity"]["totalUserCredits"], 34);
    assert_eq!(after_b["platformCapacity"]["reservedCredits"], 800);
    assert_eq!(after_b["status"], "limited");
    assert_eq!(after_b["platformCapacity"]["canSellStarter"], true);
    assert_eq!(after_b["platformCapacity"]["canSellCreative"], false, "capacity 34 cannot back 50");

    let c = purchase(&client, &server.base, "user-c", "creative", "c-1").await;
    assert_eq!((c.status, c.code(), c.message()), (409, "insufficient_capacity", "Service temporarily unavailable"));
    let after_c = catalogue(&client, &server).await;
    assert_eq!(after_c["platformCapacity"], after_b["platformCapacity"], "a refusal changes nothing");
    assert_eq!(get(&client, &server.url("/api/users/user-c/credits")).await.status, 404);
    let wallet_a = get(&client, &server.url("/api/users/user-a/credits")).await;
    assert_eq!(wallet_a.body["balance"], 100);
    assert_eq!(wallet_a.body["entries"][0]["purchaseId"], a.body["purchaseId"]);
}

/// The status route follows the catalogue and is 503 `not_ready` until the
/// provider has answered once.
#[tokio::test]
async fn status_is_not_ready_until_the_first_sync_then_follows_capacity() {
    let provider = provider(938);
    provider.set_behaviour(Behaviour::Status(503));
    let dir = temp_dir();
    let client = client();
    let mut server = Server::start_unready(&provider, dir.path(), &[("CREDITD_SYNC_INTERVAL_SECS", "1")]);
    let status = get(&client, &server.url("/api/credits/status")).await;
    assert_eq!((status.status, status.code()), (503, "not_ready"));
    let ready = get(&client, &server.url("/readyz")).await;
    assert_eq!((ready.status, ready.code()), (503, "not_ready"));
    let refused = purchase(&client, &server.base, "u", "starter", "k").await;
    assert_eq!((refused.status, refused.code()), (503, "not_ready"));
    assert_eq!(get(&client, &server.url("/healthz")).await.status, 200, "alive even when not ready");

    provider.set_behaviour(Behaviour::Healthy);
    server.wait_ready().await;
    let status = get(&client, &server.url("/api/credits/status")).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["status"], "operational");
    assert_eq!(status.body["totalUserCredits"], 234);
    assert!(server.terminate().success());
}
