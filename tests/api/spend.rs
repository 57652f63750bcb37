use futures_util::future::join_all;
use serde_json::json;

use crate::common::{
    capacity, client, eventually, get, ledger, post, provider, purchase, refund, spend, temp_dir, Server,
};

/// Goal: a spend lowers the wallet, the provider balance and `reserved`
/// together, leaving `available` unchanged (SPEC §2); a refund undoes it once.
#[tokio::test]
async fn a_spend_moves_wallet_balance_and_reserved_together_and_refunds_once() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "sia", "pro", "p-1").await.status, 200);

    let spent = spend(&client, &server, "sia", 30, "s-1").await;
    assert_eq!((spent.status, spent.body["balance"].as_u64()), (200, Some(70)), "{spent:?}");
    let after = capacity(&client, &server).await;
    assert_eq!(after["nanoBananaCredits"], 938 - 120);
    assert_eq!(after["reservedCredits"], 400 - 120);
    assert_eq!(after["availableCredits"], 538, "available does not change");

    let spend_id = spent.body["spendId"].as_str().expect("spendId").to_owned();
    let refunded = refund(&client, &server, &spend_id).await;
    assert_eq!((refunded.status, refunded.body["balance"].as_u64()), (200, Some(100)), "{refunded:?}");
    let twice = refund(&client, &server, &spend_id).await;
    assert_eq!((twice.status, twice.code()), (409, "already_refunded"));
    let restored = capacity(&client, &server).await;
    assert_eq!((restored["nanoBananaCredits"].as_u64(), restored["reservedCredits"].as_u64()), (Some(938), Some(400)));
    assert_eq!(get(&client, &server.url("/api/users/sia/credits")).await.body["balance"], 100);
    let unknown = refund(&client, &server, "spend_999").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

/// Goal: no wallet goes negative (SPEC §4.4), bad amounts are refused, and
/// a spend needs its key.
#[tokio::test]
async fn spends_are_refused_beyond_the_wallet_and_for_bad_input() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "tom", "starter", "p-1").await.status, 200);
    let before = capacity(&client, &server).await;

    let too_much = spend(&client, &server, "tom", 11, "s-1").await;
    assert_eq!((too_much.status, too_much.code()), (409, "insufficient_funds"));
    let stranger = spend(&client, &server, "nobody", 1, "s-2").await;
    assert_eq!((stranger.status, stranger.code()), (404, "not_found"));
    let url = server.url("/api/credits/spend");
    for credits in [json!(0), json!(-1), json!(1.5), json!("3"), json!(9_007_199_254_740_992_u64), json!(null)] {
        let bad = post(&client, &url, Some("s-3"), Some(json!({"userId": "tom", "credits": credits}))).await;
        assert_eq!((bad.status, bad.code()), (400, "invalid_request"), "credits {credits}: {bad:?}");
        assert!(bad.message().contains("credits"), "{bad:?}");
    }
    let no_key = post(&client, &url, None, Some(json!({"userId": "tom", "credits": 1}))).await;
    assert_eq!((no_key.status, no_key.code()), (400, "missing_idempotency_key"));
    let long_reason =
        post(&client, &url, Some("s-4"), Some(json!({"userId": "tom", "credits": 1, "reason": "r".repeat(257)}))).await;
    assert_eq!((long_reason.status, long_reason.code()), (400, "invalid_request"));

    assert_eq!(capacity(&client, &server).await, before, "nothing changed");
    let all = spend(&client, &server, "tom", 10, "s-5").await;
    assert_eq!((all.status, all.body["balance"].as_u64()), (200, Some(0)), "a wallet may reach zero");
    let more = spend(&client, &server, "tom", 1, "s-6").await;
    assert_eq!((more.status, more.code()), (409, "insufficient_funds"));
}

/// Goal: 20 concurrent retries of one spend key spend once.
#[tokio::test]
async fn concurrent_retries_of_one_spend_key_spend_once() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "ugo", "pro", "p-1").await.status, 200);

    let answers = join_all((0..20).map(|_| spend(&client, &server, "ugo", 7, "one-spend"))).await;
    let ok: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert!(!ok.is_empty() && ok.iter().all(|a| a.body == ok[0].body), "{answers:?}");
    assert!(answers.iter().all(|a| a.status == 200 || a.code() == "idempotency_key_in_use"), "{answers:?}");
    assert_eq!(get(&client, &server.url("/api/users/ugo/credits")).await.body["balance"], 93);
    let other = spend(&client, &server, "ugo", 8, "one-spend").await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    assert_eq!(ledger(&client, &server).await.iter().filter(|e| e["kind"] == "spend").count(), 1);
}

/// Goal: after a sync lowers the provider balance below what a spend needs,
/// the spend is refused with 503 "Enhancement temporarily unavailable".
#[tokio::test]
async fn a_spend_the_provider_balance_cannot_cover_gets_503() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_SYNC_INTERVAL_SECS", "1")]).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "vic", "pro", "p-1").await.status, 200);

    provider.set_balance(100);
    eventually("the sync lowers the balance", || async {
        capacity(&client, &server).await["nanoBananaCredits"] == 100
    })
    .await;
    let refused = spend(&client, &server, "vic", 30, "s-1").await;
    assert_eq!(
        (refused.status, refused.code(), refused.message()),
        (503, "enhancement_unavailable", "Enhancement temporarily unavailable")
    );
    let covered = spend(&client, &server, "vic", 25, "s-2").await;
    assert_eq!((covered.status, covered.body["balance"].as_u64()), (200, Some(75)), "{covered:?}");
}
