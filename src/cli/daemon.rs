//! `tokenbridge run`: the daemon, until SIGTERM/SIGINT, reloading its config
//! on SIGHUP.

use std::path::Path;
use std::sync::Arc;

use crate::ops::metrics::Metrics;
use crate::ops::shutdown::Shutdown;
use crate::pipeline::{self, Mode};
use crate::sink::SinkExit;

/// Runs the daemon with the config at `config_path`.
pub(super) fn run(config_path: &Path) -> anyhow::Result<i32> {
    let c = super::load_config(config_path)?;
    crate::ops::logging::init(c.log.level, c.log.format);
    let shutdown = Shutdown::new();
    let (reload_tx, reload_rx) = crossbeam_channel::unbounded();
    super::signals::install(
        shutdown.clone(),
        Some((config_path.to_path_buf(), reload_tx)),
    )?;
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
