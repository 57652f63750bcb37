use std::collections::BTreeSet;

use futures_util::future::join_all;

use crate::common::{catalogue, client, get, ledger, provider, purchase, temp_dir, Server};

/// Goal: concurrent buyers can never jointly exceed capacity (SPEC §4.1).
/// Method: the provider holds enough for exactly 37 Starter packages (plus a
/// remainder too small for a 38th); 200 distinct users buy at once.
#[tokio::test]
async fn two_hundred_concurrent_buyers_get_exactly_the_capacity() {
    const FITS: u64 = 37;
    let provider = provider(FITS * 40 + 39);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let answers = join_all((0..200).map(|i| {
        let (client, base) = (client.clone(), server.base.clone());
        async move { (i, purchase(&client, &base, &format!("buyer-{i}"), "starter", &format!("key-{i}")).await) }
    }))
    .await;

    let winners: Vec<usize> = answers.iter().filter(|(_, a)| a.status == 200).map(|(i, _)| *i).collect();
    assert_eq!(winners.len() as u64, FITS, "exactly the capacity is sold");
    for (_, answer) in answers.iter().filter(|(_, a)| a.status != 200) {
        assert_eq!((answer.status, answer.code()), (409, "insufficient_capacity"), "{answer:?}");
    }

    let mut wallets_total = 0;
    for i in 0..200 {
        let wallet = get(&client, &server.url(&format!("/api/users/buyer-{i}/credits"))).await;
        if winners.contains(&i) {
            assert_eq!(wallet.body["balance"], 10);
            wallets_total += 10;
        } else {
            assert_eq!(wallet.status, 404, "a refused buyer has no wallet");
        }
    }
    let capacity = catalogue(&client, &server).await["platformCapacity"].clone();
    let reserved = capacity["reservedCredits"].as_u64().expect("reserved");
    assert_eq!(reserved, 4 * wallets_total, "reserved == ratio × Σ wallets");
    assert!(reserved <= capacity["nanoBananaCredits"].as_u64().expect("balance"));
    assert_eq!(capacity["totalUserCredits"], 9, "39 provider credits are left: 9 user credits");
    let purchases = ledger(&client, &server).await.into_iter().filter(|e| e["kind"] == "purchase").count();
    assert_eq!(purchases as u64, FITS, "the ledger holds one entry per sale");
}

/// Goal: one user's concurrent purchases are serialised (each decided on
/// the wallet the one before it left). Method: 60 purchases with distinct keys for one user, room
/// for 25; every successful answer shows a different wallet balance.
#[tokio::test]
async fn one_users_concurrent_purchases_are_serialised() {
    const FITS: u64 = 25;
    let provider = provider(FITS * 40);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let answers = join_all((0..60).map(|i| {
        let (client, base) = (client.clone(), server.base.clone());
        async move { purchase(&client, &base, "the-one", "starter", &format!("one-{i}")).await }
    }))
    .await;
    let balances: BTreeSet<u64> =
        answers.iter().filter(|a| a.status == 200).map(|a| a.body["balance"].as_u64().expect("balance")).collect();
    assert_eq!(balances, (1..=FITS).map(|n| n * 10).collect::<BTreeSet<_>>(), "each sale saw the one before it");
    assert_eq!(answers.iter().filter(|a| a.status == 409).count() as u64, 60 - FITS);
    let wallet = get(&client, &server.url("/api/users/the-one/credits")).await;
    assert_eq!(wallet.body["balance"], FITS * 10);
    let capacity = catalogue(&client, &server).await["platformCapacity"].clone();
    assert_eq!(
        (capacity["reservedCredits"].as_u64(), capacity["availableCredits"].as_i64()),
        (Some(FITS * 40), Some(0))
    );
}
