//! Open spends against a provider that really consumes (SPEC §2, §4.1, §5,
//! §6): the fake provider's balance is the provider's real balance, moved
//! by the test the way NanoBanana would move it, never by creditd.

use crate::common::{
    admin_get, capacity, client, complete, ledger, open_alert, provider, purchase, refund, spend, sync_now, temp_dir,
    Server,
};

/// Goal: the operator's reproduction of the oversell (issue 24) sells
/// nothing beyond what the provider really holds.
/// Method: provider 1,000; alice buys `pro` and spends 100 (the provider
/// call is running, the provider has consumed nothing); a sync lands; the
/// call fails and the refund arrives; then buyers try two more `pro` and
/// five `starter` (250 user credits, what the old sync rule offered).
/// Whatever sells must be backed by the provider's real 1,000, and the
/// next sync finds the platform neither overcommitted nor drifted.
#[tokio::test]
async fn a_sync_between_a_spend_and_its_refund_sells_nothing_beyond_the_real_balance() {
    let provider = provider(1_000);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_SYNC_INTERVAL_SECS", "3600")]).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "alice", "pro", "p-alice").await.status, 200);
    let spent = spend(&client, &server, "alice", 100, "s-alice").await;
    assert_eq!(spent.status, 200, "{spent:?}");
    let spend_id = spent.body["spendId"].as_str().expect("spendId").to_owned();

    let synced = sync_now(&client, &server).await;
    assert_eq!(synced.status, 200, "{synced:?}");
    assert_eq!(synced.body["realBalance"], 1_000);
    assert_eq!(synced.body["balance"], 600, "the open spend's 400 are held back: the provider may still consume them");
    assert!(open_alert(&client, &server, "drift").await.is_none(), "an open spend explains the difference");
    let refunded = refund(&client, &server, &spend_id).await;
    assert_eq!((refunded.status, refunded.body["balance"].as_u64()), (200, Some(100)), "{refunded:?}");
    let after = capacity(&client, &server).await;
    assert_eq!(after["nanoBananaCredits"], 1_000, "the refund gives back exactly what the sync held back");
    assert_eq!(after["totalUserCredits"], 150, "not 250");

    let mut sold = 0u64;
    for (i, package, credits) in
        [(0, "pro", 100), (1, "pro", 100)].into_iter().chain((2..7).map(|i| (i, "starter", 10)))
    {
        if purchase(&client, &server.base, &format!("buyer-{i}"), package, &format!("p-{i}")).await.status == 200 {
            sold += credits;
        }
    }
    assert_eq!(sold, 150, "one pro and five starters: all there is to sell");
    let full = capacity(&client, &server).await;
    assert_eq!(full["reservedCredits"], 1_000, "alice's 100 and the 150 sold, backed 4 to 1 by the real 1,000");

    let next = sync_now(&client, &server).await;
    assert_eq!((next.status, next.body["drift"].as_i64()), (200, Some(0)), "{next:?}");
    assert!(open_alert(&client, &server, "overcommitted").await.is_none(), "no sync finds it overcommitted");
    let credits = admin_get(&client, &server.url("/api/admin/credits")).await.body;
    assert_eq!((credits["overcommitted"].as_bool(), credits["openSpends"].as_u64()), (Some(false), Some(0)));
}

/// Goal: a spend is open until the service completes or refunds it, and
/// each ends it once (SPEC §5, §9): completion changes no quantity, a
/// refund after completion is `spend_completed`, a completion after a
/// refund is `already_refunded`, and the ledger says who completed it.
#[tokio::test]
async fn a_spend_is_completed_or_refunded_once_and_the_ledger_says_by_whom() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_SYNC_INTERVAL_SECS", "3600")]).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "cara", "pro", "p-1").await.status, 200);
    let first = spend(&client, &server, "cara", 10, "s-1").await.body["spendId"].as_str().expect("id").to_owned();
    let open = admin_get(&client, &server.url("/api/admin/credits")).await.body;
    assert_eq!((open["openSpends"].as_u64(), open["openSpendsProviderCredits"].as_u64()), (Some(1), Some(40)));
    let before = capacity(&client, &server).await;

    let done = complete(&client, &server, &first).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!((done.body["spendId"].as_str(), done.body["state"].as_str()), (Some(first.as_str()), Some("completed")));
    assert_eq!((done.body["userId"].as_str(), done.body["credits"].as_u64()), (Some("cara"), Some(10)));
    assert_eq!(capacity(&client, &server).await, before, "a completion changes no quantity");
    let again = complete(&client, &server, &first).await;
    assert_eq!((again.status, &again.body), (200, &done.body), "a second completion answers the same");
    let late_refund = refund(&client, &server, &first).await;
    assert_eq!((late_refund.status, late_refund.code()), (409, "spend_completed"));

    let second = spend(&client, &server, "cara", 5, "s-2").await.body["spendId"].as_str().expect("id").to_owned();
    assert_eq!(refund(&client, &server, &second).await.status, 200);
    let late_complete = complete(&client, &server, &second).await;
    assert_eq!((late_complete.status, late_complete.code()), (409, "already_refunded"));
    let unknown = complete(&client, &server, "spend_999").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    let bad = complete(&client, &server, &"x".repeat(129)).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"));

    let entries = ledger(&client, &server).await;
    let completed: Vec<_> = entries.iter().filter(|entry| entry["kind"] == "spendCompleted").collect();
    assert_eq!(completed.len(), 1, "{entries:?}");
    assert_eq!(
        (completed[0]["spendId"].as_str(), completed[0]["by"].as_str()),
        (Some(first.as_str()), Some("service"))
    );
    let wallet = crate::common::get(&client, &server.url("/api/users/cara/credits")).await.body;
    let states: Vec<_> = wallet["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["kind"] == "spend")
        .map(|entry| (entry["spendId"].as_str().unwrap_or("").to_owned(), entry["spendState"].clone()))
        .collect();
    assert_eq!(states, vec![(first, "completed".into()), (second, "refunded".into())], "{wallet}");
}

/// Goal: an open spend completes by itself `spend_complete_after_secs`
/// after it was made, with its own ledger entry (`by: time`); from then on
/// a refund is `spend_completed` and a completion answers 200.
#[tokio::test]
async fn an_open_spend_completes_by_itself_after_its_time() {
    let provider = provider(938);
    let dir = temp_dir();
    let env = [("CREDITD_SYNC_INTERVAL_SECS", "3600"), ("CREDITD_SPEND_COMPLETE_AFTER_SECS", "1")];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "dan", "pro", "p-1").await.status, 200);
    let spent = spend(&client, &server, "dan", 10, "s-1").await;
    let id = spent.body["spendId"].as_str().expect("id").to_owned();
    let made_at = crate::common::now_ms();
    crate::common::eventually("the spend completes by time", || async {
        ledger(&client, &server).await.iter().any(|entry| entry["kind"] == "spendCompleted" && entry["spendId"] == *id)
    })
    .await;
    let entry = ledger(&client, &server).await.into_iter().find(|entry| entry["kind"] == "spendCompleted").expect("it");
    assert_eq!(entry["by"], "time", "{entry}");
    assert!(crate::common::epoch_ms(&entry["at"]) + 1_000 >= made_at + 1_000, "not before its time: {entry}");
    let refused = refund(&client, &server, &id).await;
    assert_eq!((refused.status, refused.code()), (409, "spend_completed"));
    assert_eq!(complete(&client, &server, &id).await.body["state"], "completed");
}
