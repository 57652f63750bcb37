//! Time as the engine sees it: injected, so tests can move it by hand.
//!
//! Two clocks, for two jobs. The wall clock ([`Clock::now_ms`]) gives the
//! timestamps people read (`at`, `expiresAt`, the ledger's times); it can
//! step back or forward when NTP or an operator sets it. The monotonic clock
//! ([`Clock::monotonic_ms`]) measures elapsed time: hold deadlines and sync
//! staleness use it, so a wall clock stepping back neither stretches a hold
//! nor silences `sync_stale`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Wall time: milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Milliseconds since an arbitrary origin fixed for the process; never
    /// goes back.
    fn monotonic_ms(&self) -> u64 {
        process_monotonic_ms()
    }
}

/// Milliseconds since the first call in this process, by `Instant`.
fn process_monotonic_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The system's wall and monotonic clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to (tests and the model checker):
/// [`ManualClock::advance_ms`] moves both clocks, as time passing does;
/// [`ManualClock::step_wall_back_ms`] moves the wall clock alone, as an
/// operator or NTP setting it does.
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    wall_ms: Arc<AtomicU64>,
    monotonic_ms: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn starting_at(ms: u64) -> Self {
        Self { wall_ms: Arc::new(AtomicU64::new(ms)), monotonic_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// Time passes: both clocks move on by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        self.wall_ms.fetch_add(ms, Ordering::SeqCst);
        self.monotonic_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall clock is set back by `ms`; no time passes.
    pub fn step_wall_back_ms(&self, ms: u64) {
        let _ = self.wall_ms.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |wall| Some(wall.saturating_sub(ms)));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.wall_ms.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic_ms.load(Ordering::SeqCst)
    }
}

/// RFC 3339 (UTC, millisecond precision) for answers and exports.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}
