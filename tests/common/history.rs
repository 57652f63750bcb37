//! The history checker the crash harness and the cluster tests share
//! (SPEC §4.2, §4.3): clients that run purchases, holds, captures,
//! releases, spends, completions and refunds with unique idempotency keys
//! and record ok / refused / unknown; the ledger read back through the
//! admin API and checked against that history (every acknowledged
//! operation applied exactly once, nothing applied twice, no gap).
//!
//! With a [`ProviderModel`], the clients also play the provider (SPEC §4.1):
//! a spend they plan to complete is consumed at the fake provider at a
//! random later step, before its completion is sent; one they plan to
//! refund is never consumed; one they abandon completes by time and is
//! never consumed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use creditd::provider::fake::FakeProvider;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub const CLIENTS: usize = 64;
pub const PACKAGES: [&str; 3] = ["starter", "creative", "pro"];

#[derive(Debug, Clone)]
pub enum Op {
    Purchase {
        user: String,
        package: &'static str,
        key: String,
    },
    Hold {
        user: String,
        package: &'static str,
        ttl: u64,
        key: String,
    },
    Capture {
        hold: String,
    },
    Release {
        hold: String,
    },
    /// `sent`: when it was first sent, so before the server made the spend:
    /// a retry after a restart keeps it.
    Spend {
        user: String,
        credits: u64,
        key: String,
        sent: Instant,
    },
    Complete {
        spend: String,
    },
    Refund {
        spend: String,
    },
    /// An admin's promotional grant (SPEC §13), expiring `expires_in_s`
    /// seconds after it was first sent, if set.
    Grant {
        user: String,
        credits: u64,
        expires_at: Option<String>,
        key: String,
    },
    /// An admin voids a grant the client was given.
    Void {
        grant: String,
    },
}

/// What the enhancement service will do with an acknowledged spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The provider does the work (consumes), then the spend is completed.
    Complete,
    /// The provider call fails: nothing consumed, the spend is refunded.
    Refund,
    /// Nobody says: it completes by time, nothing consumed.
    Abandon,
}

/// A spend a client knows of.
#[derive(Debug, Clone)]
pub struct KnownSpend {
    pub id: String,
    pub credits: u64,
    pub plan: Plan,
}

/// The provider credits per user credit of the servers under test.
pub const RATIO: u64 = 4;

/// A spend is consumed only this soon after its request was first sent
/// (before the server made it): the servers under test complete spends by
/// time later than this (`CREDITD_SPEND_COMPLETE_AFTER_SECS`), and the
/// provider never consumes after a completion. Measured from the first
/// send, not from the answer: a spend whose answer was lost is learnt only
/// after `check` and a restart, which take longer as the ledger grows.
pub const CONSUME_WITHIN: Duration = Duration::from_secs(8);

/// The provider's side of SPEC §4.1: the fake provider's balance is the real
/// balance; it consumes a spend's `ratio × credits` at most once, and only
/// for spends planned to complete.
pub struct ProviderModel {
    pub fake: Arc<FakeProvider>,
    /// Spends planned to complete and not consumed yet: provider credits and
    /// when their request was first sent.
    to_come: Mutex<HashMap<String, (u64, Instant)>>,
}

impl ProviderModel {
    pub fn new(fake: Arc<FakeProvider>) -> Self {
        Self { fake, to_come: Mutex::new(HashMap::new()) }
    }

    fn plan(&self, spend: &KnownSpend, sent: Instant) {
        if spend.plan == Plan::Complete {
            let mut to_come = self.to_come.lock().expect("not poisoned");
            to_come.entry(spend.id.clone()).or_insert((RATIO * spend.credits, sent));
        }
    }

    /// The provider does the work of `spend` now, if it has not yet and may still.
    pub fn consume(&self, spend: &str) {
        let mut to_come = self.to_come.lock().expect("not poisoned");
        if let Some((credits, sent)) = to_come.remove(spend) {
            if sent.elapsed() < CONSUME_WITHIN {
                self.fake.consume(i64::try_from(credits).expect("small"));
            }
        }
    }

    /// What the provider really holds, and the consumption still to come.
    pub fn real_and_to_come(&self) -> (u64, u64) {
        let to_come = self.to_come.lock().expect("not poisoned");
        let real = u64::try_from(self.fake.balance()).expect("never negative");
        let pending = to_come.values().filter(|(_, sent)| sent.elapsed() < CONSUME_WITHIN).map(|(c, _)| c).sum();
        (real, pending)
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Ok(Value),
    Refused(u16, String),
    /// No answer, `outcome_unknown`, or a proxy's 5xx: why, for the report.
    Unknown(String),
}

/// What one client believes: its user, its open holds and open spends.
pub struct ClientState {
    pub user: String,
    /// Grants made for the user, not voided yet (they may have expired).
    pub grants: Vec<String>,
    pub holds: Vec<String>,
    pub spends: Vec<KnownSpend>,
    pub balance: u64,
    pub next: u64,
}

impl ClientState {
    /// A client of `user`, who has nothing yet.
    pub fn new(user: String) -> Self {
        Self { user, grants: Vec::new(), holds: Vec::new(), spends: Vec::new(), balance: 0, next: 0 }
    }
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
        Op::Spend { user, credits, key, .. } => client
            .post(format!("{base}/api/credits/spend"))
            .header("Idempotency-Key", key)
            .json(&json!({"userId": user, "credits": credits, "reason": "crash harness"})),
        Op::Complete { spend } => client.post(format!("{base}/api/credits/spend/{spend}/complete")),
        Op::Refund { spend } => client.post(format!("{base}/api/credits/spend/{spend}/refund")),
        // Grants are an admin's: the admin token replaces the client's key.
        Op::Grant { user, credits, expires_at, key } => client
            .post(format!("{base}/api/admin/grants"))
            .bearer_auth(crate::common::ADMIN_TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({"userId": user, "credits": credits, "reason": "crash harness", "expiresAt": expires_at})),
        Op::Void { grant } => client
            .post(format!("{base}/api/admin/grants/{grant}/void"))
            .bearer_auth(crate::common::ADMIN_TOKEN)
            .json(&json!({"reason": "crash harness"})),
    }
}

pub async fn invoke(client: &reqwest::Client, base: &str, op: &Op) -> Outcome {
    let response = match request(client, base, op).send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Unknown(format!("no answer: {error}")),
    };
    let status = response.status().as_u16();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => return Outcome::Unknown(format!("{status} with its body cut: {error}")),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("");
    if status == 200 || status == 201 {
        Outcome::Ok(body)
    } else if code == "outcome_unknown" || (code.is_empty() && status >= 500) {
        // SPEC §9: it may or may not be applied; the retry after the restart tells.
        // A 5xx without creditd's error body is a proxy's: its node may have applied it.
        Outcome::Unknown(format!("{status} {}", String::from_utf8_lossy(&bytes)))
    } else {
        Outcome::Refused(status, code.to_owned())
    }
}

/// How often a retry after a restart or failover may itself be answered
/// `outcome_unknown` (or not at all) before the history gives up on the
/// server: SPEC §9's answer to it is another retry with the same key, and
/// a commit can outlast the 10 s answer timeout when the machine's disk is
/// flushing another process's writes.
pub const RETRIES_OF_UNKNOWN: usize = 5;

/// `op` sent until its outcome is known (applied or refused), at most
/// [`RETRIES_OF_UNKNOWN`] times; the last `Unknown` names every attempt's reason.
pub async fn invoke_until_known(client: &reqwest::Client, base: &str, op: &Op) -> Outcome {
    let mut reasons = Vec::new();
    for _ in 0..RETRIES_OF_UNKNOWN {
        match invoke(client, base, op).await {
            Outcome::Unknown(reason) => reasons.push(reason),
            known => return known,
        }
    }
    Outcome::Unknown(reasons.join("; "))
}

pub fn next_op(state: &mut ClientState, rng: &mut StdRng, cycle: usize, provider: Option<&ProviderModel>) -> Op {
    state.next += 1;
    let key = format!("c{cycle}-{}-{}", state.user, state.next);
    let user = state.user.clone();
    // Now and then the provider finishes the work of a spend before anyone says so.
    if let (Some(provider), Some(spend)) = (provider, state.spends.get(rng.gen_range(0..state.spends.len().max(1)))) {
        if rng.gen_bool(0.2) {
            provider.consume(&spend.id);
        }
    }
    match rng.gen_range(0..105) {
        100..=103 => {
            // A promotional grant; half of them expire within 1–4 s, across the kills.
            let expires_at = rng.gen_bool(0.5).then(|| {
                let at = std::time::SystemTime::now() + Duration::from_millis(rng.gen_range(1_000..4_000));
                let ms = at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis();
                let nanos = i128::try_from(ms).expect("fits") * 1_000_000;
                let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("a time");
                at.format(&time::format_description::well_known::Rfc3339).expect("formats")
            });
            Op::Grant { user, credits: rng.gen_range(1..=20), expires_at, key }
        }
        104 if !state.grants.is_empty() => {
            Op::Void { grant: state.grants.swap_remove(rng.gen_range(0..state.grants.len())) }
        }
        0..=29 => Op::Purchase { user, package: PACKAGES[rng.gen_range(0..PACKAGES.len())], key },
        30..=44 => Op::Hold { user, package: "starter", ttl: if rng.gen_bool(0.2) { 1 } else { 60 }, key },
        45..=59 if !state.holds.is_empty() => {
            Op::Capture { hold: state.holds.swap_remove(rng.gen_range(0..state.holds.len())) }
        }
        60..=64 if !state.holds.is_empty() => {
            Op::Release { hold: state.holds.swap_remove(rng.gen_range(0..state.holds.len())) }
        }
        65..=84 if state.balance > 0 => {
            Op::Spend { user, credits: rng.gen_range(1..=state.balance.min(5)), key, sent: Instant::now() }
        }
        85..=99 if !state.spends.is_empty() => {
            // The oldest first, so that a planned consumption comes before the spend's time runs out.
            let spend = state.spends.remove(0);
            match spend.plan {
                Plan::Complete => {
                    if let Some(provider) = provider {
                        provider.consume(&spend.id);
                    }
                    Op::Complete { spend: spend.id }
                }
                Plan::Refund => Op::Refund { spend: spend.id },
                Plan::Abandon => Op::Purchase { user, package: "starter", key },
            }
        }
        _ => Op::Purchase { user, package: "starter", key },
    }
}

/// What the service will do with spend `id`: a fixed mix, from the id.
fn plan_of(id: &str) -> Plan {
    match id.bytes().map(u64::from).sum::<u64>() % 10 {
        0..=5 => Plan::Complete,
        6..=8 => Plan::Refund,
        _ => Plan::Abandon,
    }
}

/// What an acknowledged operation teaches the client.
pub fn learn(state: &mut ClientState, op: &Op, body: &Value, provider: Option<&ProviderModel>) {
    let balance = body["balance"].as_u64();
    match op {
        Op::Hold { .. } => state.holds.extend(body["holdId"].as_str().map(str::to_owned)),
        Op::Grant { .. } => state.grants.extend(body["grantId"].as_str().map(str::to_owned)),
        Op::Spend { credits, sent, .. } => {
            if let Some(id) = body["spendId"].as_str() {
                let spend = KnownSpend { id: id.to_owned(), credits: *credits, plan: plan_of(id) };
                if let Some(provider) = provider {
                    provider.plan(&spend, *sent);
                }
                state.spends.push(spend);
            }
        }
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
    provider: Option<Arc<ProviderModel>>,
) -> (ClientState, Vec<(Op, Outcome)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let op = next_op(&mut state, &mut rng, cycle, provider.as_deref());
        let outcome = invoke(&client, &base, &op).await;
        if let Outcome::Ok(body) = &outcome {
            learn(&mut state, &op, body, provider.as_deref());
        }
        let unknown = matches!(outcome, Outcome::Unknown(_));
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
    /// How each spend ended: `refund` or `spendCompleted`, each time.
    ends: BTreeMap<String, Vec<String>>,
    /// How each grant closed: `grantExpired` or `grantVoided`, each time.
    grant_closes: BTreeMap<String, Vec<String>>,
    ids: BTreeSet<String>,
}

/// Adds ledger entries (read in order, never twice) to the index.
pub fn extend_index(index: &mut LedgerIndex, entries: &[Value]) {
    for entry in entries {
        let kind = entry["kind"].as_str().unwrap_or("").to_owned();
        if let Some(key) = entry["idempotencyKey"].as_str() {
            *index.keys.entry((kind.clone(), key.to_owned())).or_default() += 1;
        }
        if matches!(kind.as_str(), "grantExpired" | "grantVoided") {
            let grant = entry["grantId"].as_str().unwrap_or("").to_owned();
            index.grant_closes.entry(grant).or_default().push(kind.clone());
        }
        if kind == "grantCreated" {
            index.ids.insert(format!("grantCreated/{}", entry["grantId"].as_str().unwrap_or("")));
        }
        for id in ["purchaseId", "holdId", "spendId"] {
            if let Some(id) = entry[id].as_str() {
                index.ids.insert(format!("{kind}/{id}"));
            }
        }
        if matches!(kind.as_str(), "holdCaptured" | "holdReleased" | "holdExpired") {
            index.closes.entry(entry["holdId"].as_str().unwrap_or("").to_owned()).or_default().push(kind.clone());
        }
        if matches!(kind.as_str(), "refund" | "spendCompleted") {
            index.ends.entry(entry["spendId"].as_str().unwrap_or("").to_owned()).or_default().push(kind.clone());
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
        Op::Grant { .. } => "grantId",
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
        Op::Grant { key, .. } => once("grantCreated", key).and_then(|()| has("grantCreated")),
        Op::Void { grant } => match index.grant_closes.get(grant).map(Vec::as_slice) {
            Some([kind]) if kind == "grantVoided" => Ok(()),
            other => Err(format!("{grant} acknowledged as voided, the ledger has {other:?}")),
        },
        Op::Capture { hold } | Op::Release { hold } => {
            let expected = if matches!(op, Op::Capture { .. }) { "holdCaptured" } else { "holdReleased" };
            match index.closes.get(hold).map(Vec::as_slice) {
                Some([kind]) if kind == expected => Ok(()),
                other => Err(format!("hold {hold} acknowledged as {expected}, the ledger has {other:?}")),
            }
        }
        Op::Refund { spend } | Op::Complete { spend } => {
            // A completion acknowledged may have been by time, before the service said so.
            let expected = if matches!(op, Op::Refund { .. }) { "refund" } else { "spendCompleted" };
            match index.ends.get(spend).map(Vec::as_slice) {
                Some([kind]) if kind == expected => Ok(()),
                other => Err(format!("spend {spend} acknowledged as {expected}, the ledger has {other:?}")),
            }
        }
    }
}

impl LedgerIndex {
    /// How many entries of `kind` carry an idempotency key, and how many grants closed.
    pub fn count(&self, kind: &str) -> (usize, usize) {
        let keyed = self.keys.keys().filter(|(k, _)| k == kind).count();
        (keyed, self.grant_closes.len())
    }
}

/// Whether a retry refused with `status` is one an operation not applied
/// before may get now: a hold expired or a spend refunded meanwhile (409),
/// a resource gone (404), or a grant whose `expiresAt` passed meanwhile,
/// refused as new (400). Either way at most once, which the ledger checks.
pub fn a_fine_refusal_of_a_retry(op: &Op, status: u16) -> bool {
    status == 409 || status == 404 || (matches!(op, Op::Grant { expires_at: Some(_), .. }) && status == 400)
}

/// No key and no hold or spend was ever applied twice.
pub fn nothing_twice(index: &LedgerIndex) -> Result<(), String> {
    if let Some(((kind, key), n)) = index.keys.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{kind} with key {key} applied {n} times"));
    }
    if let Some((hold, closes)) = index.closes.iter().find(|(_, closes)| closes.len() > 1) {
        return Err(format!("hold {hold} closed {} times: {closes:?}", closes.len()));
    }
    if let Some((spend, ends)) = index.ends.iter().find(|(_, ends)| ends.len() > 1) {
        return Err(format!("spend {spend} ended {} times: {ends:?}", ends.len()));
    }
    if let Some((grant, closes)) = index.grant_closes.iter().find(|(_, closes)| closes.len() > 1) {
        return Err(format!("{grant} closed {} times: {closes:?}", closes.len()));
    }
    Ok(())
}
