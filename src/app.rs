//! The command line: argument definitions and what each subcommand does.
//! `main.rs` only calls [`main`]; this is the one place that uses `anyhow`
//! for errors that end the process.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::ops::metrics::Metrics;
use crate::ops::shutdown::Shutdown;
use crate::pipeline::{self, Mode};
use crate::sink::SinkExit;

/// tokenbridge: exact, deduplicated Claude Code token usage in ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "tokenbridge", version, about)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "TOKENBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Run,
    /// Ingest everything present now, wait until ClickHouse acknowledged it, exit.
    Backfill {
        /// Files or folders (default: the configured watch folders).
        paths: Vec<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read results from ClickHouse.
    Report {
        /// Which report.
        #[command(subcommand)]
        kind: ReportKind,
    },
    /// Validate the config file and print the effective settings.
    CheckConfig,
    /// Usage straight from files, no ClickHouse: `scan [PATH...] daily|monthly|session|model`.
    Scan {
        /// Files or folders (default: the configured watch folders), then the report kind.
        #[arg(required = true, value_name = "PATH... KIND")]
        items: Vec<String>,
        /// Report options.
        #[command(flatten)]
        opts: ReportOpts,
        /// Also estimate content tokens by category (`heuristic` or `o200k`),
        /// as `[analysis] enhanced = true` does in the daemon.
        #[arg(long, value_name = "ESTIMATOR")]
        analysis: Option<crate::estimate::EstimatorKind>,
    },
    /// The upstream access token.
    Token {
        /// What to show.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Recount the watched files offline and compare with ClickHouse per session.
    Verify {
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Source, age and expiry of the cached token (never the token).
    Status,
}

/// Options shared by `report` and `scan`.
#[derive(Debug, clap::Args)]
pub struct ReportOpts {
    /// JSON in ccusage's shape.
    #[arg(long)]
    pub json: bool,
    /// First day (YYYY-MM-DD or YYYYMMDD).
    #[arg(long)]
    pub since: Option<String>,
    /// Last day (YYYY-MM-DD or YYYYMMDD).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this project (the folder under projects/).
    #[arg(long)]
    pub project: Option<String>,
    /// UTC (default) or an offset like +02:00.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
}

/// Reports.
#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// Exact deduplicated totals.
    Totals {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// By day.
    Daily(ReportOpts),
    /// By month.
    Monthly(ReportOpts),
    /// By session.
    Session(ReportOpts),
    /// By model.
    Model(ReportOpts),
}

/// Parses arguments and runs the command. Returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(event = "fatal_error", error = %format!("{e:#}"), "tokenbridge stopped");
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::CheckConfig => {
            let c = load_config(&cli.config)?;
            println!("{}: ok", c.source.display());
            println!("{c:#?}");
            Ok(0)
        }
        Command::Run => {
            let c = load_config(&cli.config)?;
            crate::ops::logging::init(&c.log.level, c.log.format);
            let shutdown = Shutdown::new();
            let (reload_tx, reload_rx) = crossbeam_channel::unbounded();
            install_signal_handlers(shutdown.clone(), Some((cli.config.clone(), reload_tx)))?;
            let controls = pipeline::Controls {
                shutdown,
                metrics: Arc::new(Metrics::default()),
                reload: Some(reload_rx),
            };
            let summary = pipeline::run(&c, Mode::Follow, controls)?;
            tracing::info!(
                event = "shutdown_complete",
                clean = summary.sink != SinkExit::Abandoned,
                elapsed_ms = summary.elapsed.as_millis() as u64,
                "tokenbridge stopped"
            );
            Ok(0)
        }
        Command::Backfill { paths, json } => {
            let c = load_config(&cli.config)?;
            // On a terminal the bar shows progress; info lines would only
            // scroll it away (RUST_LOG still wins).
            let level = if std::io::stderr().is_terminal() && c.log.level != "error" {
                "warn"
            } else {
                c.log.level.as_str()
            };
            crate::ops::logging::init(level, c.log.format);
            let shutdown = Shutdown::new();
            install_signal_handlers(shutdown.clone(), None)?;
            let metrics = Arc::new(Metrics::default());
            let progress = Progress::start(metrics.clone());
            let summary = pipeline::run(
                &c,
                Mode::Backfill(paths),
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
        Command::Report { kind } => {
            let c = load_config(&cli.config)?;
            crate::ops::logging::init(
                if std::env::var_os("RUST_LOG").is_some() {
                    &c.log.level
                } else {
                    "warn"
                },
                c.log.format,
            );
            match kind {
                ReportKind::Totals { json } => {
                    let t = pipeline::totals(&c)?;
                    if json {
                        println!("{}", serde_json::to_string(&t)?);
                    } else {
                        println!("input tokens           {:>16}", t.input_tokens);
                        println!("output tokens          {:>16}", t.output_tokens);
                        println!("cache creation tokens  {:>16}", t.cache_creation_tokens);
                        println!("cache read tokens      {:>16}", t.cache_read_tokens);
                        println!("total tokens           {:>16}", t.total_tokens);
                        println!("messages               {:>16}", t.messages);
                    }
                    Ok(0)
                }
                ReportKind::Daily(o) => report_from_clickhouse(&c, crate::report::Kind::Daily, &o),
                ReportKind::Monthly(o) => {
                    report_from_clickhouse(&c, crate::report::Kind::Monthly, &o)
                }
                ReportKind::Session(o) => {
                    report_from_clickhouse(&c, crate::report::Kind::Session, &o)
                }
                ReportKind::Model(o) => report_from_clickhouse(&c, crate::report::Kind::Model, &o),
            }
        }
        Command::Scan {
            items,
            opts,
            analysis,
        } => {
            crate::ops::logging::init("warn", crate::config::LogFormat::Text);
            let (kind, paths) = items.split_last().expect("clap requires one item");
            let kind: crate::report::Kind = kind.parse().map_err(anyhow::Error::msg)?;
            let (paths, prices, max_line): (Vec<PathBuf>, _, _) = if paths.is_empty() {
                let c = load_config(&cli.config)?;
                (
                    c.watch.dirs.clone(),
                    prices_for(Some(&c))?,
                    c.watch.max_line_bytes,
                )
            } else {
                (
                    paths.iter().map(PathBuf::from).collect(),
                    prices_for(None)?,
                    64 << 20,
                )
            };
            let estimator = analysis.map(crate::estimate::Estimator::new);
            let out = crate::scan::scan(&paths, max_line, estimator);
            for (p, e) in &out.errors {
                eprintln!("warning: {}: {e}", p.display());
            }
            let entries: Vec<crate::report::Entry> = out.rows.iter().map(Into::into).collect();
            let extra = analysis.map(|k| analysis_json(&out, k));
            print_report(&entries, kind, &opts, &prices, extra.as_ref())?;
            if let (Some(k), false) = (analysis, opts.json) {
                print_analysis_table(&out, k);
            }
            Ok(0)
        }
        Command::Token {
            action: TokenAction::Status,
        } => {
            let c = load_config(&cli.config)?;
            token_status(&c)
        }
        Command::Verify { session } => {
            let c = load_config(&cli.config)?;
            crate::ops::logging::init("warn", c.log.format);
            verify(&c, session.as_deref())
        }
    }
}

fn token_status(c: &Config) -> anyhow::Result<i32> {
    use crate::timestamp::format_rfc3339_ms;
    let Some(tm) = pipeline::token_manager(c) else {
        println!(
            "auth mode: {}",
            if c.auth == crate::config::AuthConfig::None {
                "none"
            } else {
                "basic"
            }
        );
        println!("no token is used");
        return Ok(0);
    };
    println!("source:   {}", tm.source());
    let cache = c.state.dir.join(pipeline::TOKEN_CACHE_FILE);
    println!("cache:    {}", cache.display());
    match tm.status() {
        Some((obtained, expires)) => {
            let now = crate::ops::logging::unix_ms();
            println!(
                "obtained: {} ({} s ago)",
                format_rfc3339_ms(obtained),
                (now - obtained) / 1000
            );
            if expires > now {
                println!(
                    "expires:  {} (in {} s)",
                    format_rfc3339_ms(expires),
                    (expires - now) / 1000
                );
            } else {
                println!(
                    "expired:  {} ({} s ago)",
                    format_rfc3339_ms(expires),
                    (now - expires) / 1000
                );
            }
        }
        None => println!("no valid cached token"),
    }
    Ok(0)
}

fn prices_for(config: Option<&Config>) -> anyhow::Result<crate::price::PriceTable> {
    match config.and_then(|c| c.price_file.as_ref()) {
        Some(f) => Ok(crate::price::PriceTable::with_overrides(f)?),
        None => Ok(crate::price::PriceTable::embedded()),
    }
}

fn print_report(
    entries: &[crate::report::Entry],
    kind: crate::report::Kind,
    opts: &ReportOpts,
    prices: &crate::price::PriceTable,
    extra: Option<&serde_json::Value>,
) -> anyhow::Result<i32> {
    let filter = crate::report::Filter {
        since: opts.since.clone(),
        until: opts.until.clone(),
        project: opts.project.clone(),
        tz_offset_min: crate::report::parse_timezone(&opts.timezone).map_err(anyhow::Error::msg)?,
    };
    let report = crate::report::build(entries, kind, &filter, prices);
    if opts.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra) {
            obj.insert("analysis".to_string(), extra.clone());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", crate::report::table(&report, kind));
    }
    Ok(0)
}

/// Content estimates and naive totals of a whole scan.
struct ScanAnalysis {
    all: crate::content::ContentTotals,
    naive: u64,
    dedup: u64,
    reported_output: u64,
}

fn scan_analysis(out: &crate::scan::ScanOutput) -> ScanAnalysis {
    let mut all = crate::content::ContentTotals::default();
    for t in out.content.values() {
        all.merge(t);
    }
    ScanAnalysis {
        all,
        naive: out.naive.values().map(|t| t.total_tokens).sum(),
        dedup: out.rows.iter().map(|r| r.total_tokens()).sum(),
        reported_output: out.rows.iter().map(|r| r.output_tokens).sum(),
    }
}

/// The `analysis` member `scan --analysis … --json` adds to the report.
fn analysis_json(
    out: &crate::scan::ScanOutput,
    kind: crate::estimate::EstimatorKind,
) -> serde_json::Value {
    let a = scan_analysis(out);
    serde_json::json!({
        "estimator": kind.to_string(),
        "content": a.all,
        "estimatedAssistantOutput": a.all.assistant_output(),
        "reportedOutputTokens": a.reported_output,
        "naiveTotalTokens": a.naive,
        "totalTokens": a.dedup,
    })
}

fn print_analysis_table(out: &crate::scan::ScanOutput, kind: crate::estimate::EstimatorKind) {
    let ScanAnalysis {
        all,
        naive,
        dedup,
        reported_output,
    } = scan_analysis(out);
    println!("\ncontent tokens, estimated ({kind})   main          sidechain");
    let (m, s) = (&all.main, &all.sidechain);
    for (name, a, b) in [
        ("user prompts", m.user_prompt, s.user_prompt),
        ("tool results", m.tool_result, s.tool_result),
        ("assistant text", m.assistant_text, s.assistant_text),
        ("thinking", m.thinking, s.thinking),
        ("tool use input", m.tool_use, s.tool_use),
        ("system / meta", m.system, s.system),
    ] {
        println!("  {name:<32} {a:>12} {b:>12}");
    }
    println!(
        "estimated assistant output {} vs reported output_tokens {}",
        all.assistant_output(),
        reported_output
    );
    println!("naive sum of every line {naive} vs deduplicated {dedup}");
}

fn report_from_clickhouse(
    c: &Config,
    kind: crate::report::Kind,
    opts: &ReportOpts,
) -> anyhow::Result<i32> {
    let (conn, _state) = pipeline::connect_for_query(c)?;
    let entries = conn.runtime.block_on(conn.client.report_entries())?;
    print_report(&entries, kind, opts, &prices_for(Some(c))?, None)
}

/// Recounts the watched files and compares per session with ClickHouse.
fn verify(c: &Config, only: Option<&str>) -> anyhow::Result<i32> {
    use std::collections::BTreeMap;
    type Sums = (u64, u64, u64, u64, u64);
    let add = |m: &mut BTreeMap<String, Sums>, s: &str, i: u64, o: u64, cc: u64, cr: u64| {
        let e = m.entry(s.to_string()).or_default();
        *e = (e.0 + i, e.1 + o, e.2 + cc, e.3 + cr, e.4 + 1);
    };
    let out = crate::scan::scan(&c.watch.dirs, c.watch.max_line_bytes, None);
    let mut files: BTreeMap<String, Sums> = BTreeMap::new();
    for r in &out.rows {
        add(
            &mut files,
            &r.session_id,
            r.input_tokens,
            r.output_tokens,
            r.cache_creation_input_tokens,
            r.cache_read_input_tokens,
        );
    }
    let (conn, _state) = pipeline::connect_for_query(c)?;
    let mut db: BTreeMap<String, Sums> = BTreeMap::new();
    for e in conn.runtime.block_on(conn.client.report_entries())? {
        add(
            &mut db,
            &e.session_id,
            e.usage.input,
            e.usage.output,
            e.usage.cache_creation,
            e.usage.cache_read,
        );
    }
    let mut sessions: Vec<&String> = files.keys().chain(db.keys()).collect();
    sessions.sort();
    sessions.dedup();
    let mut bad = 0;
    let show = |s: &Sums| {
        format!(
            "input={} output={} cache_write={} cache_read={} messages={}",
            s.0, s.1, s.2, s.3, s.4
        )
    };
    for s in sessions {
        if only.is_some_and(|o| o != s) {
            continue;
        }
        let (f, d) = (
            files.get(s).copied().unwrap_or_default(),
            db.get(s).copied().unwrap_or_default(),
        );
        if f != d {
            bad += 1;
            println!(
                "session {s} differs:\n  files:      {}\n  clickhouse: {}",
                show(&f),
                show(&d)
            );
        }
    }
    let checked = if only.is_some() {
        1
    } else {
        files.len().max(db.len())
    };
    if bad == 0 {
        println!(
            "verify: {checked} sessions match ({} files, {} messages)",
            out.files,
            out.rows.len()
        );
        Ok(0)
    } else {
        println!("verify: {bad} of {checked} sessions differ");
        Ok(1)
    }
}

/// First SIGTERM/SIGINT: graceful shutdown. A second one: exit at once (the
/// state on disk is always consistent, only in-flight work is lost and re-read).
/// SIGHUP (when `reload` is given): re-read the config file; a valid one is
/// sent to the pipeline, an invalid one is logged and the old one stays.
fn install_signal_handlers(
    shutdown: Shutdown,
    reload: Option<(PathBuf, crossbeam_channel::Sender<Config>)>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("tokenbridge-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload_config(reload.as_ref());
                    continue;
                }
                if shutdown.is_triggered() {
                    tracing::warn!(
                        event = "shutdown_forced",
                        signal = sig,
                        "second signal; exiting now"
                    );
                    std::process::exit(130);
                }
                tracing::info!(
                    event = "shutdown_requested",
                    signal = sig,
                    "stopping: flushing what is in flight"
                );
                shutdown.trigger();
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn reload_config(reload: Option<&(PathBuf, crossbeam_channel::Sender<Config>)>) {
    let Some((path, tx)) = reload else {
        tracing::info!(
            event = "config_reload_ignored",
            "SIGHUP ignored: not running as a daemon"
        );
        return;
    };
    match Config::load(path) {
        Ok(c) => {
            tracing::info!(event = "config_reload_requested", file = %path.display(), "reloading configuration");
            let _ = tx.send(c);
        }
        Err(e) => {
            tracing::error!(event = "config_reload_failed", file = %path.display(), error = %e, "new configuration rejected; keeping the old one");
        }
    }
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
