//! Log set-up and the few logging helpers the pipeline shares.
//!
//! Logs go to stderr (stdout carries report output): JSON lines when stderr is
//! not a terminal (journald keeps them), readable text on a terminal. Every
//! event has a stable snake_case `event` field; fields carry their unit in the
//! name (`latency_ms`, `bytes`). docs/reference/events.md lists them.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::{LogFormat, LogLevel};
use crate::format::BadLine;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The progress bar on the terminal, while one is drawn: log lines are
/// printed above it instead of through it.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Routes log output around `bar` until called again with `None`.
pub fn set_progress_bar(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().expect("progress bar lock") = bar;
}

/// Stderr for one log event: the event's bytes are collected and written
/// in one piece, with the progress bar (if any) hidden meanwhile.
struct EventWriter(Vec<u8>);

impl std::io::Write for EventWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        use std::io::Write;
        let bytes = std::mem::take(&mut self.0);
        let bar = BAR.lock().map(|b| b.clone()).unwrap_or(None);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&bytes);
        };
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }
}

fn event_writer() -> EventWriter {
    EventWriter(Vec::with_capacity(256))
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`. Safe to call
/// more than once (later calls are ignored).
pub fn init(level: LogLevel, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let (filter, handle) = reload::Layer::new(filter);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let json_layer = json.then(|| {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_writer(event_writer)
    });
    let text_layer = (!json).then(|| fmt::layer().with_target(false).with_writer(event_writer));
    if tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(text_layer)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Changes the log level at run time (config reload). `RUST_LOG`, when set,
/// still wins.
pub fn set_level(level: LogLevel) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let Some(h) = FILTER.get() {
        let _ = h.reload(EnvFilter::new(level.as_str()));
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A number in [0, 1) for retry jitter (not for anything secret).
pub fn jitter_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed);
    let h = xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes());
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Logs a malformed line, at most 20 lines per 10 s window; the rest are
/// only counted (and summarised when the window ends).
pub fn malformed_line(file: &str, bad: &BadLine) {
    static WINDOW: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let mut w = WINDOW.lock().expect("malformed log window");
    let now = Instant::now();
    let (start, count) = w.get_or_insert((now, 0));
    if now.duration_since(*start).as_secs() >= 10 {
        if *count > 20 {
            tracing::warn!(
                event = "line_malformed_suppressed",
                lines = *count - 20,
                "more malformed lines were not logged individually"
            );
        }
        *start = now;
        *count = 0;
    }
    *count += 1;
    if *count <= 20 {
        tracing::warn!(event = "line_malformed", file, offset = bad.offset, kind = bad.kind.as_str(), head = %bad.head, "malformed line skipped");
    }
}
