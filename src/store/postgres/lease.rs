//! The leader lease of cluster mode (SPEC §12), on the `lease` row, timed by
//! the database's clock (`clock_timestamp()`), never by a node's.
//!
//! - [`try_acquire`]: a node takes the lease only once it has expired, with
//!   the next epoch; it must then load the state before it answers.
//! - [`renew`]: the holder extends it every `lease_renew_ms`; `None` means
//!   it was lost (expired and taken, or expired): the node becomes a standby.
//! - [`fence`]: the first statement of every group's transaction. It holds
//!   the row `FOR SHARE` until the transaction ends, so a takeover waits for
//!   a group in flight, and a group of an old epoch fails: a paused or cut
//!   off leader can never commit after another node took over.
//! - [`leader`]: who holds an unexpired lease, for the standbys' `not_leader`.
//!
//! The sessions that take and renew leases should set `lock_timeout` and
//! `idle_in_transaction_session_timeout` ([`bound_waits`]): a paused node
//! keeps its row locks and open transaction, and a takeover must not wait
//! for it forever.

use tokio_postgres::{Client, GenericClient};

/// A lease held: its epoch and when it ends by the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub epoch: i64,
    pub expires_at_ms: i64,
}

/// A group's transaction found another epoch current: nothing may commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fenced: this node's epoch {ours} is no longer the lease's ({message}); it is no longer the leader")]
pub struct Fenced {
    pub ours: i64,
    /// The database's words, naming the current epoch.
    pub message: String,
}

/// The first statement of every group's transaction (migration V2's
/// `creditd_fence`): aborts the transaction with SQLSTATE [`FENCED`] unless
/// the lease is at the epoch given, and holds the lease row `FOR SHARE`
/// until the transaction ends.
pub const FENCE: &str = "SELECT creditd_fence($1)";

/// The SQLSTATE `creditd_fence` raises.
pub const FENCED: &str = "CRFEN";

fn millis(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Bounds how long this session waits for a lock or stays idle inside a
/// transaction, so that a paused node cannot stall a takeover.
///
/// # Errors
/// The settings are refused.
pub async fn bound_waits(client: &Client, wait: std::time::Duration) -> Result<(), tokio_postgres::Error> {
    let ms = millis(wait);
    client
        .batch_execute(&format!(
            "SET lock_timeout = {ms}; SET idle_in_transaction_session_timeout = {}",
            ms.saturating_mul(2)
        ))
        .await
}

/// Takes the lease for `node` (reachable at `advertise_url`) for `ttl`, if it
/// has expired; answers the new lease, or `None` while another holds it.
///
/// # Errors
/// The database cannot be reached or refuses.
pub async fn try_acquire(
    client: &impl GenericClient,
    node: &str,
    advertise_url: &str,
    ttl: std::time::Duration,
) -> Result<Option<Lease>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "UPDATE lease SET epoch = epoch + 1, holder = $1, advertise_url = $2, \
             expires_at = clock_timestamp() + make_interval(secs => $3::BIGINT / 1000.0) \
             WHERE expires_at <= clock_timestamp() \
             RETURNING epoch, (extract(epoch FROM expires_at) * 1000)::BIGINT",
            &[&node, &advertise_url, &millis(ttl)],
        )
        .await?;
    Ok(row.map(|row| Lease { epoch: row.get(0), expires_at_ms: row.get(1) }))
}

/// Extends `node`'s lease of `epoch` by `ttl` from now, if it still holds
/// it unexpired; `None` when it is lost.
///
/// # Errors
/// The database cannot be reached or refuses.
pub async fn renew(
    client: &impl GenericClient,
    node: &str,
    epoch: i64,
    ttl: std::time::Duration,
) -> Result<Option<Lease>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "UPDATE lease SET expires_at = clock_timestamp() + make_interval(secs => $3::BIGINT / 1000.0) \
             WHERE epoch = $2 AND holder = $1 AND expires_at > clock_timestamp() \
             RETURNING epoch, (extract(epoch FROM expires_at) * 1000)::BIGINT",
            &[&node, &epoch, &millis(ttl)],
        )
        .await?;
    Ok(row.map(|row| Lease { epoch: row.get(0), expires_at_ms: row.get(1) }))
}

/// Runs [`FENCE`] for `epoch` in `transaction`: the lease must still be at
/// `epoch`; the transaction is aborted when it is not.
///
/// # Errors
/// [`Fenced`] (as the outer `Ok(Err)`) for another epoch; the inner error when
/// the database fails.
pub async fn fence(transaction: &impl GenericClient, epoch: i64) -> Result<Result<(), Fenced>, tokio_postgres::Error> {
    match transaction.execute(FENCE, &[&epoch]).await {
        Ok(_) => Ok(Ok(())),
        Err(error) => match error.as_db_error() {
            Some(db) if db.code().code() == FENCED => Ok(Err(Fenced { ours: epoch, message: db.message().to_owned() })),
            _ => Err(error),
        },
    }
}

/// The holder of an unexpired lease and the URL it advertised, if any.
///
/// # Errors
/// The database cannot be reached or refuses.
pub async fn leader(client: &impl GenericClient) -> Result<Option<Leader>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT epoch, holder, advertise_url FROM lease WHERE expires_at > clock_timestamp() AND holder IS NOT NULL",
            &[],
        )
        .await?;
    Ok(row.map(|row| Leader { epoch: row.get(0), holder: row.get(1), advertise_url: row.get(2) }))
}

/// The node that holds the lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub epoch: i64,
    pub holder: String,
    pub advertise_url: Option<String>,
}

/// Ends `node`'s lease of `epoch` now, if it still holds it (a leader that
/// stops or steps down), so that a standby takes over at once.
///
/// # Errors
/// The database cannot be reached or refuses.
pub async fn release(client: &impl GenericClient, node: &str, epoch: i64) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE lease SET expires_at = clock_timestamp() WHERE epoch = $2 AND holder = $1 \
             AND expires_at > clock_timestamp()",
            &[&node, &epoch],
        )
        .await
        .map(|_| ())
}
