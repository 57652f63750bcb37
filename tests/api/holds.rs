use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::common::{
    capacity, capture, client, epoch_ms, get, hold, ledger, now_ms, post, provider, purchase, release, run_check,
    temp_dir, Server,
};

/// Goal: a hold reserves capacity; capture moves it into the wallet once.
#[tokio::test]
async fn a_captured_hold_credits_the_wallet_once_and_cannot_be_released() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let held = hold(&client, &server, "hanna", "pro", 600).await;
    assert_eq!(held.status, 200, "{held:?}");
    let id = held.body["holdId"].as_str().expect("holdId").to_owned();
    assert!(epoch_ms(&held.body["expiresAt"]) > now_ms() + 590_000, "{held:?}");
    let during = capacity(&client, &server).await;
    assert_eq!((during["availableCredits"].as_i64(), during["totalUserCredits"].as_u64()), (Some(538), Some(134)));
    assert_eq!(get(&client, &server.url("/api/users/hanna/credits")).await.status, 404, "no wallet until capture");

    let first = capture(&client, &server, &id).await;
    assert_eq!((first.status, first.body["balance"].as_u64()), (200, Some(100)), "{first:?}");
    let again = capture(&client, &server, &id).await;
    assert_eq!((again.status, &again.body), (200, &first.body), "a second capture gets the first answer");
    let refused = release(&client, &server, &id).await;
    assert_eq!((refused.status, refused.code()), (409, "hold_captured"));
    assert_eq!(capacity(&client, &server).await["availableCredits"], 538, "capture keeps the reservation");
    assert_eq!(get(&client, &server.url("/api/users/hanna/credits")).await.body["balance"], 100);
    let kinds: Vec<String> =
        ledger(&client, &server).await.iter().map(|e| e["kind"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(kinds, ["providerSync", "holdCreated", "holdCaptured"]);
}

/// Goal: a released hold gives its capacity back and cannot be captured.
#[tokio::test]
async fn a_released_hold_returns_its_capacity_and_cannot_be_captured() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let id = hold(&client, &server, "rita", "creative", 600).await.body["holdId"].as_str().expect("id").to_owned();
    assert_eq!(capacity(&client, &server).await["totalUserCredits"], 184);
    let first = release(&client, &server, &id).await;
    assert_eq!((first.status, first.body["state"].as_str()), (200, Some("released")), "{first:?}");
    assert_eq!(release(&client, &server, &id).await.body, first.body, "a second release gets the first answer");
    assert_eq!(capacity(&client, &server).await["totalUserCredits"], 234);
    let refused = capture(&client, &server, &id).await;
    assert_eq!((refused.status, refused.code()), (409, "hold_released"));
    let unknown = capture(&client, &server, "hold_999").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

/// Goal: holds refuse what purchases refuse, validate their TTL, and honour
/// idempotency keys like purchases.
#[tokio::test]
async fn holds_check_capacity_ttl_and_idempotency_keys() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    let url = server.url("/api/credits/holds");

    let studio = hold(&client, &server, "u", "studio", 60).await;
    assert_eq!((studio.status, studio.code()), (409, "insufficient_capacity"));
    for ttl in [serde_json::json!(0), serde_json::json!(-5), serde_json::json!(3_601), serde_json::json!("x")] {
        let bad =
            post(&client, &url, None, Some(serde_json::json!({"userId": "u", "packageId": "pro", "ttlSeconds": ttl})))
                .await;
        assert_eq!((bad.status, bad.code()), (400, "invalid_request"), "ttl {ttl}");
        assert!(bad.message().contains("ttlSeconds"), "{bad:?}");
    }
    let default_ttl = post(&client, &url, None, Some(serde_json::json!({"userId": "u", "packageId": "starter"}))).await;
    let ttl_ms = epoch_ms(&default_ttl.body["expiresAt"]) - now_ms();
    assert!((890_000..=900_000).contains(&ttl_ms), "the default TTL is 15 minutes: {ttl_ms} ms");

    let body = serde_json::json!({"userId": "kim", "packageId": "pro", "ttlSeconds": 60});
    let answers = join_all((0..10).map(|_| post(&client, &url, Some("hold-key"), Some(body.clone())))).await;
    let ok: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert!(!ok.is_empty() && ok.iter().all(|a| a.body == ok[0].body), "{answers:?}");
    assert!(answers.iter().all(|a| a.status == 200 || a.code() == "idempotency_key_in_use"), "{answers:?}");
    let other =
        post(&client, &url, Some("hold-key"), Some(serde_json::json!({"userId": "kim", "packageId": "starter"}))).await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    let holds = ledger(&client, &server).await.iter().filter(|e| e["kind"] == "holdCreated").count();
    assert_eq!(holds, 2, "the default-TTL hold and one keyed hold");
}

/// Goal: an expired hold stops counting at its deadline and exactly the
/// capacity it frees is sold. Method: the hold takes everything but 39
/// provider credits; 50 buyers hammer Starter from before the deadline until
/// well after; exactly 10 succeed, none before the deadline.
#[tokio::test]
async fn a_hold_expiring_under_fifty_concurrent_buyers_frees_exactly_its_capacity() {
    let provider = provider(400 + 39);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let held = hold(&client, &server, "holder", "pro", 1).await;
    assert_eq!(held.status, 200, "{held:?}");
    let expires_at = epoch_ms(&held.body["expiresAt"]);
    let stop_at = expires_at + 1_500;
    let buyers = (0..50).map(|buyer| {
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let answer =
                    purchase(&client, &base, &format!("buyer-{buyer}"), "starter", &format!("b{buyer}-{attempt}"))
                        .await;
                if answer.status == 200 {
                    return Some(answer);
                }
                assert_eq!(answer.code(), "insufficient_capacity", "{answer:?}");
                if now_ms() > stop_at {
                    return None;
                }
            }
        }
    });
    let winners: Vec<_> = join_all(buyers).await.into_iter().flatten().collect();
    assert_eq!(winners.len(), 10, "the freed 400 provider credits make exactly 10 Starters");

    let entries = ledger(&client, &server).await;
    let expired = entries.iter().find(|e| e["kind"] == "holdExpired").expect("the expiry is in the ledger");
    assert!(epoch_ms(&expired["at"]) >= expires_at);
    for sale in entries.iter().filter(|e| e["kind"] == "purchase") {
        assert!(epoch_ms(&sale["at"]) >= expires_at, "no sale before the deadline: {sale}");
        assert!(sale["seq"].as_u64() > expired["seq"].as_u64(), "every sale comes after the expiry entry");
    }
    let after = capacity(&client, &server).await;
    assert_eq!((after["reservedCredits"].as_u64(), after["totalUserCredits"].as_u64()), (Some(400), Some(9)));
    let late = capture(&client, &server, held.body["holdId"].as_str().expect("id")).await;
    assert_eq!((late.status, late.code()), (409, "hold_expired"));
}

/// Goal: a capture racing the deadline has exactly one outcome, and the
/// ledger agrees. Method: for several holds, 8 tasks fire captures from just
/// before the deadline to just after; the answers must be all the same
/// capture or all `hold_expired`, with the one matching ledger entry.
#[tokio::test]
async fn a_capture_racing_the_deadline_has_exactly_one_outcome() {
    let provider = provider(100_000);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    let mut outcomes = Vec::new();

    for round in 0..6 {
        let user = format!("racer-{round}");
        let held = hold(&client, &server, &user, "starter", 1).await;
        let id = held.body["holdId"].as_str().expect("id").to_owned();
        let expires_at = epoch_ms(&held.body["expiresAt"]);
        // Start at different offsets around the deadline so both outcomes occur.
        let start_at = expires_at - 40 + round * 15;
        while now_ms() < start_at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let racers = (0..8).map(|_| {
            let (client, server, id) = (client.clone(), &server, id.clone());
            async move {
                let mut answers = Vec::new();
                while now_ms() < expires_at + 60 {
                    answers.push(capture(&client, server, &id).await);
                }
                answers
            }
        });
        let answers: Vec<_> = join_all(racers).await.into_iter().flatten().collect();
        assert!(!answers.is_empty());
        let captured = answers[0].status == 200;
        for answer in &answers {
            if captured {
                assert_eq!((answer.status, &answer.body), (200, &answers[0].body), "round {round}");
            } else {
                assert_eq!((answer.status, answer.code()), (409, "hold_expired"), "round {round}");
            }
        }
        let entries = ledger(&client, &server).await;
        let for_hold: Vec<&str> = entries
            .iter()
            .filter(|e| e["holdId"] == id.as_str() && e["kind"] != "holdCreated")
            .map(|e| e["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(for_hold, [if captured { "holdCaptured" } else { "holdExpired" }], "round {round}");
        let wallet = get(&client, &server.url(&format!("/api/users/{user}/credits"))).await;
        assert_eq!(wallet.status == 200, captured, "round {round}: {wallet:?}");
        outcomes.push(captured);
    }
    eprintln!("capture won in {} of 6 rounds", outcomes.iter().filter(|c| **c).count());
}

/// Goal: a hold survives `kill -9` with its deadline. Method: one long and
/// one short hold, SIGKILL, restart; the long one captures, the short one
/// has expired by its original deadline, and `check` passes.
#[tokio::test]
async fn holds_survive_kill_9_with_their_deadlines() {
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();

    let long = hold(&client, &server, "lena", "pro", 600).await;
    let short = hold(&client, &server, "sam", "pro", 2).await;
    let short_deadline = epoch_ms(&short.body["expiresAt"]);
    server.kill9();
    server.restart().await;

    assert_eq!(capacity(&client, &server).await["reservedCredits"], if now_ms() < short_deadline { 800 } else { 400 });
    let captured = capture(&client, &server, long.body["holdId"].as_str().expect("id")).await;
    assert_eq!((captured.status, captured.body["balance"].as_u64()), (200, Some(100)), "{captured:?}");
    while now_ms() < short_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = capture(&client, &server, short.body["holdId"].as_str().expect("id")).await;
    assert_eq!((late.status, late.code()), (409, "hold_expired"));
    assert_eq!(capacity(&client, &server).await["reservedCredits"], 400);
    assert!(server.terminate().success());
    let (code, report) = run_check(dir.path());
    assert_eq!(code, 0, "{report}");
}

/// Goal: a user holds at most `max_open_holds_per_user` open holds (SPEC
/// §9.2, default 5): the 6th is 409 `too_many_holds` and changes nothing; a
/// retry of an earlier hold still gets its first answer; closing one (a
/// capture, a release) makes room; other users are not affected; the count
/// survives a restart.
#[tokio::test]
async fn the_sixth_open_hold_of_one_user_is_too_many() {
    let provider = provider(100_000);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();
    let url = server.url("/api/credits/holds");
    let hold = |user: &str, key: &str| {
        let (client, url, body) = (client.clone(), url.clone(), json!({"userId": user, "packageId": "starter"}));
        let key = key.to_owned();
        async move { post(&client, &url, Some(&key), Some(body)).await }
    };
    let mut ids = Vec::new();
    for n in 1..=5 {
        let made = hold("h", &format!("h-{n}")).await;
        assert_eq!(made.status, 200, "hold {n}: {made:?}");
        ids.push(made.body["holdId"].as_str().expect("an id").to_owned());
    }
    let before = capacity(&client, &server).await;
    let sixth = hold("h", "h-6").await;
    assert_eq!((sixth.status, sixth.code()), (409, "too_many_holds"), "{sixth:?}");
    assert_eq!(capacity(&client, &server).await, before, "a refused hold reserves nothing");
    assert_eq!(hold("h", "h-5").await.body["holdId"], ids[4].as_str(), "a retry still gets its first answer");
    assert_eq!(hold("other", "o-1").await.status, 200, "another user is not affected");

    server.kill9();
    server.restart().await;
    let hold = |user: &str, key: &str| {
        let (client, url, body) =
            (client.clone(), server.url("/api/credits/holds"), json!({"userId": user, "packageId": "starter"}));
        let key = key.to_owned();
        async move { post(&client, &url, Some(&key), Some(body)).await }
    };
    assert_eq!(hold("h", "h-7").await.code(), "too_many_holds", "the count survives a restart");
    assert_eq!(release(&client, &server, &ids[0]).await.status, 200);
    assert_eq!(hold("h", "h-8").await.status, 200, "a release makes room");
    assert_eq!(hold("h", "h-9").await.code(), "too_many_holds");
    assert_eq!(capture(&client, &server, &ids[1]).await.status, 200);
    assert_eq!(hold("h", "h-10").await.status, 200, "a capture makes room");
}

/// Goal: one storefront key cannot lock the platform's capacity (SPEC
/// §9.2). The reproduction: `studio` holds for made-up users at `ttlSeconds`
/// 86 400 took capacity from 217 961 to 461. Now a TTL over
/// `hold_ttl_max_secs` (default 3 600) is 400 `invalid_request`, and a key
/// has at most `max_open_holds_per_key` open holds (here 4), whatever users
/// it names, also after a restart; other keys still hold.
#[tokio::test]
async fn one_key_inventing_users_cannot_lock_the_capacity() {
    let provider = provider(1_000_000);
    let dir = temp_dir();
    let env = [("CREDITD_MAX_OPEN_HOLDS_PER_KEY", "4")];
    let mut server = Server::start_with(&provider, dir.path(), &env).await;
    let (_, hoarder) = crate::common::create_key(&server, "hoarder", &["storefront"]).await;
    let (_, shop) = crate::common::create_key(&server, "shop", &["storefront"]).await;
    let (hoarder, shop) = (crate::common::client_with_key(&hoarder), crate::common::client_with_key(&shop));
    let day = hold(&hoarder, &server, "made-up-0", "studio", 86_400).await;
    assert_eq!((day.status, day.code()), (400, "invalid_request"), "{day:?}");
    assert!(day.message().contains("ttlSeconds"), "the message names the field: {day:?}");
    let hour = hold(&hoarder, &server, "made-up-0", "studio", 3_600).await;
    assert_eq!(hour.status, 200, "an hour is the default maximum: {hour:?}");
    for n in 1..4 {
        assert_eq!(hold(&hoarder, &server, &format!("made-up-{n}"), "studio", 3_600).await.status, 200, "hold {n}");
    }
    let before = capacity(&client(), &server).await;
    for n in 4..40 {
        let more = hold(&hoarder, &server, &format!("made-up-{n}"), "studio", 3_600).await;
        assert_eq!((more.status, more.code()), (409, "too_many_holds"), "made-up user {n}: {more:?}");
    }
    assert_eq!(capacity(&client(), &server).await, before, "refused holds reserve nothing");
    assert_eq!(hold(&shop, &server, "real-user", "studio", 600).await.status, 200, "another key still holds");
    server.kill9();
    server.restart().await;
    let again = hold(&hoarder, &server, "made-up-99", "studio", 600).await;
    assert_eq!((again.status, again.code()), (409, "too_many_holds"), "the count survives a restart");
    let released = release(&hoarder, &server, hour.body["holdId"].as_str().expect("an id")).await;
    assert_eq!(released.status, 200, "{released:?}");
    assert_eq!(hold(&hoarder, &server, "made-up-99", "studio", 600).await.status, 200, "a release makes room");
}
