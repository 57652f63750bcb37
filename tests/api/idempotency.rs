use futures_util::future::join_all;

use crate::common::{catalogue, client, get, ledger, provider, purchase, temp_dir, Server};

/// Goal: a retried purchase is applied once (SPEC §4.3). Method: 20
/// concurrent requests with one key and one body; every answer is the first
/// answer (or `idempotency_key_in_use` while it is in flight), and the
/// ledger holds one purchase.
#[tokio::test]
async fn twenty_concurrent_retries_of_one_key_make_one_purchase() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let answers = join_all((0..20).map(|_| {
        let (client, base) = (client.clone(), server.base.clone());
        async move { purchase(&client, &base, "retrier", "starter", "same-key").await }
    }))
    .await;
    let successes: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert!(!successes.is_empty());
    for answer in &answers {
        assert!(
            answer.status == 200 || (answer.status == 409 && answer.code() == "idempotency_key_in_use"),
            "{answer:?}"
        );
    }
    for success in &successes {
        assert_eq!(success.body, successes[0].body, "every retry gets the first answer");
    }
    assert_eq!(successes[0].body["balance"], 10);

    let later = purchase(&client, &server.base, "retrier", "starter", "same-key").await;
    assert_eq!((later.status, &later.body), (200, &successes[0].body), "a later retry too");
    let wallet = get(&client, &server.url("/api/users/retrier/credits")).await;
    assert_eq!(wallet.body["balance"], 10, "credited once");
    let purchases = ledger(&client, &server).await.into_iter().filter(|e| e["kind"] == "purchase").count();
    assert_eq!(purchases, 1);
    assert_eq!(catalogue(&client, &server).await["platformCapacity"]["reservedCredits"], 40);
}

/// Goal: the same key with another body is refused with 422 and changes nothing.
#[tokio::test]
async fn a_key_reused_with_another_body_is_refused() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    assert_eq!(purchase(&client, &server.base, "ann", "starter", "k-1").await.status, 200);
    let before = catalogue(&client, &server).await;
    for (user, package) in [("ann", "pro"), ("bob", "starter"), ("bob", "pro")] {
        let reused = purchase(&client, &server.base, user, package, "k-1").await;
        assert_eq!((reused.status, reused.code()), (422, "idempotency_key_reused"), "{user} {package}");
    }
    assert_eq!(catalogue(&client, &server).await, before);
    assert_eq!(get(&client, &server.url("/api/users/bob/credits")).await.status, 404);
}

/// Goal: an acknowledged purchase's key survives a restart: the retry after
/// a restart gets the first answer and credits nothing.
#[tokio::test]
async fn a_retry_after_a_restart_gets_the_first_answer() {
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();
    let first = purchase(&client, &server.base, "cara", "creative", "persist-1").await;
    assert_eq!(first.status, 200);
    server.kill9();
    server.restart().await;
    let retry = purchase(&client, &server.base, "cara", "creative", "persist-1").await;
    assert_eq!((retry.status, retry.body), (200, first.body));
    assert_eq!(get(&client, &server.url("/api/users/cara/credits")).await.body["balance"], 50);
}
