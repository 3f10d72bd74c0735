//! Benchmark: tokenbridge backfill against ccusage 20.0.24 on the same
//! generated corpus in the same run, parse-only throughput, and the latency
//! from appending a line to seeing it in ClickHouse.
//!
//! `cargo bench --bench throughput` (after `scripts/setup.sh`, which installs
//! ccusage into `.tools/ccusage`). Environment: `TB_BENCH_MB` (corpus size,
//! default 200), `TB_BENCH_ROUNDS` (default 5), `TB_BENCH_LATENCY_LINES`
//! (default 200). Results are printed and written to `target/bench/results.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokenbridge::ch::client::{ConnectOptions, Totals};
use tokenbridge::ch::managed::{ManagedOptions, ManagedServer};
use tokenbridge::ch::ChClient;
use tokenbridge::corpus::{self, Expected, Spec};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wall time and peak RSS (bytes) of a child process, from wait4.
struct Run {
    wall: Duration,
    max_rss: u64,
    stdout: Vec<u8>,
}

// The child is reaped with wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> Run {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let mut stdout_pipe = child.stdout.expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout_pipe, &mut buf).ok();
        buf
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; wait4 fills `usage`.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(rc, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    Run {
        wall,
        max_rss: usage.ru_maxrss as u64 * 1024,
        stdout: reader.join().unwrap(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ccusage_binary(repo: &Path) -> PathBuf {
    let p = repo.join(".tools/ccusage/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage");
    assert!(
        p.exists(),
        "ccusage not installed: run scripts/setup.sh ({} missing)",
        p.display()
    );
    p
}

fn client(url: &str, db: &str) -> (tokio::runtime::Runtime, ChClient) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt
        .block_on(ChClient::connect(&ConnectOptions {
            url: url.to_string(),
            database: db.to_string(),
            user: "default".into(),
            password: Default::default(),
            request_timeout: Duration::from_secs(30),
            compress: false,
        }))
        .unwrap();
    rt.block_on(c.ensure_schema()).unwrap();
    (rt, c)
}

fn write_config(dir: &Path, url: &str, db: &str, watch: &Path) -> PathBuf {
    let path = dir.join(format!("{db}.toml"));
    std::fs::write(
        &path,
        format!(
            "[watch]\ndirs = [{:?}]\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"{url}\"\ndatabase = \"{db}\"\n[log]\nlevel = \"warn\"\nformat = \"json\"\n[http]\nenabled = false\n",
            watch.display().to_string(),
            dir.join(format!("{db}-state")).display().to_string()
        ),
    )
    .unwrap();
    path
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: benchmark");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = repo.join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mb = env_num("TB_BENCH_MB", 200);
    let rounds = env_num("TB_BENCH_ROUNDS", 5) as usize;
    let tb = env!("CARGO_BIN_EXE_tokenbridge");
    let ccusage = ccusage_binary(repo);

    // Corpus: every response has a requestId, so ccusage's dedup and ours agree.
    let corpus_dir = out_dir.join(format!("corpus-{mb}mb"));
    let spec = Spec {
        seed: 42,
        target_bytes: mb << 20,
        missing_request_id: 0.0,
        ..Spec::default()
    };
    let expected: Expected = match std::fs::read(corpus_dir.join("expected.json")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => {
            let _ = std::fs::remove_dir_all(&corpus_dir);
            corpus::write_corpus(&corpus_dir, &spec).unwrap()
        }
    };
    let bytes = expected.bytes as f64;
    println!(
        "corpus: {:.1} MB, {} files, {} messages",
        bytes / 1e6,
        expected.files,
        expected.totals.messages
    );

    let ch_dir = tempfile::tempdir().unwrap();
    let server = ManagedServer::start(ManagedOptions {
        binary: "/usr/sbin/clickhouse-server".into(),
        dir: ch_dir.path().join("ch"),
        http_port: free_port(),
        tcp_port: free_port(),
        startup_timeout: Duration::from_secs(60),
    })
    .unwrap();
    let url = server.url();
    let work = tempfile::tempdir().unwrap();

    // Warm the page cache once for both tools.
    for entry in walk(&corpus_dir) {
        let _ = std::fs::read(entry);
    }

    let mut cc_wall = Vec::new();
    let mut cc_rss = Vec::new();
    let mut tb_wall = Vec::new();
    let mut tb_rss = Vec::new();
    let mut scan_wall = Vec::new();
    let mut scan_rss = Vec::new();
    for round in 0..rounds {
        let r = run_measured(
            Command::new(&ccusage)
                .args(["claude", "daily", "--json", "--offline"])
                .env("CLAUDE_CONFIG_DIR", &corpus_dir),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(
            v["totals"]["totalTokens"], expected.totals.total_tokens,
            "ccusage totals"
        );
        cc_wall.push(r.wall.as_secs_f64());
        cc_rss.push(r.max_rss as f64);

        // A fresh database and state each round: everything is ingested.
        let db = format!("bench_{round}");
        let cfg = write_config(work.path(), &url, &db, &corpus_dir);
        let r = run_measured(
            Command::new(tb)
                .arg("backfill")
                .arg("--json")
                .arg("--config")
                .arg(&cfg),
        );
        let (rt, c) = client(&url, &db);
        let t: Totals = rt.block_on(c.totals()).unwrap();
        assert_eq!(
            t.total_tokens, expected.totals.total_tokens,
            "tokenbridge totals"
        );
        assert_eq!(t.messages, expected.totals.messages, "tokenbridge messages");
        tb_wall.push(r.wall.as_secs_f64());
        tb_rss.push(r.max_rss as f64);

        // The same report straight from files, no ClickHouse.
        let r = run_measured(
            Command::new(tb)
                .arg("scan")
                .arg(&corpus_dir)
                .args(["daily", "--json"]),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(
            v["totals"]["totalTokens"], expected.totals.total_tokens,
            "scan totals"
        );
        scan_wall.push(r.wall.as_secs_f64());
        scan_rss.push(r.max_rss as f64);
        println!(
            "round {round}: ccusage {:.3}s {:.0}MB | tokenbridge {:.3}s {:.0}MB",
            cc_wall[round],
            cc_rss[round] / 1e6,
            tb_wall[round],
            tb_rss[round] / 1e6
        );
    }
    let (ccw, tbw, scw) = (median(cc_wall), median(tb_wall), median(scan_wall));
    let cc_peak = cc_rss.iter().cloned().fold(0.0, f64::max);
    let tb_peak = tb_rss.iter().cloned().fold(0.0, f64::max);
    let scan_peak = scan_rss.iter().cloned().fold(0.0, f64::max);

    // Parse only: all files in memory, classified in parallel (no ClickHouse).
    let files: Vec<(PathBuf, Vec<u8>)> = walk(&corpus_dir)
        .into_iter()
        .map(|p| {
            let d = std::fs::read(&p).unwrap();
            (p, d)
        })
        .collect();
    let parse_mbps = |threads: usize| -> f64 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut best = 0f64;
        for _ in 0..3 {
            let mut copies: Vec<(PathBuf, Vec<u8>)> = files.clone();
            let started = Instant::now();
            let usage: u64 = pool.install(|| {
                use rayon::prelude::*;
                copies
                    .par_iter_mut()
                    .map(|(p, d)| {
                        let ctx = tokenbridge::record::SourceContext::from_path(p);
                        let end = tokenbridge::lines::complete_prefix_len(d);
                        d.resize(d.len() + tokenbridge::parse::PADDING, 0);
                        tokenbridge::reader::parse_lines(d, end, 0, &ctx, 64 << 20)
                            .counts
                            .usage
                    })
                    .sum()
            });
            let secs = started.elapsed().as_secs_f64();
            assert!(usage > 0);
            best = best.max(bytes / 1e6 / secs);
        }
        best
    };
    let parse1 = parse_mbps(1);
    let parse_all = parse_mbps(rayon::current_num_threads());

    // Latency with default settings: a line appended to a watched file until
    // it is queryable.
    let n_lines = env_num("TB_BENCH_LATENCY_LINES", 200) as usize;
    let watch = work.path().join("live");
    std::fs::create_dir_all(watch.join("projects/p")).unwrap();
    let cfg = write_config(work.path(), &url, "bench_live", &watch);
    let mut daemon = Command::new(tb)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (rt, c) = client(&url, "bench_live");
    std::thread::sleep(Duration::from_secs(1));
    let file = watch.join("projects/p/live.jsonl");
    let mut lat = Vec::new();
    for i in 0..n_lines {
        let line = format!(
            "{{\"type\":\"assistant\",\"sessionId\":\"live\",\"timestamp\":\"2025-09-01T10:00:00Z\",\"requestId\":\"r{i}\",\"message\":{{\"id\":\"m{i}\",\"model\":\"claude-sonnet-4-20250514\",\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}}}\n"
        );
        let started = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
        drop(f);
        let q = format!("SELECT count() FROM bench_live.messages WHERE key = 'm{i}|r{i}'");
        loop {
            let n: u64 = rt.block_on(c.raw().query(&q).fetch_one()).unwrap();
            if n == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "line {i} never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        lat.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let _ = daemon.wait();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];

    let report = format!(
        "| measure | ccusage 20.0.24 | tokenbridge |\n|---|---|---|\n\
         | backfill wall time, median of {rounds} ({:.0} MB, {} files) | {ccw:.3} s | {tbw:.3} s |\n\
         | throughput | {:.0} MB/s | {:.0} MB/s ({:.2}x) |\n\
         | peak RSS (max over rounds) | {:.1} MB | {:.1} MB |\n\
         | `scan daily --json` vs `ccusage daily --json`, median wall / throughput / peak RSS | {ccw:.3} s | {scw:.3} s / {:.0} MB/s ({:.2}x) / {:.1} MB |\n\
         | parse only, 1 thread / all threads | | {parse1:.0} / {parse_all:.0} MB/s |\n\
         | append → queryable latency, {n_lines} lines: p50 / p99 / max | | {:.0} / {:.0} / {:.0} ms |\n",
        bytes / 1e6,
        expected.files,
        bytes / 1e6 / ccw,
        bytes / 1e6 / tbw,
        ccw / tbw,
        cc_peak / 1e6,
        tb_peak / 1e6,
        bytes / 1e6 / scw,
        ccw / scw,
        scan_peak / 1e6,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
    );
    println!("\n{report}");
    std::fs::write(out_dir.join("results.md"), &report).unwrap();
    drop(server);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    tokenbridge::discovery::scan(&[dir.to_path_buf()]).files
}
