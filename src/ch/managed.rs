//! Managed mode: the daemon runs `clickhouse-server` as a child process on its
//! own ports with a generated config, data under the state dir.
//!
//! The child is put in its own process group (a terminal's Ctrl-C must reach
//! only the daemon, which flushes before it stops the server) and gets
//! `PDEATHSIG=SIGTERM`, so it also goes away when the daemon is killed with
//! SIGKILL. A pid file lets the next start reap a server orphaned anyway. Tests
//! use the same code to run their real servers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// `clickhouse-server` binary.
    pub binary: PathBuf,
    /// Root for config, data, logs and pid file.
    pub dir: PathBuf,
    /// HTTP port on 127.0.0.1.
    pub http_port: u16,
    /// Native-protocol port on 127.0.0.1.
    pub tcp_port: u16,
    /// How long to wait until it answers.
    pub startup_timeout: Duration,
}

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// Preparing files or spawning failed.
    #[error("managed clickhouse ({binary}): {source}")]
    Io {
        /// The binary.
        binary: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The process exited before it answered.
    #[error("managed clickhouse exited during start-up ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// Exit status.
        status: String,
        /// End of its log.
        log_tail: String,
    },
    /// It did not answer in time.
    #[error("managed clickhouse did not answer on port {port} within {timeout_ms} ms; last log lines:\n{log_tail}")]
    Timeout {
        /// HTTP port.
        port: u16,
        /// The timeout.
        timeout_ms: u128,
        /// End of its log.
        log_tail: String,
    },
}

/// A running child `clickhouse-server`. Stopped on drop.
#[derive(Debug)]
pub struct ManagedServer {
    child: Option<Child>,
    opts: ManagedOptions,
}

impl ManagedServer {
    /// Writes the config, reaps an orphan from an earlier run, spawns the
    /// server and waits until `/ping` answers.
    pub fn start(opts: ManagedOptions) -> Result<ManagedServer, ManagedError> {
        let mut server = ManagedServer::spawn(opts)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// [`ManagedServer::start`] without the wait: several servers (a test's
    /// cluster) start side by side, then each is waited for. The server dies
    /// with the thread that spawned it (`PDEATHSIG`), so spawn from the
    /// thread that keeps it.
    pub fn spawn(mut opts: ManagedOptions) -> Result<ManagedServer, ManagedError> {
        // The server runs in its own folder: every path it is given is absolute.
        if let Ok(abs) = std::path::absolute(&opts.dir) {
            opts.dir = abs;
        }
        let io = |source| ManagedError::Io {
            binary: opts.binary.clone(),
            source,
        };
        for sub in ["data", "tmp", "user_files", "format_schemas"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(opts.dir.join(sub))
                .map_err(io)?;
        }
        reap_orphan(&opts.dir.join("server.pid"), opts.startup_timeout);
        let config = opts.dir.join("config.xml");
        std::fs::write(&config, server_config(&opts)).map_err(io)?;
        std::fs::write(opts.dir.join("users.xml"), USERS_XML).map_err(io)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(opts.dir.join("server.log"))
            .map_err(io)?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg(format!("--config-file={}", config.display()))
            .current_dir(&opts.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only marks this child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io)?;
        std::fs::write(opts.dir.join("server.pid"), child.id().to_string()).map_err(io)?;
        Ok(ManagedServer {
            child: Some(child),
            opts,
        })
    }

    /// Waits until the server answers `/ping` (up to the start-up timeout).
    pub fn wait_ready(&mut self) -> Result<(), ManagedError> {
        let deadline = Instant::now() + self.opts.startup_timeout;
        loop {
            if ping(self.opts.http_port) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(ManagedError::Exited {
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
            }
            if Instant::now() >= deadline {
                let log_tail = self.log_tail();
                self.stop();
                return Err(ManagedError::Timeout {
                    port: self.opts.http_port,
                    timeout_ms: self.opts.startup_timeout.as_millis(),
                    log_tail,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<http_port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.http_port)
    }

    /// The child's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The options it was started with.
    pub fn options(&self) -> &ManagedOptions {
        &self.opts
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.opts.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, wait up to 20 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(20));
            let _ = std::fs::remove_file(self.opts.dir.join("server.pid"));
        }
    }

    /// Stops and starts the server again on the same ports and data (tests use
    /// this to simulate an outage).
    pub fn restart(&mut self) -> Result<(), ManagedError> {
        self.stop();
        let fresh = ManagedServer::start(self.opts.clone())?;
        *self = fresh;
        Ok(())
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A server left running by a daemon that died without stopping it would hold
/// our ports and data dir. Stop it if the pid file names a live clickhouse.
fn reap_orphan(pid_file: &Path, grace: Duration) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("clickhouse") {
        let _ = std::fs::remove_file(pid_file);
        return;
    }
    tracing::warn!(
        event = "managed_clickhouse_orphan",
        pid,
        "stopping a clickhouse-server left by an earlier run"
    );
    // SAFETY: kill(2); the pid was checked to be a clickhouse process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        // Zombies of other parents linger in /proc until reaped; check state.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_file(pid_file);
}

/// True when `GET /ping` on 127.0.0.1:`port` answers `Ok.`.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.") && text.contains(" 200 ") && text.ends_with("Ok.\n")
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
"#;

fn server_config(o: &ManagedOptions) -> String {
    let d = o.dir.display();
    // Root element <yandex> is what 18.16 needs; newer servers still accept it.
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><console>1</console></logger>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"#,
        http = o.http_port,
        tcp = o.tcp_port,
    )
}
