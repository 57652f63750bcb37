//! Goal: an acknowledged purchase survives `kill -9` at any moment, and
//! nothing half-applied is visible after restart (SPEC §4.2).
//!
//! Method: 32 clients buy concurrently against the real binary; after a
//! random number of acknowledgements the server gets SIGKILL. Then, with the
//! server down, `creditd check` must pass on the data directory; after a
//! restart every acknowledged purchase must be in the ledger and its wallet,
//! every purchase that got no answer is retried with its key and must then
//! be applied exactly once, and `reserved == ratio × Σ wallets`. Repeated for
//! `CRASH_CYCLES` cycles (default 5).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use common::{catalogue, client, get, ledger, provider, purchase, run_check, temp_dir, try_purchase, Server};

const CLIENTS: usize = 32;

#[derive(Debug, Default)]
struct History {
    /// Key → purchase id, for every 200.
    acknowledged: BTreeMap<String, String>,
    /// Keys (and their users) that got no answer.
    unknown: Vec<(String, String)>,
}

async fn buyer(
    client: reqwest::Client,
    base: String,
    id: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    cycle: usize,
) -> History {
    let mut history = History::default();
    let user = format!("crash-user-{id}");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("c{cycle}-u{id}-p{n}");
        n += 1;
        match try_purchase(&client, &base, &user, "starter", &key).await {
            Ok(answer) if answer.status == 200 => {
                history.acknowledged.insert(key, answer.body["purchaseId"].as_str().expect("id").to_owned());
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(answer) => panic!("unexpected answer for {key}: {answer:?}"),
            Err(_) => {
                history.unknown.push((key, user.clone()));
                // The server is gone; a real client would back off and retry later.
                break;
            }
        }
    }
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_purchases_survive_kill_9_and_nothing_is_half_applied() {
    let cycles: usize = std::env::var("CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let provider = provider(1_000_000_000);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let client = client();
    let mut all_acknowledged: BTreeMap<String, String> = BTreeMap::new();

    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let buyers: Vec<_> = (0..CLIENTS)
            .map(|id| tokio::spawn(buyer(client.clone(), server.base.clone(), id, stop.clone(), acks.clone(), cycle)))
            .collect();
        let kill_after = rand::thread_rng().gen_range(20..400);
        while acks.load(Ordering::Relaxed) < kill_after {
            tokio::task::yield_now().await;
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut history = History::default();
        for buyer in buyers {
            let part = buyer.await.expect("buyer task");
            history.acknowledged.extend(part.acknowledged);
            history.unknown.extend(part.unknown);
        }

        let (code, report) = run_check(dir.path());
        assert_eq!(code, 0, "cycle {cycle}: creditd check after kill -9:\n{report}");

        server.restart().await;
        let entries = ledger(&client, &server).await;
        let ids: BTreeSet<&str> = entries.iter().filter_map(|e| e["purchaseId"].as_str()).collect();
        for (key, id) in &history.acknowledged {
            assert!(ids.contains(id.as_str()), "cycle {cycle}: acknowledged purchase {key} ({id}) was lost");
        }
        for (key, user) in &history.unknown {
            let retry = purchase(&client, &server.base, user, "starter", key).await;
            assert_eq!(retry.status, 200, "cycle {cycle}: retry of {key}: {retry:?}");
        }
        all_acknowledged.extend(history.acknowledged);

        let entries = ledger(&client, &server).await;
        let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
        let mut per_user: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in entries.iter().filter(|e| e["kind"] == "purchase") {
            *per_key.entry(entry["idempotencyKey"].as_str().expect("key")).or_default() += 1;
            *per_user.entry(entry["userId"].as_str().expect("user")).or_default() += 10;
        }
        assert!(per_key.values().all(|&n| n == 1), "cycle {cycle}: a key was applied twice");
        let mut wallets_total = 0;
        for (user, credits) in &per_user {
            let wallet = get(&client, &server.url(&format!("/api/users/{user}/credits"))).await;
            assert_eq!(wallet.body["balance"].as_u64(), Some(*credits), "cycle {cycle}: wallet of {user}");
            wallets_total += credits;
        }
        let capacity = catalogue(&client, &server).await["platformCapacity"].clone();
        assert_eq!(capacity["reservedCredits"].as_u64(), Some(4 * wallets_total), "cycle {cycle}: reserved");
        eprintln!(
            "cycle {cycle}: killed after {kill_after}+ acks; {} acknowledged, {} unknown retried, {} purchases in all",
            all_acknowledged.len(),
            history.unknown.len(),
            per_key.len()
        );
    }
    server.kill9();
    let (code, report) = run_check(dir.path());
    assert_eq!(code, 0, "final creditd check:\n{report}");
}
