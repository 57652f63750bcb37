//! Logging: human-readable by default, JSON with `CREDITD_LOG_FORMAT=json`;
//! the level comes from `RUST_LOG` (default `info`). Logs go to stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CREDITD_LOG_FORMAT").is_ok_and(|format| format == "json");
    // Colours only on a terminal: a log file or journald gets plain text to grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: sub-millisecond to a minute.
const SECONDS_BUCKETS: &[f64] =
    &[0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Group-commit sizes: one change up to the group limit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. Histograms are
/// rendered as Prometheus histograms (with buckets), not summaries.
pub fn metrics() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(Matcher::Full("creditd_commit_batch_size".into()), BATCH_BUCKETS)
                });
            match builder {
                Ok(builder) => match builder.install_recorder() {
                    Ok(handle) => handle,
                    Err(error) => {
                        tracing::error!(%error, "cannot install the metrics recorder; /metrics will be empty");
                        PrometheusBuilder::new().build_recorder().handle()
                    }
                },
                Err(error) => {
                    tracing::error!(%error, "bad metric buckets");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// `creditd_leader` (1 while this node leads) and `creditd_leader_epoch`
/// (its lease's epoch, when it has one) in the process's recorder, which the
/// leader's `/metrics` shows (SPEC §12).
pub fn leading(leads: bool, epoch: Option<i64>) {
    metrics();
    metrics::gauge!("creditd_leader").set(if leads { 1.0 } else { 0.0 });
    if let Some(epoch) = epoch {
        // An epoch counts leases taken: far below 2^53, exact as an f64.
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("creditd_leader_epoch").set(epoch as f64);
    }
}
