//! SIGHUP: a new, already validated config applied to the running pipeline.
//! What can change at once is sent to the reader and the sink; what needs a
//! restart is named in a warning.

use crate::config::Config;
use crate::ingest::reader::ReaderCtrl;
use crate::sink::SinkOptions;

/// Applies what can change while running; names what needs a restart.
pub(super) fn apply(
    current: &mut Config,
    new: Config,
    reader: &crossbeam_channel::Sender<ReaderCtrl>,
    sink: &crossbeam_channel::Sender<SinkOptions>,
    token: Option<&crate::auth::token::TokenManager>,
) {
    let mut changed = Vec::new();
    match (&current.auth, &new.auth, token) {
        (a, b, _) if a == b => {}
        (crate::config::AuthConfig::OAuth2(_), crate::config::AuthConfig::OAuth2(o), Some(t)) => {
            // New credentials, endpoint or scope: new tokens from now on.
            t.replace_source(Box::new(super::connect::token_source(o)));
            changed.push("upstream.auth");
        }
        _ => {}
    }
    if new.sources() != current.sources() {
        let _ = reader.send(ReaderCtrl::SetSources(new.sources()));
        changed.push("watch.dirs");
    }
    if new.batch != current.batch || new.service != current.service {
        let _ = sink.send(super::sink_options(
            &new,
            crate::ingest::reader::ReadUntil::Shutdown,
        ));
        changed.push("batch");
    }
    if new.log.level != current.log.level {
        crate::ops::logging::set_level(new.log.level);
        changed.push("log.level");
    }
    let mut restart = Vec::new();
    if new.state != current.state {
        restart.push("state");
    }
    if new.clickhouse != current.clickhouse {
        restart.push("clickhouse");
    }
    if new.http != current.http {
        restart.push("http");
    }
    if new.dedup != current.dedup {
        restart.push("dedup");
    }
    if new.analysis != current.analysis {
        restart.push("analysis");
    }
    if std::mem::discriminant(&new.auth) != std::mem::discriminant(&current.auth) {
        restart.push("upstream.auth.mode");
    }
    if new.watch.rescan_interval != current.watch.rescan_interval
        || new.watch.max_line_bytes != current.watch.max_line_bytes
        || new.watch.read_chunk_bytes != current.watch.read_chunk_bytes
        || new.watch.validate_all_lines != current.watch.validate_all_lines
        || new.log.format != current.log.format
    {
        restart.push("watch/log.format");
    }
    if !restart.is_empty() {
        tracing::warn!(event = "config_reload_needs_restart", sections = ?restart, "these changes take effect after a restart");
    }
    tracing::info!(event = "config_reloaded", file = %new.source.display(), changed = ?changed, "configuration reloaded");
    *current = new;
}
