//! Signals: SIGTERM/SIGINT stop gracefully (a second one exits at once),
//! SIGHUP reloads the config.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;
use crate::ops::shutdown::Shutdown;

/// First SIGTERM/SIGINT: graceful shutdown. A second one: exit at once (the
/// state on disk is always consistent, only in-flight work is lost and re-read).
/// SIGHUP (when `reload` is given): re-read the config file; a valid one is
/// sent to the pipeline, an invalid one is logged and the old one stays.
pub(super) fn install(
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
