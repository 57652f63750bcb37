//! The `creditd` command line (SPEC §11): `demo`, `init`, `serve`, `backup`,
//! `restore`, `check`, and the tools `loadtest` and `fake-provider`.
//! Parsing and process exit codes only; everything else is in the library.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

/// mimalloc instead of the C library's allocator: every request allocates
/// and frees small objects on one thread that another thread made (actor
/// messages, replies, records), which glibc serves through locked arenas
/// (BENCHMARKS.md, issue 25).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use rand::distributions::{Alphanumeric, DistString};

use creditd::clock::SystemClock;
use creditd::config::{Config, Secret};
use creditd::operate::{self, OperationError, Place};
use creditd::provider::fake::FakeProvider;
use creditd::provider::NanoBananaClient;
use creditd::{shutdown_signal, Application};

/// `println!` for the long-running commands (`serve`, `demo`, `fake-provider`):
/// a closed or full standard output must not stop a server (with the panic
/// policy, `println!`'s panic on a write error would abort it), so the
/// error is ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit code for missing or invalid configuration (SPEC §11).
const EXIT_CONFIGURATION: u8 = 2;

#[derive(Parser)]
#[command(name = "creditd", version, about = "Guards a platform's inventory of prepaid provider credits")]
struct Cli {
    /// Optional TOML configuration file; environment variables override it.
    #[arg(long, global = true, env = "CREDITD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A fresh data directory, a simulated NanoBanana, and the server: try it with curl.
    Demo {
        /// Credits the simulated NanoBanana starts with.
        #[arg(long, default_value_t = 938)]
        provider_credits: u64,
    },
    /// Create a new, empty store (once, like `initdb`): records the ratio and the currency.
    Init {
        /// Data directory, new or empty (default: CREDITD_DATA_DIR, then ./data).
        #[arg(long, conflicts_with = "store")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL database for cluster mode, postgres://user@host:port/database (default: CREDITD_STORE).
        #[arg(long)]
        store: Option<String>,
    },
    /// Production, on a store `init` made: needs NANOBANANA_BASE_URL, NANOBANANA_API_KEY and CREDITD_ADMIN_TOKEN.
    Serve,
    /// Simulated buyers against a running creditd: throughput, latency, errors, then a consistency check.
    Loadtest {
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Concurrent clients (keep-alive connections).
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// How long to run, in seconds (unless --operations is given).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Stop after this many operations instead of after --seconds.
        #[arg(long)]
        operations: Option<u64>,
        /// Weights of the operations: catalogue, purchase, hold (hold + capture), spend.
        #[arg(long, default_value = "purchase=100")]
        mix: creditd::loadtest::Mix,
        /// Size of the user population.
        #[arg(long, default_value_t = 100_000)]
        users: u64,
        /// Draw users by Zipf with this exponent instead of uniformly.
        #[arg(long)]
        zipf: Option<f64>,
        /// Take users in turn (1, 2, 3, ...) instead of drawing them: gives every user a wallet.
        #[arg(long)]
        sequential: bool,
        /// The package purchases and holds buy.
        #[arg(long, default_value = "starter")]
        package: String,
        /// Admin token, to verify the wallets add up (default: CREDITD_ADMIN_TOKEN).
        #[arg(long)]
        admin_token: Option<String>,
        /// API key with the storefront and enhancement scopes (default: CREDITD_API_KEY, then the admin token).
        #[arg(long, env = "CREDITD_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Names this run's idempotency keys, and its users unless --user-prefix is given (default: random).
        #[arg(long)]
        run_id: Option<String>,
        /// Users are named <prefix>-<n> (default: load-<run id>): reuse a prefix to buy for an earlier run's users.
        #[arg(long)]
        user_prefix: Option<String>,
        /// Pace all clients together at this many operations per second (latency counts from when each was due).
        #[arg(long)]
        rate: Option<f64>,
        /// No progress bar (for logs).
        #[arg(long)]
        quiet: bool,
    },
    /// The simulated NanoBanana alone, for `serve` in load tests and restart measurements (never production).
    FakeProvider {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18090")]
        listen: String,
        /// Credits it starts with.
        #[arg(long, default_value_t = 1_000_000_000)]
        credits: u64,
    },
    /// An online, consistent backup of a running server (admin token from CREDITD_ADMIN_TOKEN).
    Backup {
        /// The file to write (written as FILE.partial, renamed once complete and verified).
        #[arg(long)]
        to: PathBuf,
        /// Only the entries after this sequence number: an incremental backup.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Base URL of the server (default: http:// + CREDITD_LISTEN).
        #[arg(long)]
        url: Option<String>,
    },
    /// Rebuild a new store from backups: a full one, then incremental ones, in order.
    Restore {
        /// Backup files, full first.
        #[arg(long = "from", required = true, num_args = 1..)]
        from: Vec<PathBuf>,
        /// New or empty data directory (default: CREDITD_DATA_DIR, then ./data).
        #[arg(long, conflicts_with = "store")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL database without a store, postgres://user@host:port/database (default: CREDITD_STORE).
        #[arg(long)]
        store: Option<String>,
    },
    /// Verify a stopped server's data directory (or a PostgreSQL store) against its ledger.
    Check {
        /// Data directory (default: CREDITD_DATA_DIR, then ./data).
        #[arg(long, conflicts_with = "store")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL store, postgres://user@host:port/database (default: CREDITD_STORE).
        #[arg(long)]
        store: Option<String>,
    },
}

fn main() -> ExitCode {
    creditd::abort_on_panic();
    let cli = Cli::parse();
    creditd::telemetry::init();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("creditd: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    let outcome = match cli.command {
        Command::Serve => serve(&config),
        Command::Init { data_dir, store } => {
            let place = Place::of(&config, data_dir, store);
            return report("init", operate::init(&config, &place, &SystemClock).map(|made| say!("{made}"))).into();
        }
        Command::Demo { provider_credits } => demo(config, provider_credits),
        Command::FakeProvider { listen, credits } => fake_provider(&config, &listen, credits),
        Command::Check { data_dir, store } => {
            let place = Place::of(&config, data_dir, store);
            return report("check", operate::check(&place)).pipe_check();
        }
        Command::Backup { to, after, url } => {
            let url = url.unwrap_or_else(|| format!("http://{}", config.listen));
            if config.backup_key.is_none() {
                eprintln!("creditd backup: warning: CREDITD_BACKUP_KEY is not set: the backup will not be authenticated, and whoever can edit it can plant an API key in the store it is restored into");
            }
            let made = operate::backup(&config, &to, after, url.trim_end_matches('/'));
            return report("backup", made.map(|summary| say!("{summary}"))).into();
        }
        Command::Restore { from, data_dir, store } => {
            let place = Place::of(&config, data_dir, store);
            if config.backup_key.is_none() {
                eprintln!("creditd restore: warning: CREDITD_BACKUP_KEY is not set: the backups are not authenticated, only checked for damage; restore only files you trust");
            }
            let restored = operate::restore(&from, &place, &SystemClock, config.backup_key.as_ref()).map(|restored| {
                say!("{}", restored.summary);
                restored.check
            });
            return report("restore", restored).pipe_check();
        }
        Command::Loadtest {
            url,
            clients,
            seconds,
            operations,
            mix,
            users,
            zipf,
            sequential,
            package,
            admin_token,
            api_key,
            run_id,
            user_prefix,
            rate,
            quiet,
        } => {
            let run_id = run_id.unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::thread_rng(), 6));
            let options = creditd::loadtest::LoadOptions {
                url: url.trim_end_matches('/').to_owned(),
                clients: clients.max(1),
                duration: operations.is_none().then(|| std::time::Duration::from_secs(seconds)),
                operations,
                mix,
                users: users.max(1),
                zipf,
                sequential,
                admin_token: admin_token.or_else(|| config.admin_token.as_ref().map(|token| token.expose().to_owned())),
                api_key: None,
                package,
                user_prefix: user_prefix.unwrap_or_else(|| format!("load-{run_id}")),
                rate: rate.filter(|rate| *rate > 0.0),
                run_id,
                progress: !quiet,
            };
            let options =
                creditd::loadtest::LoadOptions { api_key: api_key.or_else(|| options.admin_token.clone()), ..options };
            return loadtest(options);
        }
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("creditd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What an operation's outcome means for the process: exit 0, 2 for
/// configuration (SPEC §11), 1 otherwise.
struct Reported<T>(Result<T, ExitCode>);

fn report<T>(command: &str, outcome: Result<T, OperationError>) -> Reported<T> {
    Reported(outcome.map_err(|error| {
        eprintln!("creditd {command}: {error}");
        match error {
            OperationError::Configuration(_) => ExitCode::from(EXIT_CONFIGURATION),
            OperationError::Failed(_) => ExitCode::FAILURE,
        }
    }))
}

impl From<Reported<()>> for ExitCode {
    fn from(reported: Reported<()>) -> Self {
        reported.0.err().unwrap_or(ExitCode::SUCCESS)
    }
}

impl Reported<creditd::check::CheckReport> {
    /// Prints a check's report: exit 0 when it passed, 1 on a violation.
    fn pipe_check(self) -> ExitCode {
        match self.0 {
            Ok(report) => {
                print!("{report}");
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(code) => code,
        }
    }
}

fn fake_provider(config: &Config, listen: &str, credits: u64) -> anyhow::Result<ExitCode> {
    let Some(key) = config.provider_api_key.as_ref() else {
        eprintln!("creditd fake-provider: missing configuration: NANOBANANA_API_KEY (the key it accepts)");
        return Ok(ExitCode::from(EXIT_CONFIGURATION));
    };
    let provider = FakeProvider::start_on(listen, credits, key.expose()).context("simulated NanoBanana")?;
    say!("simulated NanoBanana at {} with {credits} credits; stop it with Ctrl-C or SIGTERM", provider.base_url());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("signal runtime")?;
    runtime
        .block_on(async {
            shutdown_signal()?.await;
            Ok::<_, std::io::Error>(())
        })
        .context("signal handlers")?;
    drop(provider);
    Ok(ExitCode::SUCCESS)
}

fn serve(config: &Config) -> anyhow::Result<ExitCode> {
    let missing = config.missing_for_serve();
    let (Some(base_url), Some(key), Some(admin_token)) =
        (config.provider_base_url.clone(), config.provider_api_key.clone(), config.admin_token.clone())
    else {
        eprintln!(
            "creditd serve: missing configuration: {} (set them in the environment or the --config file)",
            missing.join(", ")
        );
        return Ok(ExitCode::from(EXIT_CONFIGURATION));
    };
    if let Some(weak) = config.weak_admin_token() {
        eprintln!("creditd serve: {weak}");
        return Ok(ExitCode::from(EXIT_CONFIGURATION));
    }
    let client = NanoBananaClient::new(&base_url, key, config.provider_timeout).context("provider client")?;
    match &config.store_url {
        // Cluster mode (SPEC §12): never a fallback to a sled directory.
        Some(url) => run_cluster(config, url.expose(), &admin_token, client),
        None => run(config, admin_token, client, None),
    }
}

fn demo(mut config: Config, provider_credits: u64) -> anyhow::Result<ExitCode> {
    let data_dir = tempfile::Builder::new().prefix("creditd-demo-").tempdir().context("demo data directory")?;
    config.data_dir = data_dir.path().join("data");
    // The demo's store is new by construction: `init` is the demo's own first step.
    creditd::engine::init(&config.data_dir, &creditd::engine::Settings::from_config(&config), &SystemClock)
        .context("demo store")?;
    let provider_key = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let provider = FakeProvider::start(provider_credits, &provider_key).context("simulated NanoBanana")?;
    let admin_token = config
        .admin_token
        .clone()
        .unwrap_or_else(|| Secret::new(Alphanumeric.sample_string(&mut rand::thread_rng(), 32)));
    let client = NanoBananaClient::new(&provider.base_url(), Secret::new(provider_key), config.provider_timeout)
        .context("provider client")?;
    let banner = DemoBanner {
        admin_token: admin_token.clone(),
        provider_url: provider.base_url(),
        data_dir: config.data_dir.clone(),
    };
    let code = run(&config, admin_token, client, Some(banner));
    drop(provider);
    drop(data_dir);
    code
}

struct DemoBanner {
    admin_token: Secret,
    provider_url: String,
    data_dir: PathBuf,
}

impl DemoBanner {
    fn print(&self, base: &str, key: &str) {
        let token = self.admin_token.expose();
        say!(
            "\ncreditd demo\n\
             \n  storefront API   {base}/api/credits/purchase\
             \n  status           {base}/api/credits/status\
             \n  health           {base}/healthz  {base}/readyz\
             \n  API key          {key}   (scopes storefront, enhancement)\
             \n  admin token      {token}\
             \n  NanoBanana (simulated)  {provider}\
             \n  data directory   {data} (deleted on exit)\
             \n\nTry:\
             \n  curl -s {base}/api/credits/purchase\
             \n  curl -s -X POST {base}/api/credits/purchase -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' -d '{{\"userId\":\"alice\",\"packageId\":\"pro\"}}'\
             \n  curl -s -H 'Authorization: Bearer {key}' {base}/api/users/alice/credits\
             \n  curl -s -X POST {base}/api/credits/spend -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-spend-1' -d '{{\"userId\":\"alice\",\"credits\":5}}'\
             \n  curl -s -H 'Authorization: Bearer {token}' {base}/api/admin/alerts\
             \n  curl -s -H 'Authorization: Bearer {token}' {base}/api/admin/credits\
             \n  curl -s -X POST {provider}/demo/balance -H 'Content-Type: application/json' -d '{{\"balance\":5000}}'   # demo only: refill the simulated NanoBanana\
             \n  curl -s -X POST -H 'Authorization: Bearer {token}' {base}/api/admin/credits/sync                      # \"Sync Real Credits\"\
             \n\nCtrl-C stops the demo.\n",
            provider = self.provider_url,
            data = self.data_dir.display(),
        );
    }
}

fn run(
    config: &Config,
    admin_token: Secret,
    client: NanoBananaClient,
    banner: Option<DemoBanner>,
) -> anyhow::Result<ExitCode> {
    let address = config.listen_address()?;
    let listener = TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    let system = actix_rt::System::new();
    system.block_on(async move {
        let app = match Application::build(config, &admin_token, client, listener, Arc::new(SystemClock)) {
            Ok(app) => app,
            Err(error) if error.is_configuration() => {
                eprintln!("creditd: cannot start: {error}");
                return Ok(ExitCode::from(EXIT_CONFIGURATION));
            }
            Err(error) => return Err(error.into()),
        };
        let base = format!("http://{}", app.address());
        // Tests and scripts read this line to find the port the OS chose.
        say!("creditd listening on {base}");
        if let Some(banner) = banner {
            // SPEC §9.1: the demo makes a storefront + enhancement key and prints it.
            let name = creditd::domain::KeyName::parse("demo storefront").context("key name")?;
            let scopes =
                creditd::domain::Scopes::new([creditd::domain::Scope::Storefront, creditd::domain::Scope::Enhancement])
                    .context("key scopes")?;
            let (_, key) = app.engine().create_api_key(name, scopes).await.context("the demo's API key")?;
            banner.print(&base, &key);
        }
        app.run_until(shutdown_signal()?).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn loadtest(options: creditd::loadtest::LoadOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("creditd loadtest: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(creditd::loadtest::run(options)) {
        Ok(report) => {
            print!("{}", report.text);
            match report.verified {
                Ok(verified) => {
                    println!("verified: {verified}");
                    ExitCode::SUCCESS
                }
                Err(violation) => {
                    println!("VIOLATION: {violation}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("creditd loadtest: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `serve` with `CREDITD_STORE=postgres://…`: a cluster node (SPEC §12),
/// standby until it takes the lease.
fn run_cluster(config: &Config, url: &str, admin_token: &Secret, client: NanoBananaClient) -> anyhow::Result<ExitCode> {
    let address = config.listen_address()?;
    let listener = TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    let system = actix_rt::System::new();
    system.block_on(async move {
        // Tests and scripts read this line to find the port the OS chose.
        say!("creditd listening on http://{}", listener.local_addr().context("listener")?);
        say!(
            "cluster node on PostgreSQL at {}: a standby until it holds the lease (SPEC §12)",
            creditd::store::postgres::target(url)
        );
        let shutdown = shutdown_signal()?;
        match creditd::cluster::run(url, config, admin_token, client, listener, Arc::new(SystemClock), shutdown).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(error) if error.is_configuration() => {
                eprintln!("creditd: cannot start: {error}");
                Ok(ExitCode::from(EXIT_CONFIGURATION))
            }
            Err(error) => Err(error.into()),
        }
    })
}
