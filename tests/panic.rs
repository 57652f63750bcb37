//! The panic policy (ARCHITECTURE.md, "Panics"): no zombie.
//!
//! Goal: a panic in an actor or in the commit loop never leaves a process
//! that answers `/healthz` 200 and 503 to every purchase; the process ends
//! (SIGABRT), so that its supervisor restarts it and recovery runs.
//!
//! Method: this test binary has its own `main` (`harness = false`). Run
//! plainly, it is the parent: it starts itself again as a child with
//! `CREDITD_PANIC_CHILD` set. The child is a real creditd (the library's
//! `Application` with its HTTP server, a sled store made by `init`, a fake
//! NanoBanana), with `abort_on_panic` installed as `main` installs it, and
//! one fault armed once it is ready: a panic in the commit loop (in the
//! store's sync) or in the actors (a clock that panics when read). The
//! parent buys once, then waits for the child to end: it must die by
//! SIGABRT within the deadline, and its port must stop answering.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditd::clock::{Clock, SystemClock};
use creditd::config::{Config, Secret};
use creditd::engine::Settings;
use creditd::provider::fake::FakeProvider;
use creditd::provider::NanoBananaClient;
use creditd::store::StorageFaults;
use creditd::Application;

/// The child's admin token: an `admin` key, so its purchase reaches the commit loop.
const ADMIN_TOKEN: &str = "panic-test-admin-token";
const CHILD: &str = "CREDITD_PANIC_CHILD";
const PROVIDER_KEY: &str = "panic-test-provider-key";
/// How long the parent waits for the child to die after the fault fires.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn main() {
    match std::env::var(CHILD).as_deref() {
        Ok("commit") => child(Where::CommitLoop),
        Ok("actor") => child(Where::Actor),
        _ => {
            a_panic_ends_the_process(Where::CommitLoop);
            a_panic_ends_the_process(Where::Actor);
            println!("panic policy: a panic in the commit loop and in an actor each ended the process by SIGABRT");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Where {
    CommitLoop,
    Actor,
}

impl Where {
    fn name(self) -> &'static str {
        match self {
            Self::CommitLoop => "commit",
            Self::Actor => "actor",
        }
    }
}

/// Panics in the commit loop's sync once armed.
#[derive(Default)]
struct PanickingSync(AtomicBool);

impl StorageFaults for PanickingSync {
    fn before_sync(&self) -> std::io::Result<()> {
        assert!(!self.0.load(Ordering::SeqCst), "injected: a bug in the commit loop");
        Ok(())
    }
}

/// The wall clock, until armed; then every read panics (the inventory and
/// alert actors read it on their timers and on every decision).
#[derive(Default)]
struct PanickingClock(AtomicBool);

impl Clock for PanickingClock {
    fn now_ms(&self) -> u64 {
        assert!(!self.0.load(Ordering::SeqCst), "injected: a bug in an actor");
        SystemClock.now_ms()
    }
}

/// The child: a real creditd whose fault is armed once it is ready.
fn child(place: Where) {
    creditd::abort_on_panic();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::load_with(None, |_| None).expect("defaults");
    config.data_dir = dir.path().join("data");
    config.workers = Some(1);
    creditd::engine::init(&config.data_dir, &Settings::from_config(&config), &SystemClock).expect("init");
    let provider = FakeProvider::start(1_000_000, PROVIDER_KEY).expect("fake provider");
    let client =
        NanoBananaClient::new(&provider.base_url(), Secret::new(PROVIDER_KEY), Duration::from_secs(5)).expect("client");
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let sync_fault = Arc::new(PanickingSync::default());
    let clock = Arc::new(PanickingClock::default());
    let faults: Option<Arc<dyn StorageFaults>> = match place {
        Where::CommitLoop => Some(sync_fault.clone()),
        Where::Actor => None,
    };
    let system = actix_rt::System::new();
    let served = system.block_on(async move {
        let app =
            Application::build_with_faults(&config, &Secret::new(ADMIN_TOKEN), client, listener, clock.clone(), faults)
                .expect("builds");
        println!("listening http://{}", app.address());
        let engine = app.engine().clone();
        actix_rt::spawn(async move {
            while !engine.health().ready() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            match place {
                Where::CommitLoop => sync_fault.0.store(true, Ordering::SeqCst),
                Where::Actor => clock.0.store(true, Ordering::SeqCst),
            }
            println!("armed");
        });
        app.run_until(std::future::pending()).await
    });
    drop(provider);
    served.expect("serves");
}

/// The parent's check for one place.
fn a_panic_ends_the_process(place: Where) {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .env(CHILD, place.name())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok);
    let base = lines
        .by_ref()
        .find_map(|line| line.strip_prefix("listening ").map(str::to_owned))
        .expect("the child prints its address");
    assert!(lines.any(|line| line == "armed"), "{place:?}: the child armed its fault");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    // The answer does not matter (the commit loop dies under it): what follows does.
    let _ = client
        .post(format!("{base}/api/credits/purchase"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", "after-the-fault")
        .json(&serde_json::json!({"userId": "u", "packageId": "starter"}))
        .send();

    let deadline = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            let health = client.get(format!("{base}/healthz")).send().map(|r| r.status().as_u16());
            let _ = child.kill();
            let _ = child.wait();
            panic!("{place:?}: a zombie: still running {EXIT_DEADLINE:?} after the panic, /healthz answers {health:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr).expect("reads");
    assert_eq!(status.signal(), Some(libc_sigabrt()), "{place:?}: ended by SIGABRT, got {status:?}\n{stderr}");
    assert!(stderr.contains("injected: a bug"), "{place:?}: the panic message is printed: {stderr}");
    assert!(stderr.contains("a panic is a bug; aborting"), "{place:?}: and why it aborts: {stderr}");
    assert!(client.get(format!("{base}/healthz")).send().is_err(), "{place:?}: nothing answers on its port");
}

/// SIGABRT's number, without `unsafe` or libc in this crate.
fn libc_sigabrt() -> i32 {
    nix::sys::signal::Signal::SIGABRT as i32
}
