//! Keeping systemd informed while the pipeline runs: status lines, watchdog
//! pings only while the reader and sink progress, and the periodic
//! `analysis_cost` log.

use std::time::{Duration, Instant};

use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::ops::notify::Notifier;
use crate::ops::shutdown::Shutdown;

/// Keeps systemd informed: `STATUS=` every 5 s, `WATCHDOG=1` only while the
/// reader and the sink make progress, `STOPPING=1` when shutdown starts.
/// With enhanced analysis on, logs `analysis_cost` every 10 minutes.
pub(super) fn run(
    notifier: &Notifier,
    health: &Health,
    metrics: &Metrics,
    shutdown: &Shutdown,
    enhanced: bool,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let watchdog = crate::ops::notify::watchdog_timeout();
    let tick = watchdog
        .map(|w| (w / 2).min(Duration::from_secs(5)))
        .unwrap_or(Duration::from_secs(5));
    let mut withheld = false;
    let mut last_status = Instant::now();
    let mut last_cost = Instant::now();
    loop {
        if enhanced && last_cost.elapsed() >= Duration::from_secs(600) {
            last_cost = Instant::now();
            metrics.log_analysis_cost();
        }
        if let Some(limit) = watchdog {
            match health.stalled(limit) {
                None => {
                    if withheld {
                        tracing::info!(
                            event = "watchdog_resumed",
                            "pipeline progresses again; watchdog pings resume"
                        );
                        withheld = false;
                    }
                    notifier.watchdog();
                }
                Some(part) => {
                    if !withheld {
                        tracing::error!(
                            event = "watchdog_withheld",
                            part = %part,
                            limit_ms = limit.as_millis() as u64,
                            "pipeline stalled; not pinging the watchdog"
                        );
                        withheld = true;
                    }
                }
            }
        }
        if last_status.elapsed() >= Duration::from_secs(5) {
            last_status = Instant::now();
            let behind = metrics
                .bytes_read
                .load(Relaxed)
                .saturating_sub(metrics.bytes_committed.load(Relaxed))
                + metrics.backlog_bytes.load(Relaxed);
            notifier.status(&format!(
                "ingesting: {} files, {} rows inserted, {:.1} MB behind{}",
                metrics.files_tracked.load(Relaxed),
                metrics.rows_inserted.load(Relaxed),
                behind as f64 / 1e6,
                if metrics.clickhouse_down.load(Relaxed) == 1 {
                    ", clickhouse unreachable"
                } else {
                    ""
                }
            ));
        }
        if shutdown.receiver().recv_timeout(tick).is_err() && shutdown.is_triggered() {
            notifier.stopping();
            notifier.status("stopping: flushing what is in flight");
            return;
        }
    }
}
