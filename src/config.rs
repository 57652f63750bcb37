//! Configuration (SPEC §11): defaults, then an optional TOML file, then the
//! environment. Secrets are [`Secret`]s, which never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Currency, Levels, Money, Package, PackageId, ProviderCredits, Ratio, UserCredits};
use crate::store::commit::CommitMode;

/// How long a user's wallet actor lives after its last request. Short on
/// purpose: a user who comes back later is one actor start and one store
/// read away, and each live actor costs about 1–1.5 KiB (60 s kept ~400 000
/// alive with a million users at full speed, 1 s ~17 000: BENCHMARKS.md).
const WALLET_IDLE_SECS_DEFAULT: u64 = 1;
/// SPEC §9.2: the longest hold a request may ask for, by default an hour
/// (a day let one key lock the platform's capacity for a day).
const HOLD_TTL_MAX_SECS_DEFAULT: u64 = 3_600;
/// SPEC §5: an open spend completes by itself after 10 minutes.
const SPEND_COMPLETE_AFTER_SECS_DEFAULT: u64 = 600;

/// A value that must never reach a log, an answer or an error message.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Only the place and the kind of mistake: the parser's own message may
    /// quote the value, and the value may be a secret.
    #[error(
        "configuration file {path}, line {line}, key {key}: {problem} (the value is not shown: it may be a secret)"
    )]
    Parse { path: PathBuf, line: usize, key: String, problem: &'static str },
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.to_string() }
}

/// One package as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageConfig {
    pub id: String,
    pub credits: u64,
    pub price_cents: u64,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// SPEC §13: the credits of a purchase expire this many days after it
    /// (1 to 3 650); left out: never. A setting stored by
    /// `PUT /api/admin/packages/{id}` wins over it, as for the other fields.
    #[serde(default)]
    pub expires_after_days: Option<u32>,
}

fn enabled_by_default() -> bool {
    true
}

/// SPEC §9.2: idempotency keys are remembered at least this long.
pub const IDEMPOTENCY_RETENTION_HOURS_MIN: u64 = 24;

/// The shortest admin token `serve` accepts (SPEC §9.2).
pub const ADMIN_TOKEN_BYTES_MIN: usize = 16;

/// The TOML file: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<Secret>,
    admin_token: Option<Secret>,
    metrics_token: Option<Secret>,
    nanobanana_base_url: Option<String>,
    nanobanana_api_key: Option<Secret>,
    sync_interval_secs: Option<u64>,
    alert_webhook_url: Option<String>,
    alert_webhook_secret: Option<Secret>,
    backup_key: Option<Secret>,
    ratio: Option<u64>,
    currency: Option<String>,
    packages: Option<Vec<PackageConfig>>,
    warning_level: Option<u64>,
    low_level: Option<u64>,
    critical_level: Option<u64>,
    sync_stale_secs: Option<u64>,
    alert_blocked_clear_secs: Option<u64>,
    spend_complete_after_secs: Option<u64>,
    wallet_idle_secs: Option<u64>,
    commit_mode: Option<String>,
    provider_timeout_ms: Option<u64>,
    workers: Option<usize>,
    hold_ttl_default_secs: Option<u64>,
    #[serde(alias = "max_hold_ttl_secs")]
    hold_ttl_max_secs: Option<u64>,
    provider_credit_cost_micros: Option<u64>,
    store_cache_mb: Option<u64>,
    verify_wallets_at_start: Option<bool>,
    max_open_holds_per_user: Option<u32>,
    max_open_holds_per_key: Option<u32>,
    rate_limit_per_key: Option<u32>,
    body_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    idempotency_retention_hours: Option<u64>,
    advertise_url: Option<String>,
    lease_renew_ms: Option<u64>,
    lease_ttl_ms: Option<u64>,
}

/// Everything creditd can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// `CREDITD_STORE`: a `postgres://…` URL for cluster mode (SPEC §12);
    /// `None`: the sled directory. A secret, since a URL may hold a password.
    pub store_url: Option<Secret>,
    pub admin_token: Option<Secret>,
    /// When set, `/metrics` needs `Authorization: Bearer <this>` (SPEC §9.1).
    pub metrics_token: Option<Secret>,
    pub provider_base_url: Option<String>,
    pub provider_api_key: Option<Secret>,
    pub sync_interval: Duration,
    pub alert_webhook_url: Option<String>,
    /// Signs every alert webhook POST (`Creditd-Signature`, HMAC-SHA256) when set.
    pub alert_webhook_secret: Option<Secret>,
    /// Signs backups and authenticates them on restore (SPEC §11); at least
    /// [`crate::backup::BACKUP_KEY_BYTES_MIN`] bytes.
    pub backup_key: Option<Secret>,
    pub ratio: Ratio,
    pub currency: Currency,
    pub packages: Vec<Package>,
    /// Alert levels on `available` (SPEC §7); under `warning` the platform is "limited".
    pub levels: Levels,
    /// A sync older than this raises `sync_stale`.
    pub sync_stale_after: Duration,
    /// `purchase_blocked` clears after this long without a capacity refusal (SPEC §7).
    pub alert_blocked_clear_after: Duration,
    /// An open spend completes by itself this long after it was made (SPEC §5).
    pub spend_complete_after: Duration,
    /// An unused wallet is dropped from the inventory's memory after this long.
    pub wallet_idle: Duration,
    pub commit_mode: CommitMode,
    pub provider_timeout: Duration,
    /// HTTP worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// A hold's TTL when the request names none (SPEC §5: 15 minutes).
    pub hold_ttl_default_secs: u64,
    /// The longest TTL a hold may ask for.
    pub hold_ttl_max_secs: u64,
    /// What one provider credit costs, in micro-units of the currency (SPEC §3: €0.001 = 1 000).
    pub provider_credit_cost_micros: u64,
    /// sled's page cache, in bytes.
    pub store_cache_bytes: u64,
    /// Sum every wallet on disk at start-up (O(users); `creditd check` always does).
    pub verify_wallets_at_start: bool,
    /// Open holds one user may have at once (SPEC §9.2); one more is 409 `too_many_holds`.
    pub max_open_holds_per_user: u32,
    /// Open holds one API key may have made at once (SPEC §9.2); one more is 409 `too_many_holds`.
    pub max_open_holds_per_key: u32,
    /// Requests per second per API key, a token bucket with one second of burst; 0 = off (SPEC §9.2).
    pub rate_limit_per_key: u32,
    /// A request body not received within this long is 408 `request_timeout` (SPEC §9.2).
    pub body_timeout: Duration,
    /// Open connections at most, over all workers (SPEC §9.2).
    pub max_connections: usize,
    /// Idempotency records are kept this long, then pruned (SPEC §9.2; at least 24 h).
    pub idempotency_retention: Duration,
    /// `CREDITD_ADVERTISE_URL`: where clients reach this node; standbys name
    /// the leader's in `not_leader` (SPEC §12).
    pub advertise_url: Option<String>,
    /// The leader renews its lease this often (SPEC §12: `lease_renew_ms`, 500).
    pub lease_renew: Duration,
    /// A lease not renewed for this long expires (SPEC §12: `lease_ttl_ms`, 2 000).
    pub lease_ttl: Duration,
}

/// The packages of SPEC §3.
pub fn default_packages() -> Vec<PackageConfig> {
    [("starter", 10, 999), ("creative", 50, 3999), ("pro", 100, 6999), ("studio", 500, 29999)]
        .into_iter()
        .map(|(id, credits, price_cents)| PackageConfig {
            id: id.into(),
            credits,
            price_cents,
            enabled: true,
            expires_after_days: None,
        })
        .collect()
}

impl Config {
    /// Defaults, then `file` (if any), then the process environment.
    ///
    /// # Errors
    /// An unreadable file or an invalid value, naming the setting.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, |name| std::env::var(name).ok())
    }

    /// As [`Config::load`], reading variables through `env` (tests pass a map).
    ///
    /// # Errors
    /// An unreadable file or an invalid value, naming the setting.
    pub fn load_with(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut raw = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str::<FileConfig>(&text).map_err(|error| parse_error(path, &text, &error))?
            }
            None => FileConfig::default(),
        };
        let number = |name: &'static str, value: String| value.trim().parse::<u64>().map_err(|e| invalid(name, e));
        if let Some(value) = env("CREDITD_LISTEN") {
            raw.listen = Some(value);
        }
        if let Some(value) = env("CREDITD_DATA_DIR") {
            raw.data_dir = Some(value.into());
        }
        if let Some(value) = env("CREDITD_STORE") {
            raw.store = Some(Secret(value));
        }
        if let Some(value) = env("CREDITD_ADMIN_TOKEN") {
            raw.admin_token = Some(Secret(value));
        }
        if let Some(value) = env("CREDITD_METRICS_TOKEN") {
            raw.metrics_token = Some(Secret(value));
        }
        if let Some(value) = env("NANOBANANA_BASE_URL") {
            raw.nanobanana_base_url = Some(value);
        }
        if let Some(value) = env("NANOBANANA_API_KEY") {
            raw.nanobanana_api_key = Some(Secret(value));
        }
        if let Some(value) = env("CREDITD_SYNC_INTERVAL_SECS") {
            raw.sync_interval_secs = Some(number("CREDITD_SYNC_INTERVAL_SECS", value)?);
        }
        if let Some(value) = env("CREDITD_ALERT_WEBHOOK_URL") {
            raw.alert_webhook_url = Some(value);
        }
        if let Some(value) = env("CREDITD_ALERT_WEBHOOK_SECRET") {
            raw.alert_webhook_secret = Some(Secret(value));
        }
        if let Some(value) = env("CREDITD_BACKUP_KEY") {
            raw.backup_key = Some(Secret(value));
        }
        if let Some(value) = env("CREDITD_COMMIT_MODE") {
            raw.commit_mode = Some(value);
        }
        if let Some(value) = env("CREDITD_MAX_OPEN_HOLDS_PER_USER") {
            let holds = number("CREDITD_MAX_OPEN_HOLDS_PER_USER", value)?;
            raw.max_open_holds_per_user =
                Some(u32::try_from(holds).map_err(|e| invalid("CREDITD_MAX_OPEN_HOLDS_PER_USER", e))?);
        }
        if let Some(value) = env("CREDITD_MAX_OPEN_HOLDS_PER_KEY") {
            let holds = number("CREDITD_MAX_OPEN_HOLDS_PER_KEY", value)?;
            raw.max_open_holds_per_key =
                Some(u32::try_from(holds).map_err(|e| invalid("CREDITD_MAX_OPEN_HOLDS_PER_KEY", e))?);
        }
        if let Some(value) = env("CREDITD_RATE_LIMIT_PER_KEY") {
            let rate = number("CREDITD_RATE_LIMIT_PER_KEY", value)?;
            raw.rate_limit_per_key = Some(u32::try_from(rate).map_err(|e| invalid("CREDITD_RATE_LIMIT_PER_KEY", e))?);
        }
        if let Some(value) = env("CREDITD_BODY_TIMEOUT_MS") {
            raw.body_timeout_ms = Some(number("CREDITD_BODY_TIMEOUT_MS", value)?);
        }
        if let Some(value) = env("CREDITD_MAX_CONNECTIONS") {
            let connections = number("CREDITD_MAX_CONNECTIONS", value)?;
            raw.max_connections =
                Some(usize::try_from(connections).map_err(|e| invalid("CREDITD_MAX_CONNECTIONS", e))?);
        }
        if let Some(value) = env("CREDITD_IDEMPOTENCY_RETENTION_HOURS") {
            raw.idempotency_retention_hours = Some(number("CREDITD_IDEMPOTENCY_RETENTION_HOURS", value)?);
        }
        if let Some(value) = env("CREDITD_HOLD_TTL_MAX_SECS") {
            raw.hold_ttl_max_secs = Some(number("CREDITD_HOLD_TTL_MAX_SECS", value)?);
        }
        if let Some(value) = env("CREDITD_SPEND_COMPLETE_AFTER_SECS") {
            raw.spend_complete_after_secs = Some(number("CREDITD_SPEND_COMPLETE_AFTER_SECS", value)?);
        }
        if let Some(value) = env("CREDITD_SYNC_STALE_SECS") {
            raw.sync_stale_secs = Some(number("CREDITD_SYNC_STALE_SECS", value)?);
        }
        if let Some(value) = env("CREDITD_ALERT_BLOCKED_CLEAR_SECS") {
            raw.alert_blocked_clear_secs = Some(number("CREDITD_ALERT_BLOCKED_CLEAR_SECS", value)?);
        }
        if let Some(value) = env("CREDITD_PROVIDER_TIMEOUT_MS") {
            raw.provider_timeout_ms = Some(number("CREDITD_PROVIDER_TIMEOUT_MS", value)?);
        }
        if let Some(value) = env("CREDITD_STORE_CACHE_MB") {
            raw.store_cache_mb = Some(number("CREDITD_STORE_CACHE_MB", value)?);
        }
        if let Some(value) = env("CREDITD_VERIFY_WALLETS_AT_START") {
            raw.verify_wallets_at_start = Some(match value.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(invalid("CREDITD_VERIFY_WALLETS_AT_START", "expected true or false")),
            });
        }
        if let Some(value) = env("CREDITD_ADVERTISE_URL") {
            raw.advertise_url = Some(value);
        }
        if let Some(value) = env("CREDITD_LEASE_RENEW_MS") {
            raw.lease_renew_ms = Some(number("CREDITD_LEASE_RENEW_MS", value)?);
        }
        if let Some(value) = env("CREDITD_LEASE_TTL_MS") {
            raw.lease_ttl_ms = Some(number("CREDITD_LEASE_TTL_MS", value)?);
        }
        if let Some(value) = env("CREDITD_WORKERS") {
            raw.workers =
                Some(usize::try_from(number("CREDITD_WORKERS", value)?).map_err(|e| invalid("CREDITD_WORKERS", e))?);
        }
        Self::from_raw(raw)
    }

    fn from_raw(raw: FileConfig) -> Result<Self, ConfigError> {
        let levels = levels(&raw)?;
        let currency = Currency::parse(raw.currency.as_deref().unwrap_or("EUR")).map_err(|e| invalid("currency", e))?;
        let packages = raw
            .packages
            .unwrap_or_else(default_packages)
            .into_iter()
            .map(|package| build_package(&package, currency))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids: Vec<&PackageId> = packages.iter().map(|package| &package.id).collect();
        ids.sort();
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(invalid("packages", "package ids must be unique"));
        }
        let sync_interval_secs = raw.sync_interval_secs.unwrap_or(60);
        if sync_interval_secs == 0 {
            return Err(invalid("CREDITD_SYNC_INTERVAL_SECS", "must be at least 1"));
        }
        let hold_ttl_max_secs = raw.hold_ttl_max_secs.unwrap_or(HOLD_TTL_MAX_SECS_DEFAULT);
        let hold_ttl_default_secs = raw.hold_ttl_default_secs.unwrap_or(900);
        if hold_ttl_max_secs == 0 || hold_ttl_default_secs == 0 || hold_ttl_default_secs > hold_ttl_max_secs {
            return Err(invalid("hold_ttl_default_secs", "hold TTLs must satisfy 1 ≤ default ≤ max"));
        }
        let retention_hours = raw.idempotency_retention_hours.unwrap_or(IDEMPOTENCY_RETENTION_HOURS_MIN);
        if retention_hours < IDEMPOTENCY_RETENTION_HOURS_MIN {
            return Err(invalid("idempotency_retention_hours", "must be at least 24 (SPEC §9.2)"));
        }
        let max_open_holds_per_user = raw.max_open_holds_per_user.unwrap_or(5);
        if max_open_holds_per_user == 0 {
            return Err(invalid("max_open_holds_per_user", "must be at least 1"));
        }
        let backup_key = raw.backup_key.filter(|key| !key.0.is_empty());
        if backup_key.as_ref().is_some_and(|key| key.0.len() < crate::backup::BACKUP_KEY_BYTES_MIN) {
            return Err(invalid("CREDITD_BACKUP_KEY", "must be at least 32 bytes (for example: openssl rand -hex 32)"));
        }
        let max_open_holds_per_key = raw.max_open_holds_per_key.unwrap_or(10_000);
        if max_open_holds_per_key == 0 {
            return Err(invalid("max_open_holds_per_key", "must be at least 1"));
        }
        let body_timeout_ms = raw.body_timeout_ms.unwrap_or(5_000);
        if body_timeout_ms == 0 {
            return Err(invalid("body_timeout_ms", "must be at least 1"));
        }
        let max_connections = raw.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let lease_renew_ms = raw.lease_renew_ms.unwrap_or(500);
        let lease_ttl_ms = raw.lease_ttl_ms.unwrap_or(2_000);
        if lease_renew_ms == 0 || lease_ttl_ms < lease_renew_ms.saturating_mul(2) {
            return Err(invalid(
                "lease_ttl_ms",
                "leases need 1 ≤ lease_renew_ms and 2 × lease_renew_ms ≤ lease_ttl_ms",
            ));
        }
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        Ok(Self {
            advertise_url: non_empty(raw.advertise_url),
            lease_renew: Duration::from_millis(lease_renew_ms),
            lease_ttl: Duration::from_millis(lease_ttl_ms),
            listen: raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            store_url: raw.store.filter(|url| !url.0.trim().is_empty()),
            admin_token: raw.admin_token.filter(|token| !token.0.is_empty()),
            metrics_token: raw.metrics_token.filter(|token| !token.0.is_empty()),
            provider_base_url: non_empty(raw.nanobanana_base_url),
            provider_api_key: raw.nanobanana_api_key.filter(|key| !key.0.is_empty()),
            sync_interval: Duration::from_secs(sync_interval_secs),
            alert_webhook_url: non_empty(raw.alert_webhook_url),
            alert_webhook_secret: raw.alert_webhook_secret.filter(|secret| !secret.0.is_empty()),
            backup_key,
            ratio: Ratio::new(raw.ratio.unwrap_or(4)).map_err(|e| invalid("ratio", e))?,
            currency,
            packages,
            levels,
            sync_stale_after: Duration::from_secs(raw.sync_stale_secs.unwrap_or(300).max(1)),
            alert_blocked_clear_after: Duration::from_secs(raw.alert_blocked_clear_secs.unwrap_or(300).max(1)),
            spend_complete_after: Duration::from_secs(
                raw.spend_complete_after_secs.unwrap_or(SPEND_COMPLETE_AFTER_SECS_DEFAULT).max(1),
            ),
            wallet_idle: Duration::from_secs(raw.wallet_idle_secs.unwrap_or(WALLET_IDLE_SECS_DEFAULT).max(1)),
            commit_mode: raw
                .commit_mode
                .as_deref()
                .unwrap_or("group")
                .parse()
                .map_err(|e: String| invalid("CREDITD_COMMIT_MODE", e))?,
            provider_timeout: Duration::from_millis(raw.provider_timeout_ms.unwrap_or(5_000).max(1)),
            workers: raw.workers.filter(|&n| n > 0),
            hold_ttl_default_secs,
            hold_ttl_max_secs,
            provider_credit_cost_micros: raw.provider_credit_cost_micros.unwrap_or(1_000),
            store_cache_bytes: raw
                .store_cache_mb
                .map_or(crate::store::CACHE_BYTES_DEFAULT, |mb| mb.max(1).saturating_mul(1024 * 1024)),
            verify_wallets_at_start: raw.verify_wallets_at_start.unwrap_or(false),
            max_open_holds_per_user,
            max_open_holds_per_key,
            rate_limit_per_key: raw.rate_limit_per_key.unwrap_or(0),
            body_timeout: Duration::from_millis(body_timeout_ms),
            max_connections,
            idempotency_retention: Duration::from_secs(retention_hours.saturating_mul(3_600)),
        })
    }

    /// The address to listen on.
    ///
    /// # Errors
    /// Not an `address:port`.
    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| invalid("CREDITD_LISTEN", e))
    }

    /// What `serve` needs and does not have (SPEC §11), by variable name.
    /// Why `serve` refuses the configured admin token, if it does (SPEC
    /// §9.2): shorter than [`ADMIN_TOKEN_BYTES_MIN`] bytes. Never says the token.
    pub fn weak_admin_token(&self) -> Option<String> {
        let token = self.admin_token.as_ref()?;
        (token.expose().len() < ADMIN_TOKEN_BYTES_MIN).then(|| {
            format!(
                "CREDITD_ADMIN_TOKEN is {} bytes; it must be at least {ADMIN_TOKEN_BYTES_MIN} (it opens every admin \
                 route): make one with `openssl rand -hex 32` or `head -c 32 /dev/urandom | base64`",
                token.expose().len()
            )
        })
    }

    pub fn missing_for_serve(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.provider_base_url.is_none() {
            missing.push("NANOBANANA_BASE_URL");
        }
        if self.provider_api_key.is_none() {
            missing.push("NANOBANANA_API_KEY");
        }
        if self.admin_token.is_none() {
            missing.push("CREDITD_ADMIN_TOKEN");
        }
        missing
    }
}

/// Describes a TOML error by its line, its key and its kind, never by the
/// parser's message or the source line, which may hold a secret.
fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(text.len(), |span| span.start.min(text.len()));
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count().saturating_add(1);
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let bare_key = |candidate: &str| {
        let candidate = candidate.trim();
        let valid = !candidate.is_empty()
            && candidate.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        valid.then(|| candidate.to_owned())
    };
    let key = line_text.split_once('=').and_then(|(key, _)| bare_key(key));
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .and_then(|header| bare_key(header.trim_matches(|c| c == '[' || c == ']')));
    let key = match (table, key) {
        (Some(table), Some(key)) => format!("{table}.{key}"),
        (None, Some(key)) => key,
        (_, None) => "(none)".to_owned(),
    };
    let message = error.message();
    let problem = if message.starts_with("unknown field") {
        "unknown key"
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        "wrong type or value"
    } else if message.starts_with("missing field") {
        "a required key is missing"
    } else if message.starts_with("duplicate key") {
        "duplicate key"
    } else {
        "syntax error (an unterminated string, a bare value, a missing `=`)"
    };
    ConfigError::Parse { path: path.to_owned(), line, key, problem }
}

fn levels(raw: &FileConfig) -> Result<Levels, ConfigError> {
    let level = |name: &'static str, value: Option<u64>, default: u64| {
        ProviderCredits::new(value.unwrap_or(default)).map_err(|e| invalid(name, e))
    };
    let levels = Levels {
        warning: level("warning_level", raw.warning_level, 500)?,
        low: level("low_level", raw.low_level, 100)?,
        critical: level("critical_level", raw.critical_level, 40)?,
    };
    if !(levels.warning > levels.low && levels.low > levels.critical && !levels.critical.is_zero()) {
        return Err(invalid("warning_level", "levels must satisfy warning > low > critical > 0"));
    }
    Ok(levels)
}

fn build_package(config: &PackageConfig, currency: Currency) -> Result<Package, ConfigError> {
    let id = PackageId::parse(&config.id).map_err(|e| invalid("packages.id", e))?;
    let credits = UserCredits::positive(config.credits).map_err(|e| invalid("packages.credits", e))?;
    let price = Money::new(config.price_cents, currency).map_err(|e| invalid("packages.price_cents", e))?;
    let package = Package::new(id, credits, price, config.enabled).map_err(|e| invalid("packages", e))?;
    package.expiring_after(config.expires_after_days).map_err(|e| invalid("packages.expires_after_days", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::load_with(None, |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.ratio, Ratio::DEFAULT);
        assert_eq!(config.sync_interval, Duration::from_secs(60));
        assert_eq!(config.packages.len(), 4);
        assert_eq!(
            (config.hold_ttl_max_secs, config.max_open_holds_per_key, config.max_open_holds_per_user),
            (3_600, 10_000, 5)
        );
        assert_eq!(config.missing_for_serve(), ["NANOBANANA_BASE_URL", "NANOBANANA_API_KEY", "CREDITD_ADMIN_TOKEN"]);
    }

    #[test]
    fn the_environment_overrides_and_is_validated() {
        let config = load(&[("CREDITD_SYNC_INTERVAL_SECS", "5"), ("CREDITD_ADMIN_TOKEN", "t")]).expect("valid");
        assert_eq!(config.sync_interval, Duration::from_secs(5));
        assert!(matches!(load(&[("CREDITD_SYNC_INTERVAL_SECS", "x")]), Err(ConfigError::Invalid { .. })));
    }

    /// Goal: a mistake in the configuration file never prints a secret
    /// (SPEC §9.1), yet the message says where the mistake is. Method: each
    /// broken file holds the secret on the broken line; the error names the
    /// key and the line, and the secret appears nowhere in it.
    #[test]
    fn configuration_file_errors_name_the_key_and_line_but_never_the_value() {
        let secret = "hunter2-sk-live-0123";
        let cases = [
            (
                "unterminated string",
                format!("listen = \"127.0.0.1:8080\"\nadmin_token = \"{secret}\n"),
                2,
                "admin_token",
            ),
            (
                "wrong type",
                format!("listen = \"127.0.0.1:8080\"\n\nnanobanana_api_key = [\"{secret}\"]\n"),
                3,
                "nanobanana_api_key",
            ),
            ("typo in the key", format!("admin_tokn = \"{secret}\"\n"), 1, "admin_tokn"),
            ("bare value", format!("admin_token = {secret}\n"), 1, "admin_token"),
            ("number as a secret", "admin_token = 4242424242\n".to_owned(), 1, "admin_token"),
        ];
        for (name, text, line, key) in cases {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("creditd.toml");
            std::fs::write(&path, &text).expect("writes");
            let error = Config::load_with(Some(&path), |_| None).expect_err(name).to_string();
            assert!(!error.contains(secret) && !error.contains("4242424242"), "{name}: {error}");
            assert!(error.contains(&format!("line {line}")), "{name}: names the line: {error}");
            assert!(error.contains(key), "{name}: names the key: {error}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let config = load(&[("CREDITD_ADMIN_TOKEN", "hunter2"), ("NANOBANANA_API_KEY", "sk-live")]).expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("sk-live"), "{printed}");
    }

    /// SPEC §9.2: the hold limits come from the environment and the file,
    /// where `max_hold_ttl_secs` is another name of `hold_ttl_max_secs`, and
    /// a limit of 0 is refused.
    #[test]
    fn hold_limits_have_their_names_and_refuse_zero() {
        let config =
            load(&[("CREDITD_MAX_OPEN_HOLDS_PER_KEY", "7"), ("CREDITD_HOLD_TTL_MAX_SECS", "1200")]).expect("valid");
        assert_eq!((config.max_open_holds_per_key, config.hold_ttl_max_secs), (7, 1_200));
        let error = load(&[("CREDITD_MAX_OPEN_HOLDS_PER_KEY", "0")]).expect_err("zero");
        assert!(error.to_string().contains("max_open_holds_per_key"), "{error}");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("creditd.toml");
        std::fs::write(&file, "max_hold_ttl_secs = 1800\nmax_open_holds_per_key = 3\n").expect("writes");
        let config = Config::load_with(Some(&file), |_| None).expect("valid");
        assert_eq!((config.hold_ttl_max_secs, config.max_open_holds_per_key), (1_800, 3));
    }

    /// SPEC §13: a package in the file may set `expires_after_days` (1 to
    /// 3 650; left out: never); 0 or more is refused, naming the setting.
    #[test]
    fn a_configured_package_may_expire_its_credits_within_bounds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("creditd.toml");
        let package =
            |days: &str| format!("[[packages]]\nid = \"monthly\"\ncredits = 30\nprice_cents = 1500\n{days}\n");
        std::fs::write(&file, package("expires_after_days = 30")).expect("writes");
        let config = Config::load_with(Some(&file), |_| None).expect("valid");
        assert_eq!(config.packages[0].expires_after_days, Some(30));
        std::fs::write(&file, package("")).expect("writes");
        let config = Config::load_with(Some(&file), |_| None).expect("valid");
        assert_eq!(config.packages[0].expires_after_days, None, "never, when left out");
        for days in ["0", "3651"] {
            std::fs::write(&file, package(&format!("expires_after_days = {days}"))).expect("writes");
            let error = Config::load_with(Some(&file), |_| None).expect_err(days).to_string();
            assert!(error.contains("packages.expires_after_days"), "{days}: {error}");
        }
    }
}
