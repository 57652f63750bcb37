//! creditd guards a platform's inventory of prepaid provider credits: it
//! decides which purchases can be honoured under heavy concurrency, credits
//! wallets, keeps every acknowledged change durable, and never oversells.
//!
//! # Layout
//!
//! - [`access`]: API keys, their hashes and the ring of live keys (SPEC §9.1).
//! - [`domain`]: quantities, money, identifiers, packages, capacity rules. No IO.
//! - [`store`]: sled storage, the record codec, and the group-commit loop.
//! - [`actors`]: the inventory, wallet and sync actors and their messages.
//! - [`cluster`]: cluster mode on PostgreSQL (SPEC §12): the leader lease, standby and takeover.
//! - [`engine`]: recovery at start-up and the facade the HTTP layer calls.
//! - [`http`]: routes, JSON shapes, and the one error-to-answer mapping.
//! - [`provider`]: the NanoBanana client and a fake NanoBanana server.
//! - [`replay`]: the records the ledger alone describes, for `check` and `restore`.
//! - [`check`]: the offline `creditd check`.
//! - [`backup`]: the backup format, `creditd backup` and `creditd restore`.
//! - [`loadtest`]: `creditd loadtest`, simulated buyers against a running server.
//! - [`config`], [`clock`], [`telemetry`]: settings, time, logging.
//!
//! [`Application`] puts them together; `main.rs` only parses the command line.

pub mod access;
pub mod actors;
pub mod backup;
pub mod check;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod decide;
pub mod domain;
pub mod engine;
pub mod http;
pub mod loadtest;
pub mod operate;
pub mod provider;
pub mod replay;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, App};

use clock::Clock;
use config::{Config, Secret};
use engine::{Engine, EngineThreads, Settings, StartError};
use provider::NanoBananaClient;
use store::Store;

/// An idle keep-alive connection is closed after this long (SPEC §9.2).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the metrics recorder drains its histograms.
const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How long SIGTERM waits for in-flight requests before closing them.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// The HTTP server of `app` on `listener`: actix-web's `HttpServer::listen`,
/// built by hand so that every connection is wrapped in
/// [`http::wire::JsonErrors`] (the errors actix-http writes itself carry the
/// JSON error body too, SPEC §9).
pub(crate) fn serve<F, A, B>(
    listener: TcpListener,
    request_timeout: std::time::Duration,
    workers: usize,
    connections_per_worker: usize,
    app: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn() -> App<A> + Send + Clone + 'static,
    A: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
    let address = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    builder
        .disable_signals()
        .workers(workers)
        .max_concurrent_connections(connections_per_worker)
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .listen("creditd", listener, move || {
            let shutdown = shutdown.clone();
            let factory = app().into_factory().map_err(|error: actix_web::Error| error.error_response());
            let service = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(KEEP_ALIVE)
                // Slow or idle headers are cut like slow bodies (SPEC §9.2).
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(address)
                .finish(map_config(factory, move |()| {
                    // Only URL generation reads it, and creditd generates none.
                    actix_web::dev::AppConfig::default()
                }));
            fn_service(|io: actix_rt::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    http::wire::JsonErrors::new(io),
                    actix_http::Protocol::Http1,
                    peer,
                ))
            })
            .and_then(service)
        })
        .map(actix_server::ServerBuilder::run)
}

/// A running creditd: the engine, its sync, and the HTTP server.
pub struct Application {
    server: actix_web::dev::Server,
    address: SocketAddr,
    engine: Engine,
    threads: EngineThreads,
}

impl Application {
    /// Recovers the data directory, starts the engine and the sync, and
    /// serves on `listener`. Must run inside an actix system.
    ///
    /// # Errors
    /// The data directory cannot be opened or is inconsistent, or the server
    /// cannot listen.
    pub fn build(
        config: &Config,
        admin_token: &Secret,
        provider: NanoBananaClient,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Self::build_with_faults(config, admin_token, provider, listener, clock, None)
    }

    /// As [`Application::build`], with `faults` injected into the store
    /// (tests only: storage failures, and panics to test the panic policy).
    ///
    /// # Errors
    /// As [`Application::build`].
    pub fn build_with_faults(
        config: &Config,
        admin_token: &Secret,
        provider: NanoBananaClient,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
        faults: Option<Arc<dyn store::StorageFaults>>,
    ) -> Result<Self, StartError> {
        let mut store = store::SledStore::open_with_cache(&config.data_dir, config.store_cache_bytes)?;
        if let Some(faults) = faults {
            store = store.with_faults(faults);
        }
        // One node on its own directory is the only node: it leads (SPEC §12's gauge).
        telemetry::leading(true, None);
        Self::build_on(Store::Sled(store), config, admin_token, provider, listener, clock)
    }

    /// Recovers `store` (the sled directory, or PostgreSQL for a node that
    /// just took the lease), starts the engine and the sync, and serves on
    /// `listener`. Must run inside an actix system.
    ///
    /// # Errors
    /// As [`Application::build`].
    pub fn build_on(
        store: Store,
        config: &Config,
        admin_token: &Secret,
        provider: NanoBananaClient,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let settings = Settings::from_config(config);
        let recovered = engine::recover(&store, &settings)?;
        let (engine, threads) =
            Engine::start(recovered, settings, store, clock, Some((provider, config.sync_interval)))?;
        let address = listener.local_addr().map_err(store::StoreError::from)?;
        let state = web::Data::new(http::AppState {
            engine: engine.clone(),
            admin_key_hash: access::hash_key(admin_token.expose()),
            metrics_key_hash: config.metrics_token.as_ref().map(|token| access::hash_key(token.expose())),
            admin_key_id: domain::KeyId::parse(access::ADMIN_TOKEN_ID)
                .map_err(|error| StartError::Invariant(error.to_string()))?,
            hold_ttl_default_secs: config.hold_ttl_default_secs,
            body_timeout: config.body_timeout,
            rate_limit_per_key: config.rate_limit_per_key,
            admin_bucket: access::TokenBucket::default(),
            auth_failures: access::FailedAuthentications::default(),
            hold_ttl_max_secs: config.hold_ttl_max_secs,
            metrics: telemetry::metrics(),
            openapi: http::openapi::document(&config.packages.iter().map(|p| p.id.to_string()).collect::<Vec<_>>()),
        });
        // Once per process: a cluster node builds an application at every takeover.
        static UPKEEP: std::sync::Once = std::sync::Once::new();
        UPKEEP.call_once(|| {
            let upkeep = telemetry::metrics();
            actix_rt::spawn(async move {
                let mut every = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
                loop {
                    every.tick().await;
                    upkeep.run_upkeep();
                }
            });
        });
        let workers = config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        // actix bounds connections per worker; `max_connections` is for the whole server.
        let connections_per_worker = config.max_connections.div_ceil(workers.max(1)).max(1);
        let server = serve(listener, config.body_timeout, workers, connections_per_worker, move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(http::metrics::record_latency))
                .configure(http::configure)
        })
        .map_err(store::StoreError::from)?;
        Ok(Self { server, address, engine, threads })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests,
    /// stops the engine and flushes.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = actix_rt::spawn(self.server);
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        handle.stop(true).await;
        let served = server.await.map_err(std::io::Error::other)?;
        let threads = self.threads;
        tokio::task::spawn_blocking(move || threads.stop()).await.map_err(std::io::Error::other)?;
        tracing::info!("stopped");
        served
    }
}

/// The panic policy (ARCHITECTURE.md, "Panics"): a panic is a bug, and a
/// process with a dead actor or commit loop would answer `/healthz` 200 and
/// 503 to every purchase forever. So any panic, on any thread, prints its
/// message and aborts the process (exit by SIGABRT): the supervisor restarts
/// it and start-up recovery runs. The hook does this in every profile (the
/// release profile keeps unwinding so that the test harness shares its build).
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("creditd: a panic is a bug; aborting so that the supervisor restarts creditd and recovery runs");
        std::process::abort();
    }));
}

/// Resolves on SIGTERM or SIGINT.
///
/// # Errors
/// The signal handlers could not be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
