//! The one-shot operations of the command line (SPEC §11), on either store
//! of record: which store a command means, and `init`, `check`, `backup` and
//! `restore` on it. `main.rs` only parses the command line and prints what
//! these answer; the stores, the backup format and the checks know nothing
//! of the command line.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::backup::restore::restore_into;
use crate::backup::{verify_all, BackupError, Verified};
use crate::check::CheckReport;
use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::engine::Settings;
use crate::store::postgres::restore::PostgresSink;
use crate::store::postgres::target;
use crate::store::StoreError;

/// The store of record a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A sled data directory (one node).
    Directory(PathBuf),
    /// A PostgreSQL database (cluster mode, SPEC §12), by URL.
    Postgres(String),
}

impl Place {
    /// `--store` (else `CREDITD_STORE`) names PostgreSQL; otherwise the data
    /// directory of `--data-dir` (else `CREDITD_DATA_DIR`, else `./data`).
    /// The two flags exclude each other on the command line.
    pub fn of(config: &Config, data_dir: Option<PathBuf>, store: Option<String>) -> Self {
        let store = store.or_else(|| config.store_url.as_ref().map(|url| url.expose().to_owned()));
        match (store, data_dir) {
            (Some(url), None) => Place::Postgres(url),
            (_, data_dir) => Place::Directory(data_dir.unwrap_or_else(|| config.data_dir.clone())),
        }
    }

    /// Where it is, for people (a URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Place::Directory(directory) => directory.display().to_string(),
            Place::Postgres(url) => format!("PostgreSQL at {}", target(url)),
        }
    }
}

/// Why an operation did not complete. `Configuration` is what the command
/// line reports with exit code 2 (SPEC §11): a store that is not what the
/// command needs (missing, already made, not empty), a missing setting.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("{0}")]
    Configuration(String),
    #[error("{0}")]
    Failed(String),
}

/// A runtime for a one-shot command that talks to PostgreSQL or to a server.
fn one_shot_runtime() -> Result<tokio::runtime::Runtime, OperationError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| OperationError::Failed(format!("runtime: {error}")))
}

/// `creditd init`: makes a new, empty store; answers what it made.
///
/// # Errors
/// `Configuration` when the place already holds a store or cannot be made one.
pub fn init(config: &Config, place: &Place, clock: &dyn Clock) -> Result<String, OperationError> {
    let settings = Settings::from_config(config);
    let made = match place {
        Place::Directory(directory) => {
            crate::engine::init(directory, &settings, clock).map_err(|error| error.to_string())
        }
        Place::Postgres(url) => one_shot_runtime()?
            .block_on(crate::store::postgres::init(url, settings.ratio, settings.revenue_zero.currency(), clock))
            .map_err(|error| error.to_string()),
    };
    made.map_err(OperationError::Configuration)?;
    let next = match place {
        Place::Directory(_) => "; start it with `creditd serve`",
        Place::Postgres(_) => "",
    };
    Ok(format!(
        "created a creditd store in {} (ratio {}, currency {}){next}",
        place.describe(),
        config.ratio.get(),
        config.currency
    ))
}

/// `creditd check`: every stored record against the state rebuilt from the ledger.
///
/// # Errors
/// `Configuration` when the place cannot be read as a store.
pub fn check(place: &Place) -> Result<CheckReport, OperationError> {
    match place {
        Place::Directory(directory) => {
            crate::check::check(directory).map_err(|error| OperationError::Configuration(error.to_string()))
        }
        Place::Postgres(url) => one_shot_runtime()?
            .block_on(crate::store::postgres::check::check(url))
            .map_err(|error| OperationError::Configuration(error.to_string())),
    }
}

/// What a restore did: a summary for people, and the check of the new store.
#[derive(Debug)]
pub struct Restored {
    pub summary: String,
    pub check: CheckReport,
}

/// `creditd restore`: verifies every backup and that they chain, replays
/// them into a new store, then checks it.
///
/// # Errors
/// `Configuration` when the place already holds something; `Failed` when a
/// backup does not verify or break the ledger's rules.
pub fn restore(
    from: &[PathBuf],
    place: &Place,
    clock: &dyn Clock,
    key: Option<&Secret>,
) -> Result<Restored, OperationError> {
    // Before anything else: a file that is not signed under the key is not read.
    if let Some(key) = key {
        crate::backup::authenticate_all(from, key.expose().as_bytes())
            .map_err(|error| OperationError::Configuration(error.to_string()))?;
    }
    match place {
        Place::Directory(directory) => match crate::backup::restore::restore(from, directory, clock) {
            Ok(restored) => {
                let mut summary = String::new();
                for file in &restored.files {
                    let header = &file.header;
                    summary.push_str(&format!(
                        "{}: entries {}..={}\n",
                        file.path.display(),
                        header.after.saturating_add(1),
                        header.up_to
                    ));
                }
                summary.push_str(&format!(
                    "restored {} ledger entries (up to {}) and {} wallets into {}",
                    restored.entries,
                    restored.up_to,
                    restored.wallets,
                    directory.display()
                ));
                Ok(Restored { summary, check: restored.check })
            }
            Err(error @ BackupError::Store(StoreError::NotEmpty(_))) => {
                Err(OperationError::Configuration(error.to_string()))
            }
            Err(error) => Err(OperationError::Failed(error.to_string())),
        },
        Place::Postgres(url) => {
            let verified = verify_all(from).map_err(|error| OperationError::Failed(error.to_string()))?;
            let mut sink = PostgresSink::open(url).map_err(|error| OperationError::Configuration(error.to_string()))?;
            let replayed =
                restore_into(verified, &mut sink, clock).map_err(|error| OperationError::Failed(error.to_string()))?;
            drop(sink);
            let summary = format!(
                "restored {} ledger entries (up to {}) and {} wallets into {}",
                replayed.entries,
                replayed.up_to,
                replayed.wallets,
                place.describe()
            );
            Ok(Restored { summary, check: check(place)? })
        }
    }
}

/// `creditd backup`: streams a running server's backup after `after` into
/// `to` (written as `to.partial`, verified, then renamed); answers a summary.
///
/// # Errors
/// `Configuration` without an admin token; `Failed` when the server cannot
/// be reached or the backup does not verify.
pub fn backup(config: &Config, to: &Path, after: u64, url: &str) -> Result<String, OperationError> {
    let Some(token) = config.admin_token.as_ref() else {
        return Err(OperationError::Configuration(
            "missing configuration: CREDITD_ADMIN_TOKEN (the server's admin token)".into(),
        ));
    };
    let key = config.backup_key.as_ref().map(|key| key.expose().as_bytes());
    let verified = one_shot_runtime()?
        .block_on(fetch_backup(url, token, after, to, key))
        .map_err(|error| OperationError::Failed(format!("{error:#}")))?;
    let header = &verified.header;
    Ok(format!(
        "backup of ledger entries {}..={} ({} entries, ratio {}, {}) in {}\nsha256 {}",
        header.after.saturating_add(1),
        header.up_to,
        verified.entries,
        header.ratio,
        header.currency,
        verified.path.display(),
        verified.sha256
    ))
}

/// Streams the server's backup into `to`'s partial file, then verifies and renames it.
async fn fetch_backup(
    url: &str,
    token: &Secret,
    after: u64,
    to: &Path,
    key: Option<&[u8]>,
) -> anyhow::Result<Verified> {
    let mut response = reqwest::Client::new()
        .get(format!("{url}/api/admin/backup?after={after}"))
        .bearer_auth(token.expose())
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the server answered {status}: {body}");
    }
    let partial = crate::backup::partial_path(to);
    let mut file = std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    while let Some(chunk) = response.chunk().await.context("the backup stopped arriving")? {
        crate::backup::append(&mut file, &partial, &chunk)?;
    }
    Ok(crate::backup::finish(file, to, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_means_postgres_unless_a_data_directory_is_given() {
        let mut config = Config::load_with(None, |_| None).expect("defaults");
        assert_eq!(Place::of(&config, None, None), Place::Directory(config.data_dir.clone()));
        let dir = PathBuf::from("/tmp/x");
        assert_eq!(Place::of(&config, Some(dir.clone()), None), Place::Directory(dir.clone()));
        let url = "postgres://u@127.0.0.1:5/db".to_owned();
        assert_eq!(Place::of(&config, None, Some(url.clone())), Place::Postgres(url.clone()));
        config.store_url = Some(Secret::new(url.clone()));
        assert_eq!(Place::of(&config, None, None), Place::Postgres(url));
        assert_eq!(Place::of(&config, Some(dir.clone()), None), Place::Directory(dir), "--data-dir wins");
    }
}
