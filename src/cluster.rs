//! Cluster mode (SPEC §12): two or more nodes on one PostgreSQL store, one
//! of them the leader.
//!
//! A node runs [`run`]: a loop of two phases on the same listening socket.
//!
//! 1. **Standby**: a small server answers `/readyz` 503 and every route 503
//!    `not_leader` (naming the leader's `CREDITD_ADVERTISE_URL`), while the
//!    node tries every `lease_renew_ms` to take the lease, which succeeds
//!    only once it has expired by the database's clock (`lease::try_acquire`).
//! 2. **Leader**: with the lease's new epoch, the node opens the store
//!    ([`PgStore`], fenced by that epoch), loads the whole state as a start
//!    from disk does (`engine::recover`), and serves the full API; a task
//!    renews the lease every `lease_renew_ms`. The node steps down to
//!    standby when a renewal says the lease is gone, when no renewal has
//!    succeeded for `lease_ttl_ms − lease_renew_ms` (it cannot know that it
//!    still holds it), or when its store failed (a fenced group, a lost
//!    database): it stops serving, drops every in-memory state, gives the
//!    lease back if it still holds it, and starts again at 1.
//!
//! Fencing makes a late step-down safe: every group commits in a
//! transaction that first checks the lease's epoch (`creditd_fence`), so a
//! node that was paused past its lease cannot commit anything.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::engine::StartError;
use crate::http::standby::{self, LeaderSeen, MetricsToken};
use crate::provider::NanoBananaClient;
use crate::store::postgres::{connect, lease, PgStore};
use crate::store::{Store, StoreError};
use crate::Application;

/// A standby's request heads must arrive within this (its answers are all short).
const STANDBY_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections a standby serves at once (health checks and scrapes).
const STANDBY_CONNECTIONS_MAX: usize = 1_000;

/// The lease settings of one node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The lease's `holder`: unique per process.
    pub id: String,
    /// What standbys name in `not_leader`.
    pub advertise_url: String,
    pub renew: Duration,
    pub ttl: Duration,
}

impl Node {
    /// The node described by `config`, serving at `listening` unless
    /// `CREDITD_ADVERTISE_URL` says otherwise.
    pub fn from_config(config: &Config, listening: std::net::SocketAddr) -> Self {
        let advertise_url = config.advertise_url.clone().unwrap_or_else(|| format!("http://{listening}"));
        let id = format!("{advertise_url} pid {}", std::process::id());
        Self { id, advertise_url, renew: config.lease_renew, ttl: config.lease_ttl }
    }
}

fn database(error: impl std::fmt::Display) -> StartError {
    StartError::Store(StoreError::Postgres(error.to_string()))
}

/// Runs a cluster node on the store at `url` until `shutdown` resolves.
/// Must run inside an actix system.
///
/// # Errors
/// The listener cannot be shared, or a leader's store is inconsistent or
/// configured otherwise (those a restart would not cure).
pub async fn run(
    url: &str,
    config: &Config,
    admin_token: &Secret,
    provider: NanoBananaClient,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + 'static,
) -> Result<(), StartError> {
    let node = Node::from_config(config, listener.local_addr().map_err(StoreError::from)?);
    let metrics_token =
        MetricsToken(config.metrics_token.as_ref().map(|token| crate::access::hash_key(token.expose())));
    crate::telemetry::leading(false, None);
    let (stop, stopping) = watch::channel(false);
    actix_rt::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    loop {
        let Some(lease) = stand_by(url, &node, &listener, &metrics_token, stopping.clone()).await? else {
            return Ok(());
        };
        tracing::info!(epoch = lease.epoch, node = %node.id, "took the leader lease: loading the state");
        let url_owned = url.to_owned();
        let ttl = node.ttl;
        let opened =
            tokio::task::spawn_blocking(move || PgStore::open(&url_owned, lease.epoch, ttl)).await.map_err(database)?;
        let store = match opened {
            Ok(store) => Store::Postgres(Arc::new(store)),
            Err(error) => {
                tracing::error!(%error, "cannot open the store as leader: standing by again");
                give_back(url, &node, lease.epoch).await;
                continue;
            }
        };
        let listener_copy = listener.try_clone().map_err(StoreError::from)?;
        let app = Application::build_on(store, config, admin_token, provider.clone(), listener_copy, clock.clone())?;
        tracing::info!(epoch = lease.epoch, node = %node.id, "leading: serving the API");
        crate::telemetry::leading(true, Some(lease.epoch));
        let health = app.engine().health_handle();
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
        let keeper = actix_rt::spawn(keep_lease(url.to_owned(), node.clone(), lease, health, lost_tx));
        let mut stopping_now = stopping.clone();
        // Serves until the lease is lost (or the store failed) or SIGTERM.
        app.run_until(async move {
            tokio::select! {
                _ = lost_rx => {}
                _ = stopping_now.wait_for(|stop| *stop) => {}
            }
        })
        .await
        .map_err(StoreError::from)?;
        keeper.abort();
        crate::telemetry::leading(false, Some(lease.epoch));
        give_back(url, &node, lease.epoch).await;
        if *stopping.borrow() {
            tracing::info!(epoch = lease.epoch, node = %node.id, "stopped leading: shutting down");
            return Ok(());
        }
        tracing::info!(epoch = lease.epoch, node = %node.id, "stepped down: standing by");
    }
}

/// Serves as a standby until this node takes the lease (`Some`) or is
/// asked to stop (`None`).
async fn stand_by(
    url: &str,
    node: &Node,
    listener: &TcpListener,
    metrics_token: &MetricsToken,
    mut stopping: watch::Receiver<bool>,
) -> Result<Option<lease::Lease>, StartError> {
    let leader = LeaderSeen::default();
    let (shown, token) = (leader.clone(), metrics_token.clone());
    let listener = listener.try_clone().map_err(StoreError::from)?;
    let server = crate::serve(listener, STANDBY_REQUEST_TIMEOUT, 1, STANDBY_CONNECTIONS_MAX, move || {
        App::new()
            .app_data(web::Data::new(shown.clone()))
            .app_data(web::Data::new(token.clone()))
            .configure(standby::configure)
    })
    .map_err(StoreError::from)?;
    let handle = server.handle();
    let serving = actix_rt::spawn(server);
    let mut client = None;
    let mut every = tokio::time::interval(node.renew);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let taken = loop {
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break None,
            _ = every.tick() => {}
        }
        if client.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            client = session(url, node.renew).await;
        }
        let Some(session) = &client else { continue };
        let attempt = tokio::time::timeout(node.renew.max(Duration::from_millis(100)), async {
            match lease::try_acquire(session, &node.id, &node.advertise_url, node.ttl).await? {
                Some(lease) => Ok(Some(lease)),
                None => {
                    let now = lease::leader(session).await?;
                    leader.set(now.map(|now| (now.epoch, now.advertise_url)));
                    Ok::<_, tokio_postgres::Error>(None)
                }
            }
        })
        .await;
        match attempt {
            Ok(Ok(Some(lease))) => break Some(lease),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "standby: the lease could not be read");
                client = None;
            }
            Err(_) => client = None,
        }
    };
    handle.stop(false).await;
    let _ = serving.await;
    Ok(taken)
}

/// Renews the lease every `renew`; tells `lost` when this node must step
/// down (see the module's doc).
async fn keep_lease(
    url: String,
    node: Node,
    held: lease::Lease,
    health: Arc<crate::engine::Health>,
    lost: tokio::sync::oneshot::Sender<()>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    // The lease was taken (or last renewed) by a request sent no earlier than this.
    let mut confirmed = Instant::now();
    let deadline = node.ttl.saturating_sub(node.renew);
    let mut every = tokio::time::interval(node.renew);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if health.storage_failed() {
            tracing::warn!("the store failed: stepping down");
            break;
        }
        if confirmed.elapsed() >= deadline {
            tracing::warn!(epoch = held.epoch, "the lease could not be renewed in time: stepping down");
            break;
        }
        if client.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            client = session(&url, node.renew).await;
        }
        let Some(session) = &client else { continue };
        let sent = Instant::now();
        match tokio::time::timeout(node.renew, lease::renew(session, &node.id, held.epoch, node.ttl)).await {
            Ok(Ok(Some(_))) => confirmed = sent,
            Ok(Ok(None)) => {
                tracing::warn!(epoch = held.epoch, "the lease was lost: stepping down");
                break;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "lease renewal failed");
                client = None;
            }
            Err(_) => client = None,
        }
    }
    let _ = lost.send(());
}

/// A session for the lease, whose lock waits end after `wait`: a takeover
/// must not hang behind a paused leader's open transaction (the database
/// ends that one after the lease's TTL).
async fn session(url: &str, wait: Duration) -> Option<tokio_postgres::Client> {
    let client = connect(url).await.map_err(|error| tracing::warn!(%error, "lease session")).ok()?;
    lease::bound_waits(&client, wait).await.map_err(|error| tracing::warn!(%error, "lease session")).ok()?;
    Some(client)
}

/// Ends this node's lease of `epoch` now, if it still holds it, so that
/// the next leader need not wait for it to expire.
async fn give_back(url: &str, node: &Node, epoch: i64) {
    let released = async {
        let client = connect(url).await.map_err(|error| error.to_string())?;
        lease::release(&client, &node.id, epoch).await.map_err(|error| error.to_string())
    };
    match tokio::time::timeout(node.renew, released).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the lease could not be given back; it expires on its own"),
        Err(_) => tracing::warn!("the lease could not be given back in time; it expires on its own"),
    }
}
