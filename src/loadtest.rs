//! `creditd loadtest`: simulated buyers against a running creditd (issue 8).
//!
//! N concurrent clients with keep-alive run a configurable mix of catalogue
//! reads, purchases, hold + capture and spends, for users drawn uniformly or
//! by Zipf from a population, for a duration or an operation count. It shows
//! a progress bar, then throughput, latency percentiles (HdrHistogram) and
//! errors by code per operation, and finally verifies through the API that
//! nothing was oversold and that the wallets add up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Zipf;
use serde_json::{json, Value};

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub clients: usize,
    pub duration: Option<Duration>,
    pub operations: Option<u64>,
    /// Weights of catalogue reads, purchases, hold + capture flows and spends.
    pub mix: Mix,
    pub users: u64,
    /// `None`: uniform; `Some(s)`: Zipf with exponent `s`.
    pub zipf: Option<f64>,
    /// Users in turn (1, 2, 3, ...) instead of drawn: to give every user of a
    /// population a wallet.
    pub sequential: bool,
    pub admin_token: Option<String>,
    /// The API key purchases, holds and spends are sent with (SPEC §9.1):
    /// `storefront` and `enhancement` scopes, or `admin`.
    pub api_key: Option<String>,
    pub package: String,
    /// Distinguishes this run's idempotency keys from earlier runs'.
    pub run_id: String,
    /// Users are named `<user_prefix>-<n>`: a later run with the same prefix
    /// buys for the same users.
    pub user_prefix: String,
    /// Operations per second for all clients together, paced; `None`: each
    /// client sends its next operation as soon as the last one is answered.
    pub rate: Option<f64>,
    pub progress: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub catalogue: u32,
    pub purchase: u32,
    pub hold_capture: u32,
    pub spend: u32,
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `purchase=70,catalogue=10,hold=10,spend=10`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mix = Self { catalogue: 0, purchase: 0, hold_capture: 0, spend: 0 };
        for part in text.split(',').filter(|part| !part.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let weight: u32 = weight.trim().parse().map_err(|error| format!("{part:?}: {error}"))?;
            match name.trim() {
                "catalogue" => mix.catalogue = weight,
                "purchase" => mix.purchase = weight,
                "hold" => mix.hold_capture = weight,
                "spend" => mix.spend = weight,
                other => return Err(format!("unknown operation {other:?} (catalogue, purchase, hold, spend)")),
            }
        }
        if mix.catalogue + mix.purchase + mix.hold_capture + mix.spend == 0 {
            return Err("the mix needs at least one operation with a weight".into());
        }
        Ok(mix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Catalogue,
    Purchase,
    Hold,
    Capture,
    Spend,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Catalogue => "catalogue",
            Self::Purchase => "purchase",
            Self::Hold => "hold",
            Self::Capture => "capture",
            Self::Spend => "spend",
        }
    }
}

/// Latencies and outcomes of one kind of operation.
struct Stats {
    latency_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            errors: BTreeMap::new(),
        }
    }
}

type Shared = Arc<Mutex<BTreeMap<Kind, Stats>>>;

/// What a finished run measured.
#[derive(Debug)]
pub struct LoadReport {
    pub text: String,
    pub verified: Result<String, String>,
    /// Successful purchases per second.
    pub purchases_per_second: f64,
    pub purchase_p99_ms: f64,
}

struct Client {
    http: reqwest::Client,
    options: Arc<LoadOptions>,
    stats: Shared,
    /// Users this client has credited; spends draw from them.
    funded: Vec<u64>,
    /// When the next operation was due to start, with `--rate`: its latency is
    /// counted from then, so a slow answer that delays the following
    /// operations shows in their latency too (no coordinated omission).
    due: Option<Instant>,
}

impl Client {
    fn user(&self, index: u64) -> String {
        format!("{}-{index}", self.options.user_prefix)
    }

    async fn call(&mut self, kind: Kind, request: reqwest::RequestBuilder) -> Option<Value> {
        let started = self.due.take().unwrap_or_else(Instant::now);
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status == 200 {
                    Ok(body)
                } else {
                    Err(format!("{status} {}", body["error"]["code"].as_str().unwrap_or("")))
                }
            }
            Err(error) => Err(if error.is_timeout() { "timeout".to_owned() } else { "connection".to_owned() }),
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = stats.entry(kind).or_insert_with(Stats::new);
        let _ = entry.latency_us.record(micros.min(60_000_000));
        match outcome {
            Ok(body) => Some(body),
            Err(code) => {
                *entry.errors.entry(code).or_default() += 1;
                None
            }
        }
    }

    async fn step(&mut self, kind: Kind, user: u64, sequence: u64, client_id: usize) {
        let options = Arc::clone(&self.options);
        let base = &options.url;
        let key = format!("{}-{client_id}-{sequence}", options.run_id);
        match kind {
            Kind::Catalogue => {
                self.call(kind, self.http.get(format!("{base}/api/credits/purchase"))).await;
            }
            Kind::Purchase => {
                let body = json!({"userId": self.user(user), "packageId": self.options.package});
                let request =
                    self.http.post(format!("{base}/api/credits/purchase")).header("Idempotency-Key", &key).json(&body);
                if self.call(kind, request).await.is_some() {
                    self.funded.push(user);
                }
            }
            Kind::Hold | Kind::Capture => {
                let body = json!({"userId": self.user(user), "packageId": self.options.package, "ttlSeconds": 600});
                let request =
                    self.http.post(format!("{base}/api/credits/holds")).header("Idempotency-Key", &key).json(&body);
                if let Some(hold) = self.call(Kind::Hold, request).await {
                    let id = hold["holdId"].as_str().unwrap_or("").to_owned();
                    let capture = self.http.post(format!("{base}/api/credits/holds/{id}/capture"));
                    if self.call(Kind::Capture, capture).await.is_some() {
                        self.funded.push(user);
                    }
                }
            }
            Kind::Spend => {
                let Some(&user) = self.funded.last() else {
                    return Box::pin(self.step(Kind::Purchase, user, sequence, client_id)).await;
                };
                let body = json!({"userId": self.user(user), "credits": 1, "reason": "loadtest"});
                let request =
                    self.http.post(format!("{base}/api/credits/spend")).header("Idempotency-Key", &key).json(&body);
                if self.call(kind, request).await.is_none() {
                    self.funded.pop();
                }
            }
        }
    }
}

/// Runs the load and verifies the result.
///
/// # Errors
/// The HTTP client cannot be built or the server cannot be reached at all.
pub async fn run(options: LoadOptions) -> Result<LoadReport, String> {
    let options = Arc::new(options);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &options.api_key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "the API key is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(options.clients.max(1))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| error.to_string())?;
    let weights = [options.mix.catalogue, options.mix.purchase, options.mix.hold_capture, options.mix.spend];
    let choice = WeightedIndex::new(weights).map_err(|error| error.to_string())?;
    let zipf = match options.zipf {
        Some(exponent) => Some(Zipf::new(options.users, exponent).map_err(|error| error.to_string())?),
        None => None,
    };
    let commits_before = commit_counters(&http, &options.url).await;
    let stats: Shared = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = options.duration.map(|duration| started + duration);
    let bar = progress_bar(&options);

    let tasks: Vec<_> = (0..options.clients)
        .map(|client_id| {
            let mut client = Client {
                http: http.clone(),
                options: Arc::clone(&options),
                stats: Arc::clone(&stats),
                funded: Vec::new(),
                due: None,
            };
            // With --rate, client i starts i/clients of a period late, so the
            // clients' operations interleave evenly.
            let period = options.rate.map(|rate| {
                #[allow(clippy::cast_precision_loss)] // client counts are small
                let clients = options.clients as f64;
                Duration::from_secs_f64(clients / rate.max(1e-3))
            });
            #[allow(clippy::cast_possible_truncation)] // client ids are small
            let mut next_due = period.map(|period| started + period.mul_f64(client_id as f64 / options.clients as f64));
            let (choice, done, bar) = (choice.clone(), Arc::clone(&done), bar.clone());
            let seed = u64::try_from(client_id).unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                for sequence in 0.. {
                    let count = done.fetch_add(1, Ordering::Relaxed);
                    let over_count = client.options.operations.is_some_and(|limit| count >= limit);
                    let over_time = deadline.is_some_and(|deadline| Instant::now() >= deadline);
                    if over_count || over_time {
                        break;
                    }
                    let kind = [Kind::Catalogue, Kind::Purchase, Kind::Hold, Kind::Spend][choice.sample(&mut rng)];
                    let user = match zipf {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        // Zipf samples are 1..=users.
                        Some(zipf) => zipf.sample(&mut rng) as u64,
                        None => rng.gen_range(1..=client.options.users),
                    };
                    if let (Some(period), Some(due)) = (period, next_due.as_mut()) {
                        tokio::time::sleep_until((*due).into()).await;
                        client.due = Some(*due);
                        *due += period;
                    }
                    client.step(kind, user, sequence, client_id).await;
                    if let Some(bar) = &bar {
                        bar.inc(1);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|error| error.to_string())?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let (mut text, purchases_per_second, purchase_p99_ms) = summary(&options, &stats, elapsed);
    if let (Some(before), Some(after)) = (commits_before, commit_counters(&http, &options.url).await) {
        let (changes, syncs) = (after.0 - before.0, after.1 - before.1);
        if syncs > 0.0 {
            let _ = writeln!(
                text,
                "group commit: {syncs:.0} syncs for {changes:.0} changes, {:.1} changes per sync on average",
                changes / syncs
            );
        }
    }
    let verified = verify(&http, &options).await;
    Ok(LoadReport { text, verified, purchases_per_second, purchase_p99_ms })
}

fn progress_bar(options: &LoadOptions) -> Option<indicatif::ProgressBar> {
    if !options.progress {
        return None;
    }
    let bar = match (options.operations, options.duration) {
        (Some(operations), _) => indicatif::ProgressBar::new(operations),
        (None, _) => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} operations ({per_sec}) {wide_bar}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

#[allow(clippy::cast_precision_loss)] // Counts and microseconds, reported with a few digits.
fn summary(options: &LoadOptions, stats: &BTreeMap<Kind, Stats>, elapsed: Duration) -> (String, f64, f64) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let mut text = String::new();
    let distribution = match options.zipf {
        _ if options.sequential => "in turn".to_owned(),
        Some(s) => format!("zipf s={s}"),
        None => "uniform".to_owned(),
    };
    let pace = options.rate.map_or_else(String::new, |rate| format!(", paced at {rate:.0} operations/s"));
    let _ = writeln!(
        text,
        "{} clients, {:.1} s, {} users ({distribution}), package {}{pace}",
        options.clients, seconds, options.users, options.package
    );
    let _ = writeln!(
        text,
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  errors",
        "operation", "ok", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let (mut purchases_per_second, mut purchase_p99_ms) = (0.0, 0.0);
    for (kind, stat) in stats {
        let total = stat.latency_us.len();
        let failed: u64 = stat.errors.values().sum();
        let ok = total.saturating_sub(failed);
        let quantile = |q: f64| stat.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let per_second = ok as f64 / seconds;
        if *kind == Kind::Purchase {
            purchases_per_second = per_second;
            purchase_p99_ms = quantile(0.99);
        }
        let errors = if stat.errors.is_empty() {
            "-".to_owned()
        } else {
            stat.errors.iter().map(|(code, count)| format!("{code}: {count}")).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            text,
            "{:<10} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {errors}",
            kind.name(),
            ok,
            per_second,
            quantile(0.5),
            quantile(0.9),
            quantile(0.99),
            quantile(0.999),
            stat.latency_us.max() as f64 / 1000.0
        );
    }
    (text, purchases_per_second, purchase_p99_ms)
}

/// The JSON body of `request`'s answer.
async fn json(request: reqwest::RequestBuilder) -> Result<Value, String> {
    request.send().await.map_err(|error| error.to_string())?.json().await.map_err(|error| error.to_string())
}

/// Nothing oversold, and `reserved == ratio × (Σ wallets + Σ open holds)`
/// with Σ wallets as the admin view reports it (needs the admin token).
async fn verify(http: &reqwest::Client, options: &LoadOptions) -> Result<String, String> {
    let catalogue = json(http.get(format!("{}/api/credits/purchase", options.url))).await?;
    let capacity = &catalogue["platformCapacity"];
    let balance = capacity["nanoBananaCredits"].as_u64().ok_or("no balance in the catalogue")?;
    let reserved = capacity["reservedCredits"].as_u64().ok_or("no reserved in the catalogue")?;
    if reserved > balance {
        return Err(format!("oversold: reserved {reserved} > provider balance {balance}"));
    }
    let Some(token) = &options.admin_token else {
        return Ok(format!(
            "not oversold (reserved {reserved} ≤ balance {balance}); pass --admin-token to check the wallets"
        ));
    };
    let admin = json(http.get(format!("{}/api/admin/credits", options.url)).bearer_auth(token)).await?;
    let wallets = admin["walletsUserCredits"].as_u64().ok_or("no walletsUserCredits (wrong token?)")?;
    let holds = admin["openHoldsUserCredits"].as_u64().ok_or("no openHoldsUserCredits")?;
    let ratio = admin["ratio"].as_u64().ok_or("no ratio")?;
    if reserved != ratio * (wallets + holds) {
        return Err(format!("reserved {reserved} ≠ {ratio} × ({wallets} wallets + {holds} in open holds)"));
    }
    Ok(format!("not oversold (reserved {reserved} ≤ balance {balance}); reserved = {ratio} × ({wallets} in wallets + {holds} in open holds)"))
}

/// `(Σ changes, number of syncs)` from the server's `creditd_commit_batch_size` histogram.
async fn commit_counters(http: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let text = http.get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse::<f64>().ok())
    };
    Some((value("creditd_commit_batch_size_sum")?, value("creditd_commit_batch_size_count")?))
}
