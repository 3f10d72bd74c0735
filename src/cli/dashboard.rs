//! `tokenbridge dashboard`: the dashboard on its own, for a ClickHouse that
//! no local daemon writes to, or (`--files`) straight from transcript files
//! with no database at all. Serves until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dashboard::{access_for, Dashboard, DataSource};
use crate::ingest::discovery::Source;
use crate::ops::shutdown::Shutdown;

/// Serves the dashboard on `listen`.
pub(super) fn run(
    config_path: &Path,
    listen: SocketAddr,
    files: Vec<PathBuf>,
    agent: crate::format::agent::Agent,
) -> anyhow::Result<i32> {
    crate::ops::logging::init(
        crate::config::LogLevel::Info,
        crate::config::LogFormat::Auto,
    );
    let shutdown = Shutdown::new();
    super::signals::install(shutdown.clone(), None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (source, prices, mode, token, _conn) = if files.is_empty() {
        let c = super::load_config(config_path)?;
        let (conn, state) = crate::pipeline::connect_for_query(&c)?;
        let prices = match &c.price_file {
            Some(f) => crate::price::PriceTable::with_overrides(f)?,
            None => crate::price::PriceTable::embedded(),
        };
        (
            DataSource::ClickHouse(Box::new(conn.client.clone())),
            prices,
            c.cost_mode,
            c.dashboard.token.clone(),
            Some((conn, state)),
        )
    } else {
        let sources: Vec<Source> = files.into_iter().map(|p| Source::new(agent, p)).collect();
        (
            DataSource::Files {
                sources,
                max_line: 64 << 20,
                attribution: crate::ingest::attribution::Policy::default(),
            },
            crate::price::PriceTable::embedded(),
            crate::price::CostMode::default(),
            None,
            None,
        )
    };
    let dashboard = Arc::new(Dashboard::new(
        source,
        prices,
        mode,
        access_for(&listen, token),
        None,
    ));
    let stop = shutdown.clone();
    let bound = runtime.block_on(crate::dashboard::serve(listen, dashboard, async move {
        let rx = stop.receiver().clone();
        let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
    }))?;
    tracing::info!(event = "http_listening", addr = %bound, "serving the dashboard");
    eprintln!("dashboard: http://{bound}/");
    let _ = shutdown.receiver().recv();
    Ok(0)
}
