//! Shared integration-test harness: a real `clickhouse-server` per test (own
//! ports, temp data dir, started with the same code as managed mode), the real
//! `tokenbridge` binary, and helpers to read results back with SQL.

#![allow(dead_code)]

pub mod cluster;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokenbridge::ch::client::{ConnectOptions, Totals};
use tokenbridge::ch::managed::{ManagedOptions, ManagedServer};
use tokenbridge::ch::ChClient;
use tokenbridge::secret::Secret;
use tokenbridge::testkit::corpus::Tokens;

/// A free TCP port on 127.0.0.1 for a server a test starts later.
///
/// Chosen outside the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): a port from `bind(":0")` is released
/// before the server binds it, and in that gap any outgoing connection (a
/// ClickHouse node to ZooKeeper or to another node, a client) may be given
/// it as its local port; CI saw a cluster node fail with "Address already
/// in use" that way. Below the range only explicit binds take a port, so a
/// process-wide counter (no two calls here return the same port) and a
/// bind check (another process's server) are enough. Falls back to
/// `bind(":0")` when the range leaves no room.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = ephemeral_range();
    // The room outside the ephemeral range, from 10000 up (below that
    // sit well-known services' ports).
    let room: Vec<(u32, u32)> = [(10_000, low), (high + 1, 65_536)]
        .into_iter()
        .filter(|(a, b)| b > a && b - a >= 1_000)
        .collect();
    let total: u32 = room.iter().map(|(a, b)| b - a).sum();
    if total > 0 {
        // Each test binary starts at its own place (by pid), so that two
        // binaries run at once rarely probe the same ports.
        let start = std::process::id().wrapping_mul(7919) % total;
        for _ in 0..total.min(5_000) {
            let mut i = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % total;
            let mut port = 0;
            for (a, b) in &room {
                if i < b - a {
                    port = a + i;
                    break;
                }
                i -= b - a;
            }
            let port = port as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The kernel's ephemeral port range (the Linux default if unreadable).
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// A real ClickHouse for one test.
pub struct TestClickHouse {
    pub server: ManagedServer,
    pub dir: tempfile::TempDir,
}

impl TestClickHouse {
    pub fn start() -> TestClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let mut last = None;
        for _ in 0..3 {
            let opts = ManagedOptions {
                binary: PathBuf::from("/usr/sbin/clickhouse-server"),
                dir: dir.path().join("ch"),
                http_port: free_port(),
                tcp_port: free_port(),
                startup_timeout: Duration::from_secs(60),
            };
            match ManagedServer::start(opts) {
                Ok(server) => return TestClickHouse { server, dir },
                Err(e) => last = Some(e),
            }
        }
        panic!("cannot start clickhouse-server: {}", last.unwrap());
    }

    /// A server on given ports (e.g. ports a daemon already tries to reach).
    pub fn start_on(http_port: u16, tcp_port: u16) -> TestClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let server = ManagedServer::start(ManagedOptions {
            binary: PathBuf::from("/usr/sbin/clickhouse-server"),
            dir: dir.path().join("ch"),
            http_port,
            tcp_port,
            startup_timeout: Duration::from_secs(60),
        })
        .unwrap();
        TestClickHouse { server, dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn http_port(&self) -> u16 {
        self.server.options().http_port
    }

    /// A client on `db` (schema ensured).
    pub fn client(&self, db: &str) -> (tokio::runtime::Runtime, ChClient) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = rt
            .block_on(ChClient::connect(&ConnectOptions {
                url: self.url(),
                database: db.to_string(),
                user: "default".into(),
                password: Secret::default(),
                request_timeout: Duration::from_secs(30),
                compress: false,
                send_basic: true,
                token: None,
                topology: tokenbridge::ch::schema::Topology::Single,
            }))
            .unwrap();
        rt.block_on(c.ensure_schema()).unwrap();
        (rt, c)
    }

    pub fn totals(&self, db: &str) -> Totals {
        let (rt, c) = self.client(db);
        rt.block_on(c.totals()).unwrap()
    }

    /// Deduplicated totals grouped by a column of `messages`.
    pub fn totals_by(&self, db: &str, column: &str) -> BTreeMap<String, Tokens> {
        let (rt, c) = self.client(db);
        let sql = format!(
            "SELECT toString({column}), sum(input_tokens), sum(output_tokens), sum(cache_creation_input_tokens), \
             sum(cache_read_input_tokens), count() FROM {db}.messages FINAL GROUP BY {column}"
        );
        let rows: Vec<(String, u64, u64, u64, u64, u64)> =
            rt.block_on(c.raw().query(&sql).fetch_all()).unwrap();
        rows.into_iter()
            .map(|(k, i, o, cc, cr, n)| {
                (
                    k,
                    Tokens {
                        input_tokens: i,
                        output_tokens: o,
                        cache_creation_tokens: cc,
                        cache_read_tokens: cr,
                        total_tokens: i + o + cc + cr,
                        messages: n,
                    },
                )
            })
            .collect()
    }

    /// Rows inserted twice with the same key and version: must always be 0.
    pub fn duplicate_rows(&self, db: &str) -> u64 {
        let (rt, c) = self.client(db);
        let sql = format!(
            "SELECT count() FROM (SELECT key, version, count() AS c FROM {db}.messages GROUP BY key, version HAVING c > 1)"
        );
        rt.block_on(c.raw().query(&sql).fetch_one::<u64>()).unwrap()
    }

    /// Raw row count, superseded rows included.
    pub fn raw_rows(&self, db: &str) -> u64 {
        let (rt, c) = self.client(db);
        rt.block_on(
            c.raw()
                .query(&format!("SELECT count() FROM {db}.messages"))
                .fetch_one::<u64>(),
        )
        .unwrap()
    }
}

/// The address the daemon's HTTP endpoint bound (from its `http_listening` event).
pub fn http_addr(d: &Daemon) -> Option<String> {
    // The latest: a log shared by restarts names every run's address.
    d.events()
        .iter()
        .rev()
        .find(|e| e["event"] == "http_listening")
        .and_then(|e| e["addr"].as_str().map(String::from))
}

/// A plain HTTP/1.0 GET; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A config file for the binary against an external test server.
pub fn write_config(
    dir: &Path,
    ch: &TestClickHouse,
    db: &str,
    watch: &[&Path],
    extra: &str,
) -> PathBuf {
    write_config_with(dir, ch, db, watch, "", extra)
}

/// [`write_config`] with extra keys for the `[watch]` section.
pub fn write_config_with(
    dir: &Path,
    ch: &TestClickHouse,
    db: &str,
    watch: &[&Path],
    watch_extra: &str,
    extra: &str,
) -> PathBuf {
    let dirs: Vec<String> = watch
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = format!(
        r#"[watch]
dirs = [{dirs}]
rescan_interval_ms = 2000
{watch_extra}

[state]
dir = {state:?}

[clickhouse]
mode = "external"
url = "{url}"
database = "{db}"

[log]
level = "debug"
format = "json"

[http]
listen = "127.0.0.1:0"
{extra}
"#,
        dirs = dirs.join(", "),
        state = dir.join("state").display().to_string(),
        url = ch.url(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
}

/// The binary as an unprivileged user can run it: as root, a copy in a
/// world-readable temp folder run as `nobody` (the checkout may sit in a
/// folder `nobody` cannot enter); otherwise the binary as is.
pub fn bin_unprivileged(keep: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if unsafe { libc::geteuid() } != 0 {
        return bin();
    }
    let dir = keep.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("tokenbridge");
    if !copy.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_tokenbridge"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new(copy);
    cmd.uid(65534).gid(65534);
    cmd
}

/// Runs `tokenbridge backfill --json` and returns its parsed summary.
pub fn backfill(config: &Path, paths: &[&Path]) -> serde_json::Value {
    let out: Output = bin()
        .arg("backfill")
        .arg("--json")
        .arg("--config")
        .arg(config)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backfill failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad summary {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A running daemon whose stderr (JSON logs) goes to a file.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        Daemon::start_with_env(config, log, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(config: &Path, log: &Path, env: &[(&str, &Path)]) -> Daemon {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = bin()
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Parsed JSON log lines.
    pub fn events(&self) -> Vec<serde_json::Value> {
        events_of(&self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Appends bytes to a file, creating it and its folders.
pub fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes.as_ref()).unwrap();
}

/// One usage line (with its newline) of `session`, dedup key
/// `m-{session}-{id}|r-{session}-{id}`. Token values are written as given, so
/// tests can pass malformed ones (`-1`, `1.5`, `"7"`).
pub fn usage_line(
    session: &str,
    id: impl std::fmt::Display,
    input: impl std::fmt::Display,
    output: impl std::fmt::Display,
) -> String {
    format!(
        "{{\"type\":\"assistant\",\"sessionId\":\"{session}\",\"timestamp\":\"2025-09-01T10:00:00Z\",\"requestId\":\"r-{session}-{id}\",\"message\":{{\"id\":\"m-{session}-{id}\",\"model\":\"claude-sonnet-4-20250514\",\"usage\":{{\"input_tokens\":{input},\"output_tokens\":{output}}}}}}}\n"
    )
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The JSON events of a daemon's log file (the file may outlive the daemon).
pub fn events_of(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A generated corpus of about `target_bytes` under `dir` (default spec
/// otherwise), and its truth.
pub fn generated_corpus(
    dir: &Path,
    seed: u64,
    target_bytes: u64,
) -> tokenbridge::testkit::corpus::Expected {
    tokenbridge::testkit::corpus::write_corpus(
        dir,
        &tokenbridge::testkit::corpus::Spec {
            seed,
            target_bytes,
            ..tokenbridge::testkit::corpus::Spec::default()
        },
    )
    .unwrap()
}

/// Runs `backfill` and SIGKILLs it after `delay` if still running.
pub fn backfill_killed_after(config: &Path, delay: Duration) -> bool {
    let mut child = bin()
        .arg("backfill")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    killed
}

/// A counter or gauge from the Prometheus text (`name` with its labels as
/// written, e.g. `tokenbridge_scans_total{kind="full"}`).
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}
