//! Shared by the black-box test binaries: start the real `creditd` binary on
//! a port the OS picks, against a fake NanoBanana on loopback and a sled
//! directory in a temp dir; talk to it over HTTP.
#![allow(dead_code)] // Each test binary uses its own part of these helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // Not every test binary sets behaviours.
pub use creditd::provider::fake::{Behaviour, FakeProvider};
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const PROVIDER_KEY: &str = "test-provider-key-abcdef";

/// How long a server may take to start listening or to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_creditd")
}

/// A fake provider holding `balance` credits.
pub fn provider(balance: u64) -> FakeProvider {
    FakeProvider::start(balance, PROVIDER_KEY).expect("the fake provider starts")
}

/// A running `creditd serve` child process.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    extra_env: Vec<(String, String)>,
    provider_url: String,
}

impl Server {
    /// Starts `creditd serve` on `data_dir` against `provider` and waits until it is ready.
    pub async fn start(provider: &FakeProvider, data_dir: &Path) -> Self {
        Self::start_with(provider, data_dir, &[]).await
    }

    pub async fn start_with(provider: &FakeProvider, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let extra_env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let server = Self::spawn(provider.base_url(), data_dir.to_owned(), extra_env);
        server.wait_ready().await;
        server
    }

    /// Starts `creditd serve` without waiting for readiness.
    pub fn start_unready(provider: &FakeProvider, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let extra_env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::spawn(provider.base_url(), data_dir.to_owned(), extra_env)
    }

    /// Starts `creditd serve` with `env`, its standard error written to `log`, and waits until it is ready.
    pub async fn start_logged(provider: &FakeProvider, data_dir: &Path, env: &[(&str, &str)], log: &Path) -> Self {
        let extra_env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let stderr = std::fs::File::create(log).expect("the log file");
        let server = Self::spawn_to(provider.base_url(), data_dir.to_owned(), extra_env, stderr.into());
        server.wait_ready().await;
        server
    }

    fn spawn(provider_url: String, data_dir: PathBuf, extra_env: Vec<(String, String)>) -> Self {
        let stderr = if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        Self::spawn_to(provider_url, data_dir, extra_env, stderr)
    }

    fn spawn_to(provider_url: String, data_dir: PathBuf, extra_env: Vec<(String, String)>, stderr: Stdio) -> Self {
        let env: Vec<(&str, &str)> = extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        init_if_new(&data_dir, &env);
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CREDITD_LISTEN", "127.0.0.1:0")
            .env("CREDITD_DATA_DIR", &data_dir)
            .env("CREDITD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("NANOBANANA_BASE_URL", &provider_url)
            .env("NANOBANANA_API_KEY", PROVIDER_KEY)
            .env("CREDITD_WORKERS", "2")
            .env("RUST_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()))
            .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().expect("creditd starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(base) = line.strip_prefix("creditd listening on ") {
                        let _ = sender.send(base.to_owned());
                        sent = true;
                    }
                }
            }
        });
        let base = receiver.recv_timeout(START_TIMEOUT).expect("creditd prints the address it listens on");
        Self { child, base, data_dir, extra_env, provider_url }
    }

    /// Polls `/readyz` until it answers 200 (the first sync has happened).
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "creditd did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("the process exits")
    }

    /// Starts a new process on the same data directory and provider.
    pub async fn restart(&mut self) {
        let next = Self::spawn(self.provider_url.clone(), self.data_dir.clone(), std::mem::take(&mut self.extra_env));
        next.wait_ready().await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = next;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pids fit an i32"));
    nix::sys::signal::kill(pid, signal).expect("the signal is delivered");
}

/// SIGSTOP to `pid`, then waits until every thread of it is stopped: `kill`
/// returns before the threads are, and on a loaded virtual machine a thread
/// may still answer a request a moment after the signal was sent (a cluster
/// test once saw a paused leader answer `/readyz` that way).
pub async fn pause(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let tasks = format!("/proc/{pid}/task");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stopped = std::fs::read_dir(&tasks).expect("the process's threads").all(|task| {
            let stat = std::fs::read_to_string(task.expect("a thread").path().join("stat")).unwrap_or_default();
            // The state follows the command name's closing parenthesis.
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            matches!(state, Some('T' | 't') | None)
        });
        if stopped {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "process {pid} did not stop after SIGSTOP");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// A client with keep-alive (idle connections kept 2 s, under the server's
/// 5 s) and a generous timeout, sending the admin token, which SPEC §9.1
/// lets do everything; `tests/api/access.rs` tests
/// the routes with no key and with keys of each scope.
pub fn client() -> reqwest::Client {
    client_with_key(ADMIN_TOKEN)
}

/// A client that sends `key` as its bearer key.
pub fn client_with_key(key: &str) -> reqwest::Client {
    client_with_key_from(key, None)
}

/// As [`client_with_key`], its connections made from local address
/// `address` when one is given (any of 127.0.0.0/8 reaches loopback): a
/// test's callers can come from distinct addresses.
pub fn client_with_key_from(key: &str, address: Option<std::net::IpAddr>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("a header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .local_address(address)
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        // Never reuse a connection the server may be closing: it drops idle
        // keep-alive connections after 5 s, and a request sent on one as it
        // closes fails with `IncompleteMessage` (the crash harness's final
        // pass met it after a long pause between two requests).
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client builds")
}

/// An HTTP answer: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

pub async fn get(client: &reqwest::Client, url: &str) -> Answer {
    answer(client.get(url).send().await.expect("the server answers")).await
}

pub async fn admin_get(client: &reqwest::Client, url: &str) -> Answer {
    answer(client.get(url).bearer_auth(ADMIN_TOKEN).send().await.expect("the server answers")).await
}

/// `POST /api/credits/purchase`; `Err` when no answer arrived (connection lost).
pub async fn try_purchase(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    package: &str,
    key: &str,
) -> Result<Answer, reqwest::Error> {
    let response = client
        .post(format!("{base}/api/credits/purchase"))
        .header("Idempotency-Key", key)
        .json(&json!({"userId": user, "packageId": package}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok(Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
}

pub async fn purchase(client: &reqwest::Client, base: &str, user: &str, package: &str, key: &str) -> Answer {
    try_purchase(client, base, user, package, key).await.expect("the server answers")
}

pub async fn catalogue(client: &reqwest::Client, server: &Server) -> Value {
    catalogue_at(client, &server.base).await
}

/// The catalogue of the server (or the proxy) at `base`.
pub async fn catalogue_at(client: &reqwest::Client, base: &str) -> Value {
    let answer = get(client, &format!("{base}/api/credits/purchase")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// Every ledger entry, page by page, through the admin API.
pub async fn ledger(client: &reqwest::Client, server: &Server) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = admin_get(client, &server.url(&format!("/api/admin/ledger?after={after}&limit=1000"))).await;
        assert_eq!(page.status, 200, "{page:?}");
        let batch = page.body["entries"].as_array().cloned().unwrap_or_default();
        entries.extend(batch);
        match page.body["nextAfter"].as_u64() {
            Some(next) => after = next,
            None => return entries,
        }
    }
}

/// Makes an API key through the admin API; returns (id, key).
pub async fn create_key(server: &Server, name: &str, scopes: &[&str]) -> (String, String) {
    let made =
        admin_post(&client(), &server.url("/api/admin/keys"), Some(json!({"name": name, "scopes": scopes}))).await;
    assert_eq!(made.status, 201, "{made:?}");
    let id = made.body["id"].as_str().expect("an id").to_owned();
    (id, made.body["key"].as_str().expect("the key").to_owned())
}

/// Runs `creditd check` on a data directory: (exit code, stdout + stderr).
pub fn run_check(data_dir: &Path) -> (i32, String) {
    let output = Command::new(binary())
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .env_clear()
        .output()
        .expect("creditd check runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Runs `creditd init --data-dir` with `env`: (exit code, stdout + stderr).
pub fn run_init(data_dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(binary())
        .arg("init")
        .arg("--data-dir")
        .arg(data_dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("creditd init runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Creates a store in `data_dir` unless it already holds one, as an
/// operator runs `creditd init` once before the first `serve` (with the
/// server's environment: the power-loss test's shim must see init's syncs).
pub fn init_if_new(data_dir: &Path, env: &[(&str, &str)]) {
    let fresh = std::fs::read_dir(data_dir).map_or(true, |mut entries| entries.next().is_none());
    if fresh {
        let (code, output) = run_init(data_dir, env);
        assert_eq!(code, 0, "creditd init: {output}");
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("creditd-test-").tempdir().expect("temp dir")
}

/// POSTs JSON (or nothing) with an optional idempotency key.
pub async fn post(client: &reqwest::Client, url: &str, key: Option<&str>, body: Option<Value>) -> Answer {
    let mut request = client.post(url);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.expect("the server answers")).await
}

pub async fn hold(client: &reqwest::Client, server: &Server, user: &str, package: &str, ttl_seconds: u64) -> Answer {
    let body = json!({"userId": user, "packageId": package, "ttlSeconds": ttl_seconds});
    post(client, &server.url("/api/credits/holds"), None, Some(body)).await
}

pub async fn capture(client: &reqwest::Client, server: &Server, hold_id: &str) -> Answer {
    post(client, &server.url(&format!("/api/credits/holds/{hold_id}/capture")), None, None).await
}

pub async fn release(client: &reqwest::Client, server: &Server, hold_id: &str) -> Answer {
    post(client, &server.url(&format!("/api/credits/holds/{hold_id}/release")), None, None).await
}

pub async fn spend(client: &reqwest::Client, server: &Server, user: &str, credits: i64, key: &str) -> Answer {
    let body = json!({"userId": user, "credits": credits, "reason": "enhance"});
    post(client, &server.url("/api/credits/spend"), Some(key), Some(body)).await
}

pub async fn refund(client: &reqwest::Client, server: &Server, spend_id: &str) -> Answer {
    post(client, &server.url(&format!("/api/credits/spend/{spend_id}/refund")), None, None).await
}

pub async fn complete(client: &reqwest::Client, server: &Server, spend_id: &str) -> Answer {
    post(client, &server.url(&format!("/api/credits/spend/{spend_id}/complete")), None, None).await
}

/// `POST /api/admin/grants` with the admin token: a promotional grant of
/// `credits` to `user`, expiring at `expires_at` (RFC 3339) if given.
pub async fn grant(server: &Server, user: &str, credits: i64, expires_at: Option<&str>, key: &str) -> Answer {
    let mut body = json!({"userId": user, "credits": credits, "reason": "a test's bonus"});
    if let Some(expires_at) = expires_at {
        body["expiresAt"] = json!(expires_at);
    }
    let request = reqwest::Client::new()
        .post(server.url("/api/admin/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", key);
    answer(request.json(&body).send().await.expect("the server answers")).await
}

/// `POST /api/admin/grants/{id}/void` with the admin token.
pub async fn void(server: &Server, grant_id: &str, reason: &str) -> Answer {
    let url = server.url(&format!("/api/admin/grants/{grant_id}/void"));
    admin_post(&reqwest::Client::new(), &url, Some(json!({"reason": reason}))).await
}

/// The platform capacity block of the catalogue.
pub async fn capacity(client: &reqwest::Client, server: &Server) -> Value {
    catalogue(client, server).await["platformCapacity"].clone()
}

/// Milliseconds since the epoch of an RFC 3339 timestamp from an answer.
pub fn epoch_ms(rfc3339: &Value) -> u64 {
    let text = rfc3339.as_str().expect("a timestamp string");
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).expect("after 1970")
}

pub fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis())
        .expect("fits")
}

/// Polls `condition` (an async check) until it holds, or panics after 30 s.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn admin_post(client: &reqwest::Client, url: &str, body: Option<Value>) -> Answer {
    let mut request = client.post(url).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.expect("the server answers")).await
}

/// `POST /api/admin/credits/sync`.
pub async fn sync_now(client: &reqwest::Client, server: &Server) -> Answer {
    admin_post(client, &server.url("/api/admin/credits/sync"), None).await
}

/// `GET /api/admin/alerts`: (open kinds, every event as (kind, state)).
pub async fn alerts(client: &reqwest::Client, server: &Server) -> (Vec<String>, Vec<(String, String)>) {
    let answer = admin_get(client, &server.url("/api/admin/alerts")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let open = answer.body["open"]
        .as_array()
        .expect("open")
        .iter()
        .map(|a| a["kind"].as_str().expect("kind").to_owned())
        .collect();
    let events = answer.body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| (a["kind"].as_str().expect("kind").to_owned(), a["state"].as_str().expect("state").to_owned()))
        .collect();
    (open, events)
}

/// The open alert of `kind`, if any.
pub async fn open_alert(client: &reqwest::Client, server: &Server, kind: &str) -> Option<Value> {
    let answer = admin_get(client, &server.url("/api/admin/alerts")).await;
    answer.body["open"].as_array().expect("open").iter().find(|a| a["kind"] == kind).cloned()
}

/// An external tool a test needs (chromium, prometheus, ...). `.ci/run`
/// installs them and sets `CREDITD_REQUIRE_TOOLS=1`, which turns a missing
/// tool into a failure; elsewhere the test says it is skipped.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CREDITD_REQUIRE_TOOLS").is_none(),
            "{name} is required (CREDITD_REQUIRE_TOOLS is set) but not installed"
        );
        eprintln!("SKIPPED: {name} is not installed (.ci/run installs it)");
    }
    found
}

/// A port the OS has just handed out and released, for tools that must be told one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("address").port()
}

/// A child process killed when dropped.
pub struct Guarded(pub std::process::Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SHA-256 of `text`, in lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}
