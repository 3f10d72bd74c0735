//! Connecting to ClickHouse: the managed server when configured, the
//! client, the schema, the upstream token; and the read-only connection
//! reports use (the running daemon's server when it holds the state dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::ch::client::{ConnectOptions, Totals};
use crate::ch::managed::{ManagedOptions, ManagedServer};
use crate::ch::ChClient;
use crate::config::{ClickHouseMode, Config};
use crate::ops::state::StateDir;

/// A connected ClickHouse, with the managed server that backs it if any.
pub struct Connection {
    /// The client.
    pub client: ChClient,
    /// Kept alive for as long as the connection is used; stopped on drop.
    pub managed: Option<ManagedServer>,
    /// Runtime the client runs on.
    pub runtime: tokio::runtime::Runtime,
}

/// Starts managed ClickHouse if configured (its data lives in `state`, which
/// managed mode requires), connects, and ensures the schema.
pub fn connect(config: &Config, state: Option<&StateDir>) -> anyhow::Result<Connection> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tokenbridge-io")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ch = &config.clickhouse;
    let (url, managed) = match ch.mode {
        ClickHouseMode::Managed => {
            let state = state.context("managed clickhouse needs the state dir")?;
            let server = ManagedServer::start(ManagedOptions {
                binary: ch.server_binary.clone(),
                dir: state.path().join("clickhouse"),
                http_port: ch.managed_http_port,
                tcp_port: ch.managed_tcp_port,
                startup_timeout: ch.startup_timeout,
            })?;
            tracing::info!(event = "managed_clickhouse_started", url = %server.url(), pid = server.pid(), "managed clickhouse-server is up");
            (server.url(), Some(server))
        }
        ClickHouseMode::External => (ch.url.clone(), None),
    };
    let opts = ConnectOptions {
        compress: ch.compress_for(&url),
        send_basic: config.auth == crate::config::AuthConfig::Basic,
        token: token_manager(config),
        url,
        database: ch.database.clone(),
        user: ch.user.clone(),
        password: ch.password.clone(),
        request_timeout: ch.request_timeout,
        topology: match &ch.cluster {
            Some(c) => crate::ch::schema::Topology::Cluster(c.clone()),
            None => crate::ch::schema::Topology::Single,
        },
    };
    // An external server may come up after us: retry until the start-up timeout.
    let deadline = Instant::now() + ch.startup_timeout;
    let client = loop {
        match runtime.block_on(ChClient::connect(&opts)) {
            Ok(c) => break c,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tracing::warn!(event = "clickhouse_connect_failed", error = %e, "clickhouse not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e).context(format!("connecting to clickhouse at {}", opts.url)),
        }
    };
    runtime
        .block_on(client.ensure_schema())
        .context("creating the schema")?;
    tracing::info!(
        event = "clickhouse_connected",
        version = %client.info.version,
        cluster = ch.cluster.as_ref().map_or("", |c| c.name.as_str()),
        async_insert_disabled = client.info.knows_async_insert,
        database = %client.database(),
        "connected to clickhouse"
    );
    Ok(Connection {
        client,
        managed,
        runtime,
    })
}

/// The upstream token manager, in OAuth2 mode. Its cache file lives in the
/// state dir, so a restart (or a report) reuses a still-valid token.
pub fn token_manager(config: &Config) -> Option<Arc<crate::auth::token::TokenManager>> {
    let crate::config::AuthConfig::OAuth2(o) = &config.auth else {
        return None;
    };
    Some(crate::auth::token::TokenManager::new(
        Box::new(token_source(o)),
        crate::auth::token::TokenOptions {
            refresh_buffer: o.refresh_buffer,
            default_lifetime: o.default_lifetime,
            slow: o.slow_refresh,
            cache_file: Some(config.state.dir.join(TOKEN_CACHE_FILE)),
            ..crate::auth::token::TokenOptions::default()
        },
    ))
}

pub(super) fn token_source(
    o: &crate::config::OAuth2Config,
) -> crate::auth::oauth::ClientCredentials {
    crate::auth::oauth::ClientCredentials(o.clone())
}

/// The token cache file inside the state dir.
pub const TOKEN_CACHE_FILE: &str = "token.json";

/// A connection for read-only commands (reports). In managed mode, when a
/// daemon holds the state dir, its running server is used; otherwise the
/// managed server is started for the duration of the command.
pub fn connect_for_query(config: &Config) -> anyhow::Result<(Connection, Option<StateDir>)> {
    if config.clickhouse.mode == ClickHouseMode::Managed {
        match StateDir::open(&config.state.dir) {
            Ok(state) => {
                let conn = connect(config, Some(&state))?;
                return Ok((conn, Some(state)));
            }
            Err(crate::ops::state::StateError::Locked { .. }) => {
                let mut cfg = config.clone();
                cfg.clickhouse.mode = ClickHouseMode::External;
                cfg.clickhouse.url =
                    format!("http://127.0.0.1:{}", config.clickhouse.managed_http_port);
                cfg.clickhouse.user = "default".into();
                cfg.clickhouse.password = crate::secret::Secret::default();
                return Ok((connect(&cfg, None)?, None));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((connect(config, None)?, None))
}

/// Exact totals from ClickHouse.
pub fn totals(config: &Config) -> anyhow::Result<Totals> {
    let (conn, _state) = connect_for_query(config)?;
    let t = conn.runtime.block_on(conn.client.totals())?;
    Ok(t)
}
