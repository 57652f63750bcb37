//! The history checker the crash harness and the cluster tests share
//! (SPEC §4.2, §4.3): clients that run purchases, holds, captures,
//! releases, spends and refunds with unique idempotency keys and record
//! ok / refused / unknown; the ledger read back through the admin API and
//! checked against that history (every acknowledged operation applied
//! exactly once, nothing applied twice, no gap).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub const CLIENTS: usize = 64;
pub const PACKAGES: [&str; 3] = ["starter", "creative", "pro"];

#[derive(Debug, Clone)]
pub enum Op {
    Purchase { user: String, package: &'static str, key: String },
    Hold { user: String, package: &'static str, ttl: u64, key: String },
    Capture { hold: String },
    Release { hold: String },
    Spend { user: String, credits: u64, key: String },
    Refund { spend: String },
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Ok(Value),
    Refused(u16, String),
    Unknown,
}

/// What one client believes: its user, its open holds and refundable spends.
pub struct ClientState {
    pub user: String,
    pub holds: Vec<String>,
    pub spends: Vec<String>,
    pub balance: u64,
    pub next: u64,
}

pub fn request(client: &reqwest::Client, base: &str, op: &Op) -> reqwest::RequestBuilder {
    match op {
        Op::Purchase { user, package, key } => client
            .post(format!("{base}/api/credits/purchase"))
            .header("Idempotency-Key", key)
            .json(&json!({"userId": user, "packageId": package})),
        Op::Hold { user, package, ttl, key } => client
            .post(format!("{base}/api/credits/holds"))
            .header("Idempotency-Key", key)
            .json(&json!({"userId": user, "packageId": package, "ttlSeconds": ttl})),
        Op::Capture { hold } => client.post(format!("{base}/api/credits/holds/{hold}/capture")),
        Op::Release { hold } => client.post(format!("{base}/api/credits/holds/{hold}/release")),
        Op::Spend { user, credits, key } => client
            .post(format!("{base}/api/credits/spend"))
            .header("Idempotency-Key", key)
            .json(&json!({"userId": user, "credits": credits, "reason": "crash harness"})),
        Op::Refund { spend } => client.post(format!("{base}/api/credits/spend/{spend}/refund")),
    }
}

pub async fn invoke(client: &reqwest::Client, base: &str, op: &Op) -> Outcome {
    let Ok(response) = request(client, base, op).send().await else { return Outcome::Unknown };
    let status = response.status().as_u16();
    let Ok(bytes) = response.bytes().await else { return Outcome::Unknown };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("");
    if status == 200 {
        Outcome::Ok(body)
    } else if code == "outcome_unknown" || (code.is_empty() && status >= 500) {
        // SPEC §9: it may or may not be applied; the retry after the restart tells.
        // A 5xx without creditd's error body is a proxy's: its node may have applied it.
        Outcome::Unknown
    } else {
        Outcome::Refused(status, code.to_owned())
    }
}

pub fn next_op(state: &mut ClientState, rng: &mut StdRng, cycle: usize) -> Op {
    state.next += 1;
    let key = format!("c{cycle}-{}-{}", state.user, state.next);
    let user = state.user.clone();
    match rng.gen_range(0..100) {
        0..=29 => Op::Purchase { user, package: PACKAGES[rng.gen_range(0..PACKAGES.len())], key },
        30..=44 => Op::Hold { user, package: "starter", ttl: if rng.gen_bool(0.2) { 1 } else { 60 }, key },
        45..=59 if !state.holds.is_empty() => {
            Op::Capture { hold: state.holds.swap_remove(rng.gen_range(0..state.holds.len())) }
        }
        60..=64 if !state.holds.is_empty() => {
            Op::Release { hold: state.holds.swap_remove(rng.gen_range(0..state.holds.len())) }
        }
        65..=89 if state.balance > 0 => Op::Spend { user, credits: rng.gen_range(1..=state.balance.min(5)), key },
        90..=99 if !state.spends.is_empty() => {
            Op::Refund { spend: state.spends.swap_remove(rng.gen_range(0..state.spends.len())) }
        }
        _ => Op::Purchase { user, package: "starter", key },
    }
}

/// What an acknowledged operation teaches the client.
pub fn learn(state: &mut ClientState, op: &Op, body: &Value) {
    let balance = body["balance"].as_u64();
    match op {
        Op::Hold { .. } => state.holds.extend(body["holdId"].as_str().map(str::to_owned)),
        Op::Spend { .. } => state.spends.extend(body["spendId"].as_str().map(str::to_owned)),
        _ => {}
    }
    if let Some(balance) = balance {
        state.balance = balance;
    }
}

pub async fn run_client(
    client: reqwest::Client,
    base: String,
    mut state: ClientState,
    stop: Arc<AtomicBool>,
    cycle: usize,
    seed: u64,
) -> (ClientState, Vec<(Op, Outcome)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let op = next_op(&mut state, &mut rng, cycle);
        let outcome = invoke(&client, &base, &op).await;
        if let Outcome::Ok(body) = &outcome {
            learn(&mut state, &op, body);
        }
        let unknown = matches!(outcome, Outcome::Unknown);
        history.push((op, outcome));
        if unknown {
            break; // The server is gone: the client waits for it to come back.
        }
    }
    (state, history)
}

/// Counts of what the ledger holds, by idempotency key and resource id.
#[derive(Default)]
pub struct LedgerIndex {
    pub keys: BTreeMap<(String, String), usize>,
    closes: BTreeMap<String, Vec<String>>,
    refunds: BTreeMap<String, usize>,
    ids: BTreeSet<String>,
}

/// Adds ledger entries (read in order, never twice) to the index.
pub fn extend_index(index: &mut LedgerIndex, entries: &[Value]) {
    for entry in entries {
        let kind = entry["kind"].as_str().unwrap_or("").to_owned();
        if let Some(key) = entry["idempotencyKey"].as_str() {
            *index.keys.entry((kind.clone(), key.to_owned())).or_default() += 1;
        }
        for id in ["purchaseId", "holdId", "spendId"] {
            if let Some(id) = entry[id].as_str() {
                index.ids.insert(format!("{kind}/{id}"));
            }
        }
        if matches!(kind.as_str(), "holdCaptured" | "holdReleased" | "holdExpired") {
            index.closes.entry(entry["holdId"].as_str().unwrap_or("").to_owned()).or_default().push(kind.clone());
        }
        if kind == "refund" {
            *index.refunds.entry(entry["spendId"].as_str().unwrap_or("").to_owned()).or_default() += 1;
        }
    }
}

/// Reads the ledger entries after `after` through the admin API, page by
/// page, handing each page to `each` (a long run's ledger never sits in
/// memory whole); returns the last sequence number read.
pub async fn ledger_after(client: &reqwest::Client, base: &str, mut after: u64, mut each: impl FnMut(&[Value])) -> u64 {
    loop {
        let url = format!("{base}/api/admin/ledger?after={after}&limit=1000");
        let page = crate::common::admin_get(client, &url).await;
        assert_eq!(page.status, 200, "{page:?}");
        let entries = page.body["entries"].as_array().map_or(&[][..], Vec::as_slice);
        for (expected, entry) in (after + 1..).zip(entries) {
            assert_eq!(entry["seq"].as_u64(), Some(expected), "the ledger has a gap before {expected}");
        }
        each(entries);
        after += entries.len() as u64;
        if page.body["nextAfter"].as_u64().is_none() {
            return after;
        }
    }
}

/// What an acknowledged operation's answer named: the id it made, if any.
pub fn made_id(op: &Op, body: &Value) -> Option<String> {
    let field = match op {
        Op::Purchase { .. } => "purchaseId",
        Op::Hold { .. } => "holdId",
        Op::Spend { .. } => "spendId",
        _ => return None,
    };
    body[field].as_str().map(str::to_owned)
}

/// Checks one acknowledged operation against the ledger: applied exactly once.
pub fn applied_once(index: &LedgerIndex, op: &Op, made: Option<&str>) -> Result<(), String> {
    let once = |kind: &str, key: &str| match index.keys.get(&(kind.to_owned(), key.to_owned())) {
        Some(1) => Ok(()),
        other => Err(format!("{kind} with key {key} is in the ledger {other:?} times")),
    };
    let has = |kind: &str| {
        let id = made.unwrap_or("");
        if index.ids.contains(&format!("{kind}/{id}")) {
            Ok(())
        } else {
            Err(format!("{kind} {id} was acknowledged but is not in the ledger"))
        }
    };
    match op {
        Op::Purchase { key, .. } => once("purchase", key).and_then(|()| has("purchase")),
        Op::Hold { key, .. } => once("holdCreated", key).and_then(|()| has("holdCreated")),
        Op::Spend { key, .. } => once("spend", key).and_then(|()| has("spend")),
        Op::Capture { hold } | Op::Release { hold } => {
            let expected = if matches!(op, Op::Capture { .. }) { "holdCaptured" } else { "holdReleased" };
            match index.closes.get(hold).map(Vec::as_slice) {
                Some([kind]) if kind == expected => Ok(()),
                other => Err(format!("hold {hold} acknowledged as {expected}, the ledger has {other:?}")),
            }
        }
        Op::Refund { spend } => match index.refunds.get(spend) {
            Some(1) => Ok(()),
            other => Err(format!("refund of {spend} is in the ledger {other:?} times")),
        },
    }
}

/// No key and no hold or spend was ever applied twice.
pub fn nothing_twice(index: &LedgerIndex) -> Result<(), String> {
    if let Some(((kind, key), n)) = index.keys.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{kind} with key {key} applied {n} times"));
    }
    if let Some((hold, closes)) = index.closes.iter().find(|(_, closes)| closes.len() > 1) {
        return Err(format!("hold {hold} closed {} times: {closes:?}", closes.len()));
    }
    if let Some((spend, n)) = index.refunds.iter().find(|(_, n)| **n > 1) {
        return Err(format!("spend {spend} refunded {n} times"));
    }
    Ok(())
}
