//! Cluster mode (SPEC §12) as a storefront sees it: a real PostgreSQL, three
//! `creditd serve` nodes on it, and HAProxy in front of them health-checking
//! `/readyz`; the clients talk only to HAProxy. Each test starts and stops
//! all of it itself.
//!
//! - `the_leader_killed_under_load_fails_over_with_every_promise_kept`:
//!   `kill -9` of the leader under 64-client load, `CLUSTER_FAILOVERS` times
//!   (10 by default; the long mode is `CLUSTER_FAILOVERS=100`), each time
//!   the failover time (kill to the first 2xx purchase through HAProxy),
//!   and the history checked as the crash harness does.
//! - `a_leader_paused_past_its_lease_commits_nothing_after_it`: SIGSTOP of
//!   the leader past its lease, a takeover, SIGCONT: the old leader answers
//!   no change with a 2xx and nothing it was asked reaches the ledger.

#[path = "common/mod.rs"]
mod common;
#[path = "common/history.rs"]
// The provider model is the crash harness's; these tests check histories only.
#[allow(dead_code)]
mod history;
#[path = "common/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use common::{FakeProvider, ADMIN_TOKEN, PROVIDER_KEY};
use history::{
    a_fine_refusal_of_a_retry, applied_once, extend_index, invoke, invoke_until_known, learn, ledger_after, made_id,
    nothing_twice, run_client, ClientState, LedgerIndex, Op, Outcome, CLIENTS,
};
use postgres::Postgres;

/// The longest a failover may take before the test gives up on it: a
/// liveness bound, not the figure (RELIABILITY.md has the measured ones).
const FAILOVER_GIVE_UP: Duration = Duration::from_secs(60);

/// One `creditd serve` node of the cluster, on a fixed port so that HAProxy
/// finds it again after a restart.
struct Node {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Node {
    fn spawn(port: u16, store: &str, provider: &FakeProvider, log: &Path) -> Self {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("the node's log");
        let base = format!("http://127.0.0.1:{port}");
        let child = Command::new(common::binary())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CREDITD_STORE", store)
            .env("CREDITD_LISTEN", format!("127.0.0.1:{port}"))
            .env("CREDITD_ADVERTISE_URL", &base)
            .env("CREDITD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("NANOBANANA_BASE_URL", provider.base_url())
            .env("NANOBANANA_API_KEY", PROVIDER_KEY)
            .env("CREDITD_WORKERS", "2")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("creditd starts");
        Self { child: Some(child), port, log: log.to_owned() }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL is delivered");
            child.wait().expect("reaped");
        }
    }

    async fn ready(&self, client: &reqwest::Client) -> bool {
        let response = client.get(format!("{}/readyz", self.base())).timeout(Duration::from_millis(500)).send().await;
        response.is_ok_and(|response| response.status() == 200)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// HAProxy in front of the nodes, sending traffic to those whose `/readyz` is 200.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(nodes: &[u16]) -> Option<Self> {
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].into_iter().find(|path| Path::new(path).is_file());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CREDITD_REQUIRE_TOOLS").is_none(),
                "HAProxy is required (CREDITD_REQUIRE_TOOLS is set) but is not installed"
            );
            eprintln!("SKIPPED: HAProxy is not installed (.ci/run installs it)");
            return None;
        };
        let dir = common::temp_dir();
        let port = common::free_port();
        let servers: String =
            nodes.iter().enumerate().map(|(i, node)| format!("    server node{i} 127.0.0.1:{node} check\n")).collect();
        let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
            .expect("deploy/haproxy.cfg");
        // The repository's file, with this test's ports.
        let config = config.replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
        let start = config.find("    server ").expect("the example's servers");
        let config = format!("{}{servers}", &config[..start]);
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("writes the config");
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        Some(Self { child, port, _dir: dir })
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    nodes: Vec<Node>,
    proxy: Haproxy,
    provider: FakeProvider,
    store: String,
    dir: tempfile::TempDir,
    // Dropped last: the nodes stop before their databases.
    databases: Vec<Postgres>,
}

impl Cluster {
    /// PostgreSQL with a store, three nodes (the first one leads), HAProxy.
    async fn start() -> Option<Self> {
        let database = Postgres::start()?;
        let store = database.url();
        Self::start_on(store, vec![database]).await
    }

    /// The nodes and HAProxy on the store at `store`, served by `databases`.
    async fn start_on(store: String, databases: Vec<Postgres>) -> Option<Self> {
        let made = Command::new(common::binary())
            .args(["init", "--store", &store])
            .env_clear()
            .output()
            .expect("creditd init runs");
        assert!(made.status.success(), "init --store: {}", String::from_utf8_lossy(&made.stderr));
        let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
        let proxy = Haproxy::start(&ports)?;
        let provider = common::provider(1_000_000_000);
        let dir = common::temp_dir();
        let mut cluster = Self { nodes: Vec::new(), proxy, provider, store, dir, databases };
        for (i, port) in ports.iter().enumerate() {
            let log = cluster.dir.path().join(format!("node{i}.log"));
            cluster.nodes.push(Node::spawn(*port, &cluster.store, &cluster.provider, &log));
            if i == 0 {
                cluster.await_leader().await;
            }
        }
        cluster.await_through_proxy().await;
        Some(cluster)
    }

    /// The node that answers `/readyz` 200, waiting for one.
    async fn await_leader(&self) -> usize {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + FAILOVER_GIVE_UP;
        loop {
            for (i, node) in self.nodes.iter().enumerate() {
                if node.child.is_some() && node.ready(&client).await {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no node became the leader:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until HAProxy sends every request to the leader: HAProxy counts
    /// a server up until its first check fails, so one 200 is not enough;
    /// twenty in a row, spread over its rotation of three servers, are.
    async fn await_through_proxy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + FAILOVER_GIVE_UP;
        let mut in_a_row = 0;
        loop {
            let ready = client.get(format!("{}/readyz", self.proxy.base())).send().await;
            if ready.is_ok_and(|response| response.status() == 200) {
                in_a_row += 1;
                if in_a_row == 20 {
                    return;
                }
                continue;
            }
            in_a_row = 0;
            assert!(Instant::now() < deadline, "HAProxy found no ready node:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn restart(&mut self, i: usize) {
        let (port, log) = (self.nodes[i].port, self.nodes[i].log.clone());
        self.nodes[i] = Node::spawn(port, &self.store, &self.provider, &log);
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!("--- node {} ---\n{}", node.port, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `creditd check --store` on the live database (it reads one snapshot).
    fn check(&self) -> (i32, String) {
        let output = Command::new(common::binary())
            .args(["check", "--store", &self.store])
            .env_clear()
            .output()
            .expect("creditd check runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code().unwrap_or(-1), text)
    }

    async fn api_key(&self) -> String {
        let made = common::admin_post(
            &common::client(),
            &format!("{}/api/admin/keys", self.proxy.base()),
            Some(json!({"name": "cluster test", "scopes": ["storefront", "enhancement"]})),
        )
        .await;
        assert_eq!(made.status, 201, "{made:?}");
        made.body["key"].as_str().expect("the key").to_owned()
    }
}

/// A client of `run_client`, running.
type ClientTask = tokio::task::JoinHandle<(ClientState, Vec<(Op, Outcome)>)>;

/// What the history holds, and what has been checked of it.
#[derive(Default)]
struct History {
    acknowledged: Vec<(Op, Option<String>)>,
    unknown: Vec<(Option<usize>, Op)>,
    operations: usize,
    refused: usize,
    retried: usize,
}

impl History {
    /// Waits for the client tasks and adds what each saw, its state back in `states`.
    async fn collect(&mut self, tasks: Vec<ClientTask>, states: &mut Vec<ClientState>) {
        for task in tasks {
            let (state, ops) = task.await.expect("client task");
            states.push(state);
            for (op, outcome) in ops {
                self.record(Some(states.len() - 1), op, outcome);
            }
        }
    }

    /// The whole ledger against the whole history: no gap, nothing applied
    /// twice, every acknowledged operation once. Answers the ledger's index.
    async fn check_against_the_ledger(&self, client: &reqwest::Client, base: &str) -> LedgerIndex {
        let mut index = LedgerIndex::default();
        ledger_after(client, base, 0, |page| extend_index(&mut index, page)).await;
        nothing_twice(&index).unwrap_or_else(|error| panic!("the whole ledger: {error}"));
        for (op, made) in &self.acknowledged {
            applied_once(&index, op, made.as_deref()).unwrap_or_else(|error| panic!("the whole ledger: {error}"));
        }
        index
    }

    fn record(&mut self, owner: Option<usize>, op: Op, outcome: Outcome) {
        self.operations += 1;
        match outcome {
            Outcome::Ok(body) => {
                let made = made_id(&op, &body);
                self.acknowledged.push((op, made));
            }
            Outcome::Refused(..) => self.refused += 1,
            Outcome::Unknown(_) => self.unknown.push((owner, op)),
        }
    }
}

/// Purchases through HAProxy until one is acknowledged: the failover time.
async fn first_purchase(client: &reqwest::Client, base: &str, history: &mut History, round: usize) -> Duration {
    let killed = Instant::now();
    for attempt in 0.. {
        let op =
            Op::Purchase { user: "failover-probe".into(), package: "starter", key: format!("probe-{round}-{attempt}") };
        let outcome = invoke(client, base, &op).await;
        let acknowledged = matches!(outcome, Outcome::Ok(_));
        history.record(None, op, outcome);
        if acknowledged {
            return killed.elapsed();
        }
        assert!(
            killed.elapsed() < FAILOVER_GIVE_UP,
            "no purchase was acknowledged {FAILOVER_GIVE_UP:?} after the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unreachable!("the loop returns or fails")
}

/// Every unknown operation retried with its key: applied at most once, now answered.
async fn retry_unknown(
    client: &reqwest::Client,
    base: &str,
    history: &mut History,
    states: &mut [ClientState],
    round: usize,
) {
    for (owner, op) in std::mem::take(&mut history.unknown) {
        history.retried += 1;
        match invoke_until_known(client, base, &op).await {
            Outcome::Ok(body) => {
                if let Some(owner) = owner {
                    learn(&mut states[owner], &op, &body, None);
                }
                let made = made_id(&op, &body);
                history.acknowledged.push((op, made));
            }
            Outcome::Refused(status, code) => {
                assert!(a_fine_refusal_of_a_retry(&op, status), "round {round}: retry of {op:?}: {status} {code}")
            }
            Outcome::Unknown(why) => panic!("round {round}: the new leader did not answer the retry of {op:?}: {why}"),
        }
    }
}

fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_load_fails_over_with_every_promise_kept() {
    let rounds: usize = std::env::var("CLUSTER_FAILOVERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let seed: u64 =
        std::env::var("CLUSTER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("cluster: {rounds} failovers, CLUSTER_SEED={seed}");
    let Some(mut cluster) = Cluster::start().await else { return };
    let mut rng = StdRng::seed_from_u64(seed);
    let base = cluster.proxy.base();
    let key = cluster.api_key().await;
    let client = common::client_with_key(&key);
    let mut states: Vec<ClientState> = (0..CLIENTS).map(|i| ClientState::new(format!("node-{i}"))).collect();
    let mut history = History::default();
    let (mut index, mut last_seq, mut verified) = (LedgerIndex::default(), 0u64, 0usize);
    let mut failovers = Vec::new();

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = states
            .drain(..)
            .map(|state| {
                let task_seed = rng.gen();
                tokio::spawn(run_client(client.clone(), base.clone(), state, stop.clone(), round, task_seed, None))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..=3_000))).await;
        let leader = cluster.await_leader().await;
        cluster.nodes[leader].kill9();
        failovers.push(first_purchase(&client, &base, &mut history, round).await);
        stop.store(true, Ordering::Relaxed);
        history.collect(tasks, &mut states).await;
        cluster.restart(leader);
        retry_unknown(&client, &base, &mut history, &mut states, round).await;

        last_seq = ledger_after(&client, &base, last_seq, |page| extend_index(&mut index, page)).await;
        nothing_twice(&index).unwrap_or_else(|error| panic!("round {round}: {error}"));
        for (op, made) in &history.acknowledged[verified..] {
            applied_once(&index, op, made.as_deref()).unwrap_or_else(|error| panic!("round {round}: {error}"));
        }
        verified = history.acknowledged.len();
        let capacity = common::catalogue_at(&client, &base).await["platformCapacity"].clone();
        let (balance, reserved) = (capacity["nanoBananaCredits"].as_u64(), capacity["reservedCredits"].as_u64());
        assert!(reserved <= balance, "round {round}: oversold: reserved {reserved:?} > balance {balance:?}");
        let (code, report) = cluster.check();
        assert_eq!(code, 0, "round {round}: creditd check --store:\n{report}");
        eprintln!(
            "round {round:>3}: failover {:>5} ms; {} operations, {} acknowledged, {} retried, {} refused, ledger {last_seq}",
            failovers[round].as_millis(),
            history.operations,
            history.acknowledged.len(),
            history.retried,
            history.refused,
        );
    }
    history.check_against_the_ledger(&client, &base).await;
    failovers.sort();
    eprintln!(
        "cluster: {rounds} failovers through HAProxy, kill -9 to the first 2xx purchase: median {} ms, worst {} ms; \
         {} operations, {} acknowledged, {} unknown retried, 0 violations",
        median(&failovers).as_millis(),
        failovers.last().copied().unwrap_or_default().as_millis(),
        history.operations,
        history.acknowledged.len(),
        history.retried,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_commits_nothing_after_it() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let base = cluster.proxy.base();
    let key = cluster.api_key().await;
    let client = common::client_with_key(&key);
    let mut states: Vec<ClientState> = (0..16).map(|i| ClientState::new(format!("paused-{i}"))).collect();
    let mut history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = states
        .drain(..)
        .enumerate()
        .map(|(i, state)| {
            tokio::spawn(run_client(client.clone(), base.clone(), state, stop.clone(), 0, i as u64, None))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let old = cluster.await_leader().await;
    common::pause(cluster.nodes[old].pid()).await;
    let paused = Instant::now();
    // Another node takes over once the lease has expired by the database's clock.
    let new = cluster.await_leader().await;
    assert_ne!(new, old, "a paused node cannot answer /readyz");
    first_purchase(&client, &base, &mut history, 0).await;
    eprintln!("takeover {} ms after the pause", paused.elapsed().as_millis());

    // The old leader wakes up believing it leads: everything it is asked to change must fail.
    common::signal(cluster.nodes[old].pid(), nix::sys::signal::Signal::SIGCONT);
    let direct = cluster.nodes[old].base();
    let mut sent = Vec::new();
    let woke = Instant::now();
    let mut answered = 0;
    while woke.elapsed() < Duration::from_secs(2) {
        let key = format!("to-the-old-leader-{}", sent.len());
        let answer = common::try_purchase(&client, &direct, "paused-0", "starter", &key).await;
        if let Ok(answer) = &answer {
            answered += 1;
            assert_ne!(answer.status, 200, "the old leader acknowledged a purchase after losing its lease: {answer:?}");
        }
        sent.push(key);
    }
    assert!(answered > 0, "the old leader answered none of {} purchases", sent.len());
    // And it steps down: a standby's /readyz.
    let deadline = Instant::now() + FAILOVER_GIVE_UP;
    let probe = reqwest::Client::new();
    loop {
        let status = probe.get(format!("{direct}/readyz")).send().await.map(|response| response.status().as_u16());
        if let Ok(503) = status {
            break;
        }
        assert!(Instant::now() < deadline, "the old leader never stepped down:\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_leader = common::try_purchase(&client, &direct, "paused-0", "starter", "after-stepping-down").await;
    let not_leader = not_leader.expect("the standby answers");
    assert_eq!(not_leader.status, 503, "{not_leader:?}");
    assert_eq!(not_leader.body["error"]["code"], "not_leader", "{not_leader:?}");
    let leader_url = cluster.nodes[new].base();
    assert!(not_leader.body["error"]["message"].as_str().is_some_and(|m| m.contains(&leader_url)), "{not_leader:?}");
    let log = std::fs::read_to_string(&cluster.nodes[old].log).unwrap_or_default();
    let stepped = log.lines().find(|line| line.contains("INFO") && line.contains("stepped down"));
    let stepped = stepped.unwrap_or_else(|| panic!("stepping down is logged at info:\n{log}"));
    assert!(stepped.contains("epoch="), "with the epoch it held: {stepped}");

    stop.store(true, Ordering::Relaxed);
    history.collect(tasks, &mut states).await;
    retry_unknown(&client, &base, &mut history, &mut states, 0).await;
    let index = history.check_against_the_ledger(&client, &base).await;
    for key in &sent {
        assert!(
            !index.keys.contains_key(&("purchase".to_owned(), key.clone())),
            "{key}, sent to the old leader after its lease, is in the ledger"
        );
    }
    let (code, report) = cluster.check();
    assert_eq!(code, 0, "creditd check --store:\n{report}");
    cluster.restart(old);
}

/// Goal: PostgreSQL itself fails over (SPEC §12): a primary with a
/// synchronous standby (`synchronous_standby_names`), the primary killed
/// under load, the standby promoted; the nodes reconnect through a
/// multi-host URL with `target_session_attrs=read-write`, a node takes the
/// lease on the promoted database, and every promise holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failing_over_to_its_synchronous_standby_loses_nothing() {
    let Some(primary) = Postgres::start() else { return };
    let standby = primary.standby("creditd_standby");
    {
        let client = creditd::store::postgres::connect(&primary.url()).await.expect("connects");
        for statement in ["ALTER SYSTEM SET synchronous_standby_names = 'creditd_standby'", "SELECT pg_reload_conf()"] {
            client.batch_execute(statement).await.expect("makes the standby synchronous");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = client
                .query_opt("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'creditd_standby'", &[])
                .await
                .expect("reads the replication state");
            if row.is_some_and(|row| row.get::<_, String>(0) == "sync") {
                break;
            }
            assert!(Instant::now() < deadline, "the standby never became synchronous");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let store = format!(
        "postgres://{}@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        postgres::USER,
        primary.port,
        standby.port
    );
    let Some(cluster) = Cluster::start_on(store, vec![primary, standby]).await else { return };
    let base = cluster.proxy.base();
    let key = cluster.api_key().await;
    let client = common::client_with_key(&key);
    let mut states: Vec<ClientState> = (0..CLIENTS).map(|i| ClientState::new(format!("pg-{i}"))).collect();
    let mut history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = states
        .drain(..)
        .enumerate()
        .map(|(i, state)| {
            tokio::spawn(run_client(client.clone(), base.clone(), state, stop.clone(), 0, i as u64, None))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    cluster.databases[0].kill();
    cluster.databases[1].promote();
    let failover = first_purchase(&client, &base, &mut history, 0).await;
    eprintln!("PostgreSQL failover: the first purchase {} ms after the primary died", failover.as_millis());
    stop.store(true, Ordering::Relaxed);
    history.collect(tasks, &mut states).await;
    retry_unknown(&client, &base, &mut history, &mut states, 0).await;
    history.check_against_the_ledger(&client, &base).await;
    assert!(history.acknowledged.len() > CLIENTS, "the load ran: {} acknowledged", history.acknowledged.len());
    let (code, report) = cluster.check();
    assert_eq!(code, 0, "creditd check --store on the promoted standby:\n{report}");
    eprintln!(
        "PostgreSQL failover: {} operations, {} acknowledged, {} unknown retried, 0 violations",
        history.operations,
        history.acknowledged.len(),
        history.retried
    );
}

/// The number after `name ` in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(client: &reqwest::Client, node: &Node) -> (u16, String) {
    let response = client.get(format!("{}/metrics", node.base())).send().await.expect("the node answers");
    (response.status().as_u16(), response.text().await.expect("a body"))
}

/// Goal: standbys look alive and quiet (SPEC §12). Each node's `/metrics`
/// answers 200: the leader's with `creditd_leader 1` and its lease's
/// epoch, a standby's with `creditd_leader 0` (and none of the leader's
/// capacity gauges). A standby answers a health check every 10 ms for a
/// second without one WARN line (the reproduction: every `not_leader` was a
/// WARN, ~864 000 lines a day with HAProxy's 100 ms checks). Leadership
/// changes are logged at info with the epoch, taking the lease and
/// stepping down both, and after a failover the new leader's epoch is the
/// next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_serve_their_metrics_and_log_leadership_not_health_checks() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let client = reqwest::Client::new();
    let leader = cluster.await_leader().await;
    let standbys: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != leader).collect();
    let (status, text) = scrape(&client, &cluster.nodes[leader]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(gauge(&text, "creditd_leader"), Some(1.0), "{text}");
    let epoch = gauge(&text, "creditd_leader_epoch").expect("the leader's epoch");
    assert!(gauge(&text, "creditd_provider_balance_credits").is_some(), "the leader's capacity gauges");
    for &i in &standbys {
        let (status, text) = scrape(&client, &cluster.nodes[i]).await;
        assert_eq!(status, 200, "a standby's /metrics: {text}");
        assert_eq!(gauge(&text, "creditd_leader"), Some(0.0), "{text}");
        assert!(gauge(&text, "creditd_provider_balance_credits").is_none(), "no capacity gauge on a standby: {text}");
    }

    let quiet = &cluster.nodes[standbys[0]];
    let lines_before = std::fs::read_to_string(&quiet.log).unwrap_or_default().lines().count();
    for _ in 0..100 {
        let ready = client.get(format!("{}/readyz", quiet.base())).send().await.expect("answers");
        assert_eq!(ready.status(), 503);
        let api = client.get(format!("{}/api/credits/status", quiet.base())).send().await.expect("answers");
        assert_eq!(api.status(), 503);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = std::fs::read_to_string(&quiet.log).unwrap_or_default();
    let new_lines: Vec<&str> = log.lines().skip(lines_before).filter(|line| line.contains("WARN")).collect();
    assert!(new_lines.is_empty(), "a standby's not_leader answers are not warnings: {new_lines:?}");

    cluster.nodes[leader].kill9();
    let next = cluster.await_leader().await;
    let (_, text) = scrape(&client, &cluster.nodes[next]).await;
    assert_eq!(gauge(&text, "creditd_leader"), Some(1.0), "{text}");
    let next_epoch = gauge(&text, "creditd_leader_epoch").expect("the new leader's epoch");
    assert!(next_epoch > epoch, "the next lease has the next epoch: {epoch} then {next_epoch}");
    let log = std::fs::read_to_string(&cluster.nodes[next].log).unwrap_or_default();
    let took = log.lines().find(|line| line.contains("INFO") && line.contains("took the leader lease"));
    let took = took.unwrap_or_else(|| panic!("taking the lease is logged at info:\n{log}"));
    assert!(took.contains(&format!("epoch={next_epoch}")), "with its epoch: {took}");
    let other = standbys.into_iter().find(|i| *i != next).expect("a standby is left");
    common::eventually("the other standby sees the new epoch", || {
        let (client, node) = (client.clone(), &cluster.nodes[other]);
        async move { gauge(&scrape(&client, node).await.1, "creditd_leader_epoch") == Some(next_epoch) }
    })
    .await;
    cluster.restart(leader);
    let (_, text) = scrape(&client, &cluster.nodes[next]).await;
    assert_eq!(gauge(&text, "creditd_leader"), Some(1.0), "a restarted node does not take over a live lease");
}
