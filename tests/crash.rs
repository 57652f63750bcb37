//! The crash harness (SPEC §4.2, §4.3): Jepsen-style, against the real binary.
//!
//! Goal: every acknowledged operation survives `kill -9` exactly once, every
//! operation that got no answer is applied at most once (exactly once after
//! its retry with the same key), nothing is oversold or half-applied.
//!
//! Method: 64 clients run purchases, holds, captures, releases, spends,
//! completions, refunds, and (as an admin) promotional grants, half of them
//! expiring within seconds, and voids, with unique idempotency keys and record a
//! history of ok / refused / unknown (no answer), and play the provider
//! (`history::ProviderModel`): the fake provider's balance is the real one,
//! consumed for a spend at a random step before its completion, never for a
//! refunded one. The server syncs every second and completes spends by
//! time after 20 s. After a random 0.5–5 s the server gets SIGKILL;
//! `creditd check` must pass on the stopped directory; the server restarts;
//! every unknown operation is retried with its key; the engine's
//! `providerBalance` must not exceed the real balance minus the consumption
//! still to come (SPEC §4.1); then the whole ledger is checked against the
//! history. At the end every spend is completed or refunded and two quiet
//! syncs must leave `providerBalance` equal to the real balance, drift 0.
//! `CRASH_CYCLES` cycles (default 20; the long mode is
//! `CRASH_CYCLES=200 cargo test --release --test crash`).

mod common;
#[path = "common/history.rs"]
mod history;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{capacity, provider, run_check, temp_dir, Server};
use history::{
    a_fine_refusal_of_a_retry, applied_once, extend_index, invoke, invoke_until_known, learn, ledger_after, made_id,
    nothing_twice, run_client, ClientState, LedgerIndex, Op, Outcome, Plan, ProviderModel, CLIENTS,
};

/// SPEC §4.1 against the provider itself: the engine's `providerBalance`
/// never exceeds what the provider really holds minus the consumption still
/// to come. Checked while no client runs.
async fn no_oversell_against_the_provider(
    client: &reqwest::Client,
    server: &Server,
    model: &ProviderModel,
    when: &str,
) {
    let capacity = capacity(client, server).await;
    let balance = capacity["nanoBananaCredits"].as_u64().expect("a balance");
    let (real, to_come) = model.real_and_to_come();
    assert!(
        balance + to_come <= real,
        "{when}: §4.1: providerBalance {balance} exceeds the real balance {real} minus the consumption to come {to_come}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_operations_survive_kill_9_exactly_once() {
    let cycles: usize = std::env::var("CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 =
        std::env::var("CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("crash harness: {cycles} cycles, CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let provider = Arc::new(provider(1_000_000_000));
    let model = Arc::new(ProviderModel::new(Arc::clone(&provider)));
    let dir = temp_dir();
    let env = [("CREDITD_SYNC_INTERVAL_SECS", "1"), ("CREDITD_SPEND_COMPLETE_AFTER_SECS", "20")];
    let mut server = Server::start_with(&provider, dir.path(), &env).await;
    // As a storefront and an enhancement service would: one key with both scopes (SPEC §9.1).
    let (_, key) = common::create_key(&server, "crash harness", &["storefront", "enhancement"]).await;
    let client = common::client_with_key(&key);
    let mut states: Vec<ClientState> = (0..CLIENTS).map(|i| ClientState::new(format!("crash-{i}"))).collect();
    // Only what the final check needs of each answer: a long run acknowledges millions.
    let mut acknowledged: Vec<(Op, Option<String>)> = Vec::new();
    let mut index = LedgerIndex::default();
    let mut last_seq = 0u64;
    let mut verified = 0usize;
    let (mut operations, mut unknown_total, mut refused_total) = (0usize, 0usize, 0usize);

    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = states
            .drain(..)
            .map(|state| {
                let task_seed = rng.gen();
                let model = Some(Arc::clone(&model));
                tokio::spawn(run_client(
                    client.clone(),
                    server.base.clone(),
                    state,
                    stop.clone(),
                    cycle,
                    task_seed,
                    model,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..=5_000))).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut unknown = Vec::new();
        for task in tasks {
            let (state, history) = task.await.expect("client task");
            states.push(state);
            for (op, outcome) in history {
                operations += 1;
                match outcome {
                    Outcome::Ok(body) => {
                        let made = made_id(&op, &body);
                        acknowledged.push((op, made));
                    }
                    Outcome::Refused(..) => refused_total += 1,
                    Outcome::Unknown(_) => unknown.push((states.len() - 1, op)),
                }
            }
        }

        let (code, report) = run_check(dir.path());
        assert_eq!(code, 0, "cycle {cycle}: creditd check after kill -9:\n{report}");
        server.restart().await;

        unknown_total += unknown.len();
        for (owner, op) in unknown {
            match invoke_until_known(&client, &server.base, &op).await {
                Outcome::Ok(body) => {
                    learn(&mut states[owner], &op, &body, Some(&model));
                    let made = made_id(&op, &body);
                    acknowledged.push((op, made));
                }
                // Not applied before, and refused now (a hold that expired meanwhile, a spend refunded...),
                // or applied before: `already_refunded`. Either way at most once, checked below.
                Outcome::Refused(status, code) => {
                    assert!(a_fine_refusal_of_a_retry(&op, status), "retry of {op:?}: {status} {code}")
                }
                Outcome::Unknown(why) => {
                    panic!("cycle {cycle}: the restarted server did not answer the retry of {op:?}: {why}")
                }
            }
        }

        // The ledger is append-only and gap-free: read only what is new.
        last_seq = ledger_after(&client, &server.base, last_seq, |page| extend_index(&mut index, page)).await;
        nothing_twice(&index).unwrap_or_else(|error| panic!("cycle {cycle}: {error}"));
        for (op, made) in &acknowledged[verified..] {
            applied_once(&index, op, made.as_deref()).unwrap_or_else(|error| panic!("cycle {cycle}: {error}"));
        }
        verified = acknowledged.len();
        no_oversell_against_the_provider(&client, &server, &model, &format!("cycle {cycle}")).await;
        let capacity = capacity(&client, &server).await;
        let (balance, reserved) = (capacity["nanoBananaCredits"].as_u64(), capacity["reservedCredits"].as_u64());
        let held_back = common::admin_get(&client, &server.url("/api/admin/credits")).await.body["heldBackCredits"]
            .as_u64()
            .expect("held back");
        assert!(
            reserved <= balance.map(|balance| balance + held_back),
            "cycle {cycle}: overcommitted: reserved {reserved:?} > balance {balance:?} + held back {held_back}"
        );
        eprintln!(
            "cycle {cycle:>3}: {operations} operations, {} acknowledged, {unknown_total} unknown retried, {refused_total} refused, ledger {last_seq}",
            acknowledged.len(),
        );
    }
    // Every spend ends: the provider does the work of those planned to
    // complete (if it still may), the others are refunded or completed
    // without it (abandoned: the service never said).
    for state in &mut states {
        for spend in std::mem::take(&mut state.spends) {
            let op = match spend.plan {
                Plan::Complete => {
                    model.consume(&spend.id);
                    Op::Complete { spend: spend.id }
                }
                Plan::Refund => Op::Refund { spend: spend.id },
                Plan::Abandon => Op::Complete { spend: spend.id },
            };
            match invoke(&client, &server.base, &op).await {
                Outcome::Ok(body) => {
                    let made = made_id(&op, &body);
                    acknowledged.push((op, made));
                }
                Outcome::Refused(status, code) => {
                    assert_eq!((status, code.as_str()), (409, "spend_completed"), "{op:?}")
                }
                Outcome::Unknown(why) => panic!("the server did not answer {op:?}: {why}"),
            }
        }
    }
    common::eventually("every spend is completed or refunded", || async {
        common::admin_get(&client, &server.url("/api/admin/credits")).await.body["openSpends"] == 0
    })
    .await;
    no_oversell_against_the_provider(&client, &server, &model, "at the end").await;
    // SPEC §6: with nothing in flight, two quiet syncs leave the engine's
    // balance at the real one (the periodic syncs may be among them).
    common::sync_now(&client, &server).await;
    let quiet = common::sync_now(&client, &server).await;
    let (real, _) = model.real_and_to_come();
    assert_eq!(
        (quiet.body["balance"].as_u64(), quiet.body["drift"].as_i64()),
        (Some(real), Some(0)),
        "two quiet syncs: {quiet:?}"
    );

    // Everything again, against the whole ledger: an acknowledged operation
    // must still be there, once, however many crashes came after it.
    drop(index);
    let mut whole = LedgerIndex::default();
    ledger_after(&client, &server.base, 0, |page| extend_index(&mut whole, page)).await;
    nothing_twice(&whole).unwrap_or_else(|error| panic!("at the end: {error}"));
    for (op, made) in &acknowledged {
        applied_once(&whole, op, made.as_deref()).unwrap_or_else(|error| panic!("at the end: {error}"));
    }
    let (grants, closed) = whole.count("grantCreated");
    assert!(grants > 0, "the mix made promotional grants");
    server.kill9();
    let (code, report) = run_check(dir.path());
    assert_eq!(code, 0, "final creditd check:\n{report}");
    eprintln!(
        "crash harness: {cycles} kill cycles, {operations} operations, {unknown_total} unknown retried, \
         {grants} grants made, {closed} expired or voided, 0 violations"
    );
}
