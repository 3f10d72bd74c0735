//! `tokenbridge backfill`: ingest what is there now, wait for ClickHouse to
//! acknowledge it, print a summary; a progress bar on a terminal meanwhile.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ops::metrics::Metrics;
use crate::ops::shutdown::Shutdown;
use crate::pipeline::{self, Mode};
use crate::sink::SinkExit;

/// Backfills `paths` (the configured folders when empty); `json`: print the
/// summary as JSON. Exit code 0 when complete, 2 when interrupted.
pub(super) fn run(
    config_path: &Path,
    sources: Vec<crate::ingest::discovery::Source>,
    json: bool,
) -> anyhow::Result<i32> {
    let c = super::load_config(config_path)?;
    // On a terminal the bar shows progress; info lines would only
    // scroll it away (RUST_LOG still wins).
    let level = if std::io::stderr().is_terminal() && c.log.level != crate::config::LogLevel::Error
    {
        crate::config::LogLevel::Warn
    } else {
        c.log.level
    };
    crate::ops::logging::init(level, c.log.format);
    let shutdown = Shutdown::new();
    super::signals::install(shutdown.clone(), None)?;
    let metrics = Arc::new(Metrics::default());
    let progress = Progress::start(metrics.clone());
    let summary = pipeline::run(
        &c,
        Mode::Backfill(sources),
        pipeline::Controls::new(shutdown, metrics.clone()),
    );
    progress.finish();
    let summary = summary?;
    let m = &summary.metrics;
    let secs = summary.elapsed.as_secs_f64();
    let bytes = m.bytes_read.load(Relaxed);
    // What followed the last acknowledged usage rows: the naive sums,
    // checkpoints and session summaries (the bench separates it).
    let last_commit = m.last_commit_unix_ms.load(Relaxed);
    let after_last_commit_ms = if last_commit > 0 {
        (crate::ops::logging::unix_ms() - last_commit).max(0)
    } else {
        0
    };
    let out = serde_json::json!({
        "complete": summary.sink == SinkExit::Drained,
        "files": m.files_discovered.load(Relaxed),
        "bytes": bytes,
        "usageLines": m.lines_usage.load(Relaxed),
        "otherLines": m.lines_other.load(Relaxed),
        "blankLines": m.lines_blank.load(Relaxed),
        "malformedLines": m.malformed_total(),
        "rowsInserted": m.rows_inserted.load(Relaxed),
        "rowsRejected": m.rows_rejected.load(Relaxed),
        "duplicatesDropped": m.duplicates_dropped.load(Relaxed),
        "fileErrors": m.file_errors.load(Relaxed),
        "elapsedSeconds": secs,
        "afterLastCommitMs": after_last_commit_ms,
        "megabytesPerSecond": bytes as f64 / 1e6 / secs.max(1e-9),
        "sessionsSummarized": m.sessions_summarized.load(Relaxed),
        "contentRowsInserted": m.content_rows_inserted.load(Relaxed),
        "analysis": m.analysis_cost(),
    });
    if json {
        println!("{out}");
    } else {
        println!(
                "backfill {}: {} files, {:.1} MB in {:.2} s ({:.1} MB/s); {} usage lines -> {} rows inserted, {} duplicates dropped, {} malformed lines",
                if summary.sink == SinkExit::Drained { "complete" } else { "interrupted" },
                out["files"], bytes as f64 / 1e6, secs, out["megabytesPerSecond"].as_f64().unwrap_or(0.0),
                out["usageLines"], out["rowsInserted"], out["duplicatesDropped"], out["malformedLines"],
            );
    }
    Ok(if summary.sink == SinkExit::Drained {
        0
    } else {
        2
    })
}

/// Backfill progress: a bar on a terminal, a plain line every 5 s otherwise.
///
/// The bar's total is what the first scan found to read; until that scan is
/// done a spinner counts the files found. Log lines are printed above the
/// bar (see [`crate::ops::logging::set_progress_bar`]).
struct Progress {
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(metrics: Arc<Metrics>) -> Progress {
        let stop = Shutdown::new();
        let rx = stop.receiver().clone();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let bar = tty.then(|| {
                let b = indicatif::ProgressBar::new_spinner();
                b.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} discovering files: {msg}")
                        .expect("spinner template"),
                );
                crate::ops::logging::set_progress_bar(Some(b.clone()));
                b
            });
            let mut total_shown = false;
            let mut last_line = Instant::now();
            loop {
                let read = metrics.bytes_read.load(Relaxed);
                let files = metrics.files_discovered.load(Relaxed);
                let known = metrics.initial_scan_done.load(Relaxed) == 1;
                let total = metrics.initial_backlog_bytes.load(Relaxed).max(read);
                if let Some(b) = &bar {
                    if known && !total_shown {
                        total_shown = true;
                        b.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                            )
                            .expect("progress template"),
                        );
                        b.set_length(total);
                    }
                    if total_shown {
                        if total > b.length().unwrap_or(0) {
                            b.set_length(total);
                        }
                        b.set_position(read);
                    } else {
                        b.tick();
                    }
                    b.set_message(format!("{files} files"));
                } else if last_line.elapsed() >= Duration::from_secs(5) {
                    last_line = Instant::now();
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    eprintln!(
                        "backfill progress: {files} files, {:.1}/{:.1} MB, {:.1} MB/s",
                        read as f64 / 1e6,
                        total as f64 / 1e6,
                        read as f64 / 1e6 / secs
                    );
                }
                if rx.recv_timeout(Duration::from_millis(100)).is_err() && stop_requested(&rx) {
                    break;
                }
            }
            if let Some(b) = bar {
                crate::ops::logging::set_progress_bar(None);
                b.finish_and_clear();
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stop_requested(rx: &crossbeam_channel::Receiver<()>) -> bool {
    matches!(
        rx.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    )
}
