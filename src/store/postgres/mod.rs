//! The PostgreSQL store of cluster mode (SPEC §12), selected by
//! `CREDITD_STORE=postgres://…`: typed tables created by versioned
//! migrations (`migrations/`, refinery), documented in docs/postgres.md.
//!
//! This first part makes a store (`creditd init --store`); the group commit,
//! the lease and recovery on PostgreSQL come with the store boundary of
//! issue 15.

pub mod check;
mod group;
pub mod lease;
pub mod ledger;
pub mod restore;
mod rows;
pub mod store;

pub use store::PgStore;

use tokio_postgres::NoTls;

use crate::clock::Clock;
use crate::domain::{Currency, Ratio};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Why a PostgreSQL store could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The message names the host and database, never the password.
    #[error("PostgreSQL at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("PostgreSQL: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("schema migration: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "the database at {0} already holds a creditd store: `creditd init` makes a store only once \
         (to start over, use a new database)"
    )]
    AlreadyInitialised(String),
    #[error("not a PostgreSQL URL (expected postgres://user@host:port/database): {0}")]
    NotAUrl(String),
    #[error(
        "the database at {0} holds no creditd store: make one with `creditd init --store` or `creditd restore --store`"
    )]
    NotAStore(String),
    #[error("the store holds a value creditd never writes: {0}")]
    Corrupt(String),
}

/// A stored quantity as a BIGINT: creditd bounds every quantity by 2^53 − 1.
pub(crate) fn big(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `host:port/database` of `url`, for messages: never the user's password.
pub fn target(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(host, port)| match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
                })
                .collect();
            format!("{}/{}", hosts.join(","), config.get_dbname().unwrap_or("(default)"))
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// Connects to `url`; the connection runs on a task of the current runtime.
///
/// # Errors
/// The URL does not parse, or the server cannot be reached or refuses.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, PostgresError> {
    let config: tokio_postgres::Config = url.parse().map_err(|_| PostgresError::NotAUrl(target(url)))?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|error| PostgresError::Unreachable { target: target(url), reason: error.to_string() })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Refuses a database that already holds a store, then brings the schema up
/// to the newest migration.
///
/// # Errors
/// [`PostgresError::AlreadyInitialised`], or a query or migration failed.
pub async fn migrate(client: &mut tokio_postgres::Client, url: &str) -> Result<(), PostgresError> {
    let exists = client.query_one("SELECT to_regclass('public.meta') IS NOT NULL", &[]).await?.get::<_, bool>(0);
    if exists {
        let rows: i64 = client.query_one("SELECT count(*) FROM meta", &[]).await?.get(0);
        if rows > 0 {
            return Err(PostgresError::AlreadyInitialised(target(url)));
        }
    }
    embedded::migrations::runner().run_async(client).await?;
    Ok(())
}

/// Makes a creditd store in the database at `url` (`creditd init --store`):
/// runs the migrations, then records the ratio and currency, an empty
/// inventory and a lease nobody holds, in one transaction. A database that
/// already holds a store is refused and left unchanged.
///
/// # Errors
/// [`PostgresError::AlreadyInitialised`], or the database cannot be reached or written.
pub async fn init(url: &str, ratio: Ratio, currency: Currency, clock: &dyn Clock) -> Result<(), PostgresError> {
    let mut client = connect(url).await?;
    let exists = client.query_one("SELECT to_regclass('public.meta') IS NOT NULL", &[]).await?.get::<_, bool>(0);
    if exists {
        let rows: i64 = client.query_one("SELECT count(*) FROM meta", &[]).await?.get(0);
        if rows > 0 {
            return Err(PostgresError::AlreadyInitialised(target(url)));
        }
    }
    embedded::migrations::runner().run_async(&mut client).await?;
    let created_ms = i64::try_from(clock.now_ms()).unwrap_or(i64::MAX);
    let ratio = i64::try_from(ratio.get()).unwrap_or(i64::MAX);
    let currency = currency.to_string();
    let transaction = client.transaction().await?;
    let inserted = transaction
        .execute(
            "INSERT INTO meta (ratio, currency, created_at) \
             VALUES ($1, $2, to_timestamp($3::BIGINT / 1000.0)) ON CONFLICT (id) DO NOTHING",
            &[&ratio, &currency, &created_ms],
        )
        .await?;
    if inserted == 0 {
        return Err(PostgresError::AlreadyInitialised(target(url)));
    }
    transaction
        .execute(
            "INSERT INTO inventory (provider_balance, reserved, wallets_total, holds_total, next_seq, \
             purchases_enabled, revenue_minor_units, consumed_total) VALUES (0, 0, 0, 0, 1, TRUE, 0, 0)",
            &[],
        )
        .await?;
    transaction.execute("INSERT INTO lease (epoch, expires_at) VALUES (0, to_timestamp(0))", &[]).await?;
    transaction.commit().await?;
    Ok(())
}
