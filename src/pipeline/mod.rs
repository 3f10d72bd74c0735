//! Wires the daemon and backfill together: state dir, ClickHouse (managed or
//! external), schema, dedup index, checkpoints, reader and sink threads.
//!
//! Start-up order matters: the dedup index is loaded from ClickHouse before any
//! file is read, so a restart knows every key ClickHouse already holds.

mod connect;
mod reload;
mod supervise;

pub use connect::{
    connect, connect_for_query, token_manager, totals, Connection, TOKEN_CACHE_FILE,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{Config, LoadScope};
use crate::format::ParseMode;
use crate::ingest::checkpoint::CheckpointStore;
use crate::ingest::reader::{ReadUntil, Reader, ReaderExit, ReaderOptions};
use crate::ops::health::Health;
use crate::ops::http::HttpState;
use crate::ops::metrics::Metrics;
use crate::ops::notify::Notifier;
use crate::ops::shutdown::Shutdown;
use crate::ops::state::StateDir;
use crate::sink::deadletter::DeadLetter;
use crate::sink::dedup::DedupIndex;
use crate::sink::{Lookup, Sink, SinkExit, SinkOptions, SummaryPolicy};

/// Run until stopped, or read what is there and stop.
#[derive(Debug, Clone)]
pub enum Mode {
    /// The daemon.
    Follow,
    /// Backfill these folders or files (the configured ones when empty).
    Backfill(Vec<crate::ingest::discovery::Source>),
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How the sink ended.
    pub sink: SinkExit,
    /// Wall time.
    pub elapsed: Duration,
    /// Counters at the end.
    pub metrics: Arc<Metrics>,
}

/// The sink's side of start-up: ClickHouse up and connected, the schema
/// ensured, inserts of an earlier run awaited, the dedup index loaded.
struct SinkStart {
    conn: Connection,
    index: DedupIndex,
    /// The database held no usage rows at start-up.
    started_empty: bool,
    /// The index holds the keys of entries from this time on (Unix ms);
    /// `None`: all keys (up to the index's limit).
    window_start_ms: Option<i64>,
    /// Whether summaries join content estimates.
    with_content: bool,
}

fn start_sink_side(
    config: &Config,
    state: &StateDir,
    notifier: &Notifier,
) -> anyhow::Result<SinkStart> {
    notifier.status("connecting to clickhouse");
    let conn = connect(config, Some(state))?;
    notifier.status("loading the dedup index from clickhouse");
    let mut index = DedupIndex::with_max_keys(config.dedup.max_keys);
    let load_started = Instant::now();
    let window_start_ms = config
        .dedup
        .load_window
        .map(|w| crate::ops::logging::unix_ms() - w.as_millis() as i64);
    let client = &conn.client;
    let own_host = match config.dedup.load_scope {
        LoadScope::All => None,
        LoadScope::Host => Some(config.attribution.host.as_str()),
    };
    // Known keys are loaded once the inserts of an earlier run have landed;
    // whether content estimates exist is asked meanwhile.
    let load = async {
        let waited = client
            .wait_for_running_inserts(config.clickhouse.request_timeout)
            .await
            .context("checking for inserts still running")?;
        if waited > 0 {
            tracing::info!(
                event = "running_inserts_awaited",
                inserts = waited,
                "waited for inserts of an earlier run to finish"
            );
        }
        client
            .load_known_versions(
                &mut index,
                config.dedup.max_keys / 2,
                window_start_ms,
                own_host,
            )
            .await
            .context("loading known dedup keys from clickhouse")
    };
    let any_usage = async {
        client
            .has_rows(crate::ch::schema::MESSAGES)
            .await
            .context("looking for usage rows in clickhouse")
    };
    let content = async {
        if config.analysis.enhanced {
            return Ok(true);
        }
        client
            .has_rows(crate::ch::schema::CONTENT)
            .await
            .context("looking for content estimates in clickhouse")
    };
    let (known, with_content, any_usage) = conn
        .runtime
        .block_on(async { tokio::try_join!(load, content, any_usage) })?;
    tracing::info!(
        event = "dedup_index_loaded",
        keys = known,
        heap_bytes = index.heap_bytes(),
        latency_ms = load_started.elapsed().as_millis() as u64,
        "dedup index loaded"
    );
    Ok(SinkStart {
        conn,
        index,
        started_empty: !any_usage,
        window_start_ms,
        with_content,
    })
}

/// Runs the pipeline: the daemon (`Mode::Follow`) until `controls.shutdown`,
/// or a backfill until everything present is acknowledged. New configs sent
/// on `controls.reload` are applied while it runs.
pub fn run(config: &Config, mode: Mode, controls: Controls) -> anyhow::Result<Summary> {
    let Controls {
        shutdown,
        metrics,
        reload,
    } = controls;
    let started = Instant::now();
    metrics.usage.set_labels(&config.http.usage_labels);
    let notifier = Arc::new(Notifier::from_env());
    notifier.status("opening the state dir");
    let state = StateDir::open_wait(&config.state.dir, Duration::from_secs(10))?;
    let store = CheckpointStore::load(state.path())?;
    let checkpoints = store.entries().cloned().collect();

    let health = Arc::new(Health::default());
    let (tx, rx) = crossbeam_channel::bounded(config.batch.channel_capacity);
    let (reader_ctrl, reader_ctrl_rx) = crossbeam_channel::unbounded();
    let (sink_ctrl, sink_ctrl_rx) = crossbeam_channel::unbounded();
    let (sources, until) = match &mode {
        Mode::Follow => (config.sources(), ReadUntil::Shutdown),
        Mode::Backfill(paths) if paths.is_empty() => (config.sources(), ReadUntil::Drained),
        Mode::Backfill(sources) => (sources.clone(), ReadUntil::Drained),
    };
    let reader = Reader::with_control(
        reader_options(config, sources, until, &metrics),
        checkpoints,
        tx,
        shutdown.clone(),
        metrics.clone(),
        health.clone(),
        reader_ctrl_rx,
    );
    // The reader starts first: discovering and parsing overlap with
    // connecting, creating the schema and loading the dedup index. Until the
    // sink runs, it blocks on the full channel.
    let reader_thread = std::thread::Builder::new()
        .name("tokenbridge-reader".into())
        .spawn(move || reader.run())
        .context("starting the reader thread")?;
    let start = match start_sink_side(config, &state, &notifier) {
        Ok(started) => started,
        Err(e) => {
            shutdown.trigger();
            drop(rx);
            let _ = reader_thread.join();
            return Err(e);
        }
    };
    let (sink, conn) = build_sink(
        config,
        start,
        rx,
        store,
        &state,
        until,
        SinkLinks {
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            health: health.clone(),
            control: sink_ctrl_rx,
        },
    )?;
    health.reader_beat();
    health.sink_beat();
    let refresher = conn.client.token_manager().cloned().map(|tm| {
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("tokenbridge-token".into())
            .spawn(move || tm.run_refresher(&stop))
            .expect("token refresher thread")
    });
    let sink_thread = std::thread::Builder::new()
        .name("tokenbridge-sink".into())
        .spawn(move || sink.run())
        .context("starting the sink thread")?;

    if until == ReadUntil::Shutdown && config.http.enabled {
        serve_http(config, &conn, &metrics, &health, &shutdown)?;
    }
    health
        .running
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        event = "pipeline_started",
        follow = until == ReadUntil::Shutdown,
        "reading transcripts"
    );
    notifier.ready();
    notifier.status("ingesting");
    let supervisor = spawn_supervisor(config, &notifier, &health, &metrics, &shutdown)?;
    let budgets = (!config.budgets.is_empty())
        .then(|| {
            crate::budget::spawn(
                config.budgets.clone(),
                conn.client.clone(),
                conn.runtime.handle().clone(),
                state.path(),
                metrics.clone(),
                shutdown.clone(),
            )
        })
        .transpose()
        .context("starting the budget thread")?;
    let reloader = reload.map(|rx| {
        let token = conn.client.token_manager().cloned();
        spawn_reloader(
            config.clone(),
            rx,
            reader_ctrl,
            sink_ctrl,
            token,
            shutdown.clone(),
        )
    });

    let reader_exit = reader_thread.join().expect("reader thread panicked");
    let sink_exit = sink_thread.join().expect("sink thread panicked");
    // Asked to stop (signal, or a backfill's end) before the threads ended.
    let stop_requested = shutdown.is_triggered();
    shutdown.trigger();
    let _ = supervisor.join();
    if let Some(b) = budgets {
        let _ = b.join();
    }
    if let Some(r) = reloader {
        let _ = r.join();
    }
    if let Some(r) = refresher {
        let _ = r.join();
    }
    if config.analysis.enhanced {
        metrics.log_analysis_cost();
    }
    tracing::info!(event = "pipeline_stopped", reader = ?reader_exit, sink = ?sink_exit, "pipeline stopped");
    if reader_exit == ReaderExit::SinkGone
        && sink_exit != SinkExit::Abandoned
        && until == ReadUntil::Shutdown
        && !stop_requested
    {
        anyhow::bail!("the sink stopped unexpectedly");
    }
    notifier.status("stopping clickhouse");
    drop(conn);
    Ok(Summary {
        sink: sink_exit,
        elapsed: started.elapsed(),
        metrics,
    })
}

/// What the caller controls while the pipeline runs.
pub struct Controls {
    /// Stops the pipeline (signals trigger it).
    pub shutdown: Shutdown,
    /// Counters, shared with the caller (progress bars, summaries).
    pub metrics: Arc<Metrics>,
    /// New configurations to apply (SIGHUP), already validated.
    pub reload: Option<crossbeam_channel::Receiver<Config>>,
}

impl Controls {
    /// Controls without reloads.
    pub fn new(shutdown: Shutdown, metrics: Arc<Metrics>) -> Controls {
        Controls {
            shutdown,
            metrics,
            reload: None,
        }
    }
}

/// What the sink shares with the rest of the pipeline.
struct SinkLinks {
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    health: Arc<Health>,
    control: crossbeam_channel::Receiver<SinkOptions>,
}

/// The sink over the connection and index `start` opened, reading `rx`;
/// returns it with the connection (which the caller keeps for the HTTP
/// endpoint and the token).
fn build_sink(
    config: &Config,
    start: SinkStart,
    rx: crossbeam_channel::Receiver<crate::ingest::msg::SinkMsg>,
    store: CheckpointStore,
    state: &StateDir,
    until: ReadUntil,
    links: SinkLinks,
) -> anyhow::Result<(Sink, connect::Connection)> {
    let SinkStart {
        conn,
        index,
        started_empty,
        window_start_ms,
        with_content,
    } = start;
    let sink = Sink::new(
        rx,
        conn.client.clone(),
        conn.runtime.handle().clone(),
        store,
        index,
        sink_options(config, until),
        links.metrics,
        links.shutdown,
        DeadLetter::new(
            state.path(),
            config.state.dead_letter_max_bytes,
            config.state.dead_letter_files,
        ),
        links.health,
        links.control,
        summary_options(config, with_content, started_empty, window_start_ms)?,
    );
    Ok((sink, conn))
}

/// The reader's options for this run.
fn reader_options(
    config: &Config,
    sources: Vec<crate::ingest::discovery::Source>,
    until: ReadUntil,
    metrics: &Arc<Metrics>,
) -> ReaderOptions {
    ReaderOptions {
        sources,
        rescan_interval: config.watch.rescan_interval,
        max_line_bytes: config.watch.max_line_bytes,
        read_chunk_bytes: config.watch.read_chunk_bytes,
        until,
        attribution: Arc::new(crate::ingest::attribution::Attributor::new(
            config.attribution.clone(),
        )),
        memory: crate::ingest::budget::MemoryBudget::reporting(
            config.batch.channel_max_bytes,
            metrics.clone(),
        ),
        mode: if config.analysis.enhanced {
            ParseMode::Enhanced(crate::format::estimate::Estimator::new(
                config.analysis.estimator,
            ))
        } else if config.watch.validate_all_lines {
            ParseMode::Full
        } else {
            ParseMode::UsageOnly
        },
        pass_gap: config.batch.min_insert_gap,
    }
}

/// How the sink summarizes sessions, given what the database held at start.
fn summary_options(
    config: &Config,
    with_content: bool,
    started_empty: bool,
    window_start_ms: Option<i64>,
) -> anyhow::Result<crate::sink::SummaryOptions> {
    Ok(crate::sink::SummaryOptions {
        prices: Arc::new(match &config.price_file {
            Some(f) => crate::price::PriceTable::with_overrides(f)?,
            None => crate::price::PriceTable::embedded(),
        }),
        interval: config.analysis.summary_interval,
        with_content,
        started_empty,
        // An empty database holds no key the index could miss.
        lookup: match window_start_ms {
            // An empty database holds no key the index could miss.
            _ if started_empty => Lookup::Never,
            Some(t) => Lookup::Before(t),
            None => Lookup::Never,
        },
    })
}

/// Serves `/metrics`, `/health` and `/ready` until shutdown.
fn serve_http(
    config: &Config,
    conn: &connect::Connection,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let http_state = Arc::new(HttpState::new(
        metrics.clone(),
        health.clone(),
        config.http.ready_max_lag,
        conn.client.token_manager().cloned(),
    ));
    let dashboard = config.dashboard.enabled.then(|| {
        crate::dashboard::router(Arc::new(crate::dashboard::Dashboard::new(
            crate::dashboard::DataSource::ClickHouse(Box::new(conn.client.clone())),
            match &config.price_file {
                Some(f) => crate::price::PriceTable::with_overrides(f)
                    .unwrap_or_else(|_| crate::price::PriceTable::embedded()),
                None => crate::price::PriceTable::embedded(),
            },
            config.cost_mode,
            crate::dashboard::access_for(&config.http.listen, config.dashboard.token.clone()),
            Some(metrics.clone()),
        )))
    });
    let stop = shutdown.clone();
    let bound = conn
        .runtime
        .block_on(crate::ops::http::serve(
            config.http.listen,
            http_state,
            dashboard,
            async move {
                let rx = stop.receiver().clone();
                let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
            },
        ))
        .with_context(|| format!("binding the http endpoint on {}", config.http.listen))?;
    tracing::info!(event = "http_listening", addr = %bound, "serving /metrics, /health and /ready");
    Ok(())
}

/// Starts the thread that pings the watchdog and logs status.
fn spawn_supervisor(
    config: &Config,
    notifier: &Arc<Notifier>,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let enhanced = config.analysis.enhanced;
    let (n, h, m, s) = (
        notifier.clone(),
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    std::thread::Builder::new()
        .name("tokenbridge-supervisor".into())
        .spawn(move || supervise::run(&n, &h, &m, &s, enhanced))
        .context("starting the supervisor thread")
}

/// Starts the thread that applies reloaded configs until shutdown.
fn spawn_reloader(
    mut current: Config,
    rx: crossbeam_channel::Receiver<Config>,
    reader_ctrl: crossbeam_channel::Sender<crate::ingest::reader::ReaderCtrl>,
    sink_ctrl: crossbeam_channel::Sender<SinkOptions>,
    token: Option<Arc<crate::auth::token::TokenManager>>,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(new) => reload::apply(&mut current, new, &reader_ctrl, &sink_ctrl, token.as_deref()),
                Err(_) => return,
            },
            recv(shutdown.receiver()) -> _ => return,
        }
    })
}

fn sink_options(config: &Config, until: ReadUntil) -> SinkOptions {
    SinkOptions {
        max_rows: config.batch.max_rows,
        max_bytes: config.batch.max_bytes,
        flush_interval: config.batch.flush_interval,
        min_insert_gap: config.batch.min_insert_gap,
        retry_initial: config.batch.retry_initial,
        retry_max: config.batch.retry_max,
        shutdown_timeout: config.service.shutdown_timeout,
        slow_insert: config.batch.slow_insert,
        parallel_inserts: config.batch.parallel_inserts,
        summaries: match until {
            ReadUntil::Shutdown => SummaryPolicy::WhileFlowing,
            ReadUntil::Drained => SummaryPolicy::WhenCaughtUp,
        },
    }
}
