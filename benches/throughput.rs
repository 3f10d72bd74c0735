//! Benchmark: what a user lives with, measured on the real binary against a
//! real ClickHouse, next to ccusage 20.0.24 where it has a counterpart.
//!
//! `cargo bench --bench throughput` (after `scripts/setup.sh`, which installs
//! ccusage into `.tools/ccusage`). Sections, all by default, or a comma list
//! in `TB_BENCH_ONLY`:
//! - `backfill`: backfills of a 210 MB / ~700-file corpus and a 1 GB /
//!   ~4,500-file corpus (many small sessions), each round beside ccusage:
//!   wall, throughput, cores used, peak RSS; plus scan, enhanced analysis
//!   and parse-only figures on the 210 MB corpus;
//! - `idle`: CPU of a daemon with 10,000 and 100,000 ingested files and
//!   nothing written (20 s windows), RSS;
//! - `live`: 10,000 watched files, 50 sessions appending one line per second
//!   each: append → queryable latency, CPU per MB appended; then the same
//!   sessions appending blocks of lines at volume, and a `backfill` of the
//!   same lines: CPU per MB of each;
//! - `startup`: a daemon's start-up with 1M and 5M rows already in
//!   ClickHouse: time to its first insert, RSS;
//! - `mixed`: every agent at once (Claude Code, Codex and the seven others,
//!   generated with the traps ccusage reads right): backfill and scan beside
//!   ccusage's all-agents `daily`, each checked against the truth;
//! - `cluster`: a real 2 × 2 cluster (ZooKeeper + four servers): aggregate
//!   rows/s of 1, 2 and 4 daemons at once, and a new host's start-up when
//!   the cluster holds 5M rows of other hosts.
//!
//! Environment: `TB_BENCH_MB` (small corpus size, default 200),
//! `TB_BENCH_BIG_MB` (default 1000), `TB_BENCH_ROUNDS` (default 5),
//! `TB_BENCH_IDLE_SECONDS` (the idle window, default 20; a longer one holds
//! the periodic rescans' steady state, backed off, not only the first),
//! `TB_BENCH_LIVE_SECONDS` (default 60), `TB_BENCH_LIVE_SUSTAINED_SECONDS`
//! (default 20), `TB_BENCH_LIVE_SUSTAINED_LINES` (lines per write, default
//! 20), `TB_BENCH_LIVE_ROUNDS` (sustained phases, each followed by a backfill
//! of the same lines, default 3), `TB_BENCH_MIXED_MB` (Claude Code and Codex each; the seven others
//! get a fifth of it each, default 50), `TB_BENCH_CLUSTER_ROWS_PER_DAEMON`
//! (default 200,000), `TB_BENCH_CLUSTER_ROWS` (other hosts' rows, default
//! 5,000,000). Results are printed and written to
//! `target/bench/results.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// The integration tests' harness: a real clickhouse-server on free ports.
#[path = "../tests/common/mod.rs"]
mod common;

use common::TestClickHouse;
use tokenbridge::ch::client::Totals;
use tokenbridge::testkit::corpus::Expected;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Wall time, CPU time and peak RSS (bytes) of a child process, from wait4.
struct Run {
    wall: Duration,
    /// User + system CPU seconds.
    cpu: f64,
    max_rss: u64,
    stdout: Vec<u8>,
}

impl Run {
    /// Cores used on average: CPU time over wall time.
    fn cores(&self) -> f64 {
        self.cpu / self.wall.as_secs_f64()
    }
}

/// Runs `cmd` to its end, measured (stderr discarded).
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
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss: usage.ru_maxrss as u64 * 1024,
        stdout: reader.join().unwrap(),
    }
}

/// `tokenbridge backfill --json` with `cfg`, measured; the database must then
/// hold the generator's truth. Returns the run and its JSON summary.
fn measured_backfill(
    tb: &str,
    cfg: &Path,
    ch: &TestClickHouse,
    db: &str,
    expected: &Expected,
) -> (Run, serde_json::Value) {
    let r = run_measured(
        Command::new(tb)
            .arg("backfill")
            .arg("--json")
            .arg("--config")
            .arg(cfg),
    );
    let (rt, c) = ch.client(db);
    let t: Totals = rt.block_on(c.totals()).unwrap();
    assert_eq!(
        (t.total_tokens, t.messages),
        (expected.totals.total_tokens, expected.totals.messages),
        "tokenbridge totals in {db}"
    );
    let v = serde_json::from_slice(&r.stdout).unwrap();
    (r, v)
}

/// `tokenbridge scan CORPUS daily --json ARGS...`, measured; its totals must
/// be the generator's truth.
fn measured_scan(
    tb: &str,
    corpus: &Path,
    args: &[&str],
    expected: &Expected,
) -> (Run, serde_json::Value) {
    let r = run_measured(
        Command::new(tb)
            .arg("scan")
            .arg(corpus)
            .args(["daily", "--json"])
            .args(args),
    );
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        v["totals"]["totalTokens"], expected.totals.total_tokens,
        "scan totals {args:?}"
    );
    (r, v)
}

/// The least and the greatest of `v`.
fn spread(v: &[f64]) -> (f64, f64) {
    (
        v.iter().cloned().fold(f64::MAX, f64::min),
        v.iter().cloned().fold(0.0, f64::max),
    )
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

/// A config for database `db` logging at `warn`; `watch_extra` goes into
/// `[watch]`, `extra` after the last section.
fn write_config(
    dir: &Path,
    url: &str,
    db: &str,
    watch: &Path,
    watch_extra: &str,
    extra: &str,
) -> PathBuf {
    write_config_at(dir, url, db, watch, watch_extra, extra, "warn")
}

/// [`write_config`] logging at `level`.
fn write_config_at(
    dir: &Path,
    url: &str,
    db: &str,
    watch: &Path,
    watch_extra: &str,
    extra: &str,
    level: &str,
) -> PathBuf {
    let path = dir.join(format!("{db}.toml"));
    std::fs::write(
        &path,
        format!(
            "[watch]\ndirs = [{:?}]\n{watch_extra}\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"{url}\"\ndatabase = \"{db}\"\n[log]\nlevel = \"{level}\"\nformat = \"json\"\n[http]\nenabled = false\n{extra}",
            watch.display().to_string(),
            dir.join(format!("{db}-state")).display().to_string()
        ),
    )
    .unwrap();
    path
}

/// The generator's corpus in `dir` (made with `args` when missing or written
/// by an older generator), and its truth.
fn corpus(dir: &Path, args: &[&str]) -> Expected {
    let cached = std::fs::read(dir.join("expected.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Expected>(&b).ok());
    if let Some(e) = cached {
        return e;
    }
    let _ = std::fs::remove_dir_all(dir);
    // Generated by the generator binary, not in this process: a child's peak
    // RSS (wait4's ru_maxrss) would otherwise include this process's memory
    // from before the child's exec.
    let st = Command::new(env!("CARGO_BIN_EXE_tokenbridge-gen"))
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "corpus generation failed");
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

/// Which sections run (`TB_BENCH_ONLY`, default all).
fn wanted(section: &str) -> bool {
    std::env::var("TB_BENCH_ONLY")
        .map(|v| v.split(',').any(|s| s.trim() == section))
        .unwrap_or(true)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: benchmark");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = repo.join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let ch = TestClickHouse::start();
    let mut report = String::new();
    if wanted("backfill") {
        report += &backfill_section(repo, &out_dir, &ch);
    }
    if wanted("idle") {
        report += &idle_section(&ch);
    }
    if wanted("live") {
        report += &live_section(&ch);
    }
    if wanted("startup") {
        report += &startup_section(&out_dir, &ch);
    }
    if wanted("mixed") {
        report += &mixed_section(repo, &out_dir, &ch);
    }
    if wanted("cluster") {
        report += &cluster_section(&out_dir, &ch);
    }
    println!("\n{report}");
    std::fs::write(out_dir.join("results.md"), &report).unwrap();
    drop(ch);
}

/// Medians and spread of one tool's runs.
#[derive(Default)]
struct Runs {
    wall: Vec<f64>,
    cores: Vec<f64>,
    rss: Vec<f64>,
    cpu_per_mb: Vec<f64>,
}

impl Runs {
    fn add(&mut self, r: &Run, mb: f64) {
        self.wall.push(r.wall.as_secs_f64());
        self.cores.push(r.cores());
        self.rss.push(r.max_rss as f64);
        self.cpu_per_mb.push(r.cpu * 1000.0 / mb);
    }
    fn wall(&self) -> f64 {
        median(self.wall.clone())
    }
    fn cores(&self) -> f64 {
        median(self.cores.clone())
    }
    fn peak_mb(&self) -> f64 {
        self.rss.iter().cloned().fold(0.0, f64::max) / 1e6
    }
    fn cpu_ms_per_mb(&self) -> f64 {
        median(self.cpu_per_mb.clone())
    }
}

/// ccusage and tokenbridge's backfill (default, and `validate_all_lines =
/// false`) on one corpus, round after round. Returns the table rows and
/// tokenbridge's median CPU ms per MB.
fn compare_backfills(
    label: &str,
    corpus_dir: &Path,
    expected: &Expected,
    rounds: usize,
    ccusage: &Path,
    ch: &TestClickHouse,
) -> (String, f64) {
    let tb = env!("CARGO_BIN_EXE_tokenbridge");
    let mb = expected.bytes as f64 / 1e6;
    let work = tempfile::tempdir().unwrap();
    // Warm the page cache once for both tools.
    for entry in walk(corpus_dir) {
        let _ = std::fs::read(entry);
    }
    let (mut cc, mut tbr, mut fast) = (Runs::default(), Runs::default(), Runs::default());
    let mut acked = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let r = run_measured(
            Command::new(ccusage)
                .args(["claude", "daily", "--json", "--offline"])
                .env("CLAUDE_CONFIG_DIR", corpus_dir),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(
            v["totals"]["totalTokens"], expected.totals.total_tokens,
            "ccusage totals"
        );
        cc.add(&r, mb);
        let cc_wall = r.wall.as_secs_f64();

        // A fresh database and state each round: everything is ingested.
        let db = format!("bench_{label}_{round}");
        let cfg = write_config(work.path(), &ch.url(), &db, corpus_dir, "", "");
        let (r, v) = measured_backfill(tb, &cfg, ch, &db, expected);
        tbr.add(&r, mb);
        ratios.push(cc_wall / r.wall.as_secs_f64());
        // Files to usage rows acknowledged: the wall time less what the run
        // did after its last insert (naive sums, checkpoints, summaries).
        let after = v["afterLastCommitMs"].as_f64().unwrap() / 1000.0;
        acked.push(r.wall.as_secs_f64() - after);

        let db = format!("bench_{label}_fast_{round}");
        let cfg = write_config(
            work.path(),
            &ch.url(),
            &db,
            corpus_dir,
            "validate_all_lines = false",
            "",
        );
        let (r, _) = measured_backfill(tb, &cfg, ch, &db, expected);
        fast.add(&r, mb);
        println!(
            "{label} round {round}: ccusage {cc_wall:.3}s | backfill {:.3}s {:.2} cores {:.0}MB | usage-only {:.3}s",
            tbr.wall[round],
            tbr.cores[round],
            tbr.rss[round] / 1e6,
            fast.wall[round],
        );
    }
    let (lo, hi) = spread(&ratios);
    let ccw = cc.wall();
    let rows = format!(
        "| {label}: {mb:.0} MB, {} files, {} messages, median of {rounds} | {ccw:.3} s, {:.0} MB/s, {:.2} cores, {:.1} MB | {:.3} s, {:.0} MB/s (**{:.2}x**), {:.2} cores, {:.1} MB |\n\
         | {label}: per-round ratio ccusage / backfill, median (min–max) | | {:.2}x ({lo:.2}–{hi:.2}x) |\n\
         | {label}: files → usage rows acknowledged (wall less `afterLastCommitMs`) | | {:.3} s ({:.2}x) |\n\
         | {label}: backfill with `validate_all_lines = false` (ccusage's choice) | | {:.3} s, {:.0} MB/s ({:.2}x), {:.2} cores, {:.1} MB |\n\
         | {label}: CPU per MB (all threads) | {:.2} ms | {:.2} ms |\n",
        expected.files,
        expected.totals.messages,
        mb / ccw,
        cc.cores(),
        cc.peak_mb(),
        tbr.wall(),
        mb / tbr.wall(),
        ccw / tbr.wall(),
        tbr.cores(),
        tbr.peak_mb(),
        median(ratios.clone()),
        median(acked.clone()),
        ccw / median(acked),
        fast.wall(),
        mb / fast.wall(),
        ccw / fast.wall(),
        fast.cores(),
        fast.peak_mb(),
        cc.cpu_ms_per_mb(),
        tbr.cpu_ms_per_mb(),
    );
    (rows, tbr.cpu_ms_per_mb())
}

fn backfill_section(repo: &Path, out_dir: &Path, ch: &TestClickHouse) -> String {
    let mb = env_num("TB_BENCH_MB", 200);
    let big_mb = env_num("TB_BENCH_BIG_MB", 1000);
    let rounds = env_num("TB_BENCH_ROUNDS", 5) as usize;
    let ccusage = ccusage_binary(repo);
    // Every response has a requestId, so ccusage's dedup and ours agree.
    let small_dir = out_dir.join(format!("corpus-{mb}mb"));
    let small = corpus(
        &small_dir,
        &[
            "--seed",
            "42",
            "--mb",
            &mb.to_string(),
            "--missing-request-id-pct",
            "0",
        ],
    );
    // Many small sessions, as real `~/.claude` folders have thousands of files.
    let big_dir = out_dir.join(format!("corpus-{big_mb}mb-many"));
    let big = corpus(
        &big_dir,
        &[
            "--seed",
            "7",
            "--mb",
            &big_mb.to_string(),
            "--projects",
            "40",
            "--max-turns",
            "24",
            "--no-huge-tool-results",
            "--missing-request-id-pct",
            "0",
        ],
    );
    let (small_rows, _) = compare_backfills("small", &small_dir, &small, rounds, &ccusage, ch);
    let (big_rows, _) = compare_backfills("large", &big_dir, &big, rounds, &ccusage, ch);
    let mut out = format!(
        "### Backfill\n\n| measure | ccusage 20.0.24: wall, throughput, cores, peak RSS | tokenbridge |\n|---|---|---|\n{small_rows}{big_rows}"
    );
    out += &extras(&small_dir, &small, rounds, &ccusage, ch);
    out
}

/// On the small corpus: `scan`, enhanced analysis, o200k, parse only.
fn extras(
    corpus_dir: &Path,
    expected: &Expected,
    rounds: usize,
    ccusage: &Path,
    ch: &TestClickHouse,
) -> String {
    let tb = env!("CARGO_BIN_EXE_tokenbridge");
    let bytes = expected.bytes as f64;
    let work = tempfile::tempdir().unwrap();
    let mut cc_wall = Vec::new();
    let mut scan_wall = Vec::new();
    let mut scan_rss = Vec::new();
    let mut enh_wall = Vec::new();
    let mut enh_rss = Vec::new();
    for _ in 0..rounds {
        let r = run_measured(
            Command::new(ccusage)
                .args(["claude", "daily", "--json", "--offline"])
                .env("CLAUDE_CONFIG_DIR", corpus_dir),
        );
        cc_wall.push(r.wall.as_secs_f64());
        let (r, _) = measured_scan(tb, corpus_dir, &[], expected);
        scan_wall.push(r.wall.as_secs_f64());
        scan_rss.push(r.max_rss as f64);
        let (r, v) = measured_scan(tb, corpus_dir, &["--analysis", "heuristic"], expected);
        assert!(v["analysis"]["content"]["entries"].as_u64().unwrap() > 0);
        enh_wall.push(r.wall.as_secs_f64());
        enh_rss.push(r.max_rss as f64);
    }
    let ccw = median(cc_wall);
    let scw = median(scan_wall);
    let enhw = median(enh_wall);
    let scan_peak = scan_rss.iter().cloned().fold(0.0, f64::max);
    let enh_peak = enh_rss.iter().cloned().fold(0.0, f64::max);

    // Enhanced backfill once: the daemon's own figures of what the enhanced
    // path costs next to the base path.
    let enh_cfg = write_config(
        work.path(),
        &ch.url(),
        "bench_enh",
        corpus_dir,
        "",
        "[analysis]\nenhanced = true\n",
    );
    let (r, enh_backfill) = measured_backfill(tb, &enh_cfg, ch, "bench_enh", expected);
    let enh_backfill_wall = r.wall.as_secs_f64();
    let cost = &enh_backfill["analysis"];
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);

    // Heuristic vs exact o200k_base on the corpus's content, once.
    let (r, exact) = measured_scan(tb, corpus_dir, &["--analysis", "o200k"], expected);
    let o200k_wall = r.wall.as_secs_f64();
    let (_, heur) = measured_scan(tb, corpus_dir, &["--analysis", "heuristic"], expected);
    let content_sum = |v: &serde_json::Value| -> f64 {
        let c = &v["analysis"]["content"];
        [
            "userPrompt",
            "toolResult",
            "assistantText",
            "thinking",
            "toolUse",
            "system",
        ]
        .iter()
        .map(|k| num(&c[*k]) + num(&c["sidechain"][*k]))
        .sum()
    };
    let heur_error_pct = (content_sum(&heur) / content_sum(&exact) - 1.0) * 100.0;
    let parse1 = parse_mbps(corpus_dir, bytes, 1);
    let parse_all = parse_mbps(corpus_dir, bytes, rayon::current_num_threads());
    format!(
        "| small: `scan daily --json` (no ClickHouse), median wall / throughput / peak RSS | {ccw:.3} s | {scw:.3} s / {:.0} MB/s ({:.2}x) / {:.1} MB |\n\
         | small: `scan daily --json --analysis heuristic` (enhanced) | {ccw:.3} s | {enhw:.3} s / {:.0} MB/s ({:.2}x) / {:.1} MB |\n\
         | small: `scan --analysis o200k` (exact BPE), one run | | {o200k_wall:.2} s / {:.0} MB/s; heuristic vs o200k on all content: {heur_error_pct:+.1} % |\n\
         | small: enhanced backfill, one run: wall; CPU ms/MB base / enhanced; insert bytes base / enhanced | | {enh_backfill_wall:.3} s; {:.1} / {:.1} ms/MB; {:.1} / {:.1} MB |\n\
         | small: parse only (files in memory), 1 thread / all threads | | {parse1:.0} / {parse_all:.0} MB/s |\n\n",
        bytes / 1e6 / scw,
        ccw / scw,
        scan_peak / 1e6,
        bytes / 1e6 / enhw,
        ccw / enhw,
        enh_peak / 1e6,
        bytes / 1e6 / o200k_wall,
        num(&cost["baseCpuMsPerMb"]),
        num(&cost["enhancedCpuMsPerMb"]),
        num(&cost["baseInsertBytes"]) / 1e6,
        num(&cost["enhancedInsertBytes"]) / 1e6,
    )
}

/// Parse only: all files in memory, classified on `threads` threads (no
/// ClickHouse), best of three.
fn parse_mbps(corpus_dir: &Path, bytes: f64, threads: usize) -> f64 {
    let files: Vec<(PathBuf, Vec<u8>)> = walk(corpus_dir)
        .into_iter()
        .map(|p| {
            let d = std::fs::read(&p).unwrap();
            (p, d)
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut best = 0f64;
    for _ in 0..3 {
        // Copies padded for in-place parsing, made before the clock starts:
        // growing the buffers inside the timed region measured the allocator
        // and page faults, not the parser.
        let mut copies: Vec<(tokenbridge::record::SourceContext, usize, Vec<u8>)> = files
            .iter()
            .map(|(p, d)| {
                let mut v = Vec::with_capacity(d.len() + tokenbridge::format::PADDING);
                v.extend_from_slice(d);
                v.resize(d.len() + tokenbridge::format::PADDING, 0);
                let end = tokenbridge::ingest::lines::complete_prefix_len(d);
                (tokenbridge::format::claude::paths::context_of(p), end, v)
            })
            .collect();
        let started = Instant::now();
        let usage: u64 = pool.install(|| {
            use rayon::prelude::*;
            copies
                .par_iter_mut()
                .map(|(ctx, end, d)| {
                    tokenbridge::format::chunk::parse_lines(
                        d,
                        *end,
                        0,
                        ctx,
                        64 << 20,
                        tokenbridge::format::ParseMode::Full,
                    )
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
}

/// `files` small transcripts (`files / 100` projects of 100 sessions, two
/// lines each: a prompt and a usage entry) under `root`.
fn small_files(root: &Path, files: usize) -> u64 {
    for i in 0..files {
        let (p, s) = (i / 100, i % 100);
        let dir = root.join(format!("projects/p{p}"));
        if s == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let session = format!("p{p}s{s}");
        std::fs::write(
            dir.join(format!("{session}.jsonl")),
            format!(
                "{{\"type\":\"user\",\"sessionId\":\"{session}\",\"message\":{{\"content\":\"hi\"}}}}\n{}",
                usage_line(&session, 0)
            ),
        )
        .unwrap();
    }
    files as u64
}

/// A usage line of `session` (key `m-{session}-{i}|r-{session}-{i}`) with the
/// current time as its timestamp, as a live session writes it.
fn usage_line(session: &str, i: u64) -> String {
    let ts = tokenbridge::timestamp::format_rfc3339_ms(tokenbridge::ops::logging::unix_ms());
    format!(
        "{{\"type\":\"assistant\",\"sessionId\":\"{session}\",\"timestamp\":\"{ts}\",\"requestId\":\"r-{session}-{i}\",\"message\":{{\"id\":\"m-{session}-{i}\",\"model\":\"claude-sonnet-4-20250514\",\"usage\":{{\"input_tokens\":3,\"output_tokens\":7}}}}}}\n"
    )
}

/// CPU seconds a process has used, and its RSS, from /proc.
fn proc_cpu_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tck;
    let rss_pages: u64 = f[21].parse().unwrap();
    (cpu, rss_pages * 4096)
}

/// A daemon on `root` (database `db`), with its log at `log`.
fn start_daemon(work: &Path, ch: &TestClickHouse, db: &str, root: &Path) -> std::process::Child {
    let cfg = write_config_at(work, &ch.url(), db, root, "", "", "info");
    Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join(format!("{db}.log"))).unwrap())
        .spawn()
        .unwrap()
}

fn stop(mut child: std::process::Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

/// Waits until `db` holds `messages` rows.
fn wait_for_messages(ch: &TestClickHouse, db: &str, messages: u64, within: Duration) {
    let started = Instant::now();
    while ch.totals(db).messages < messages {
        assert!(started.elapsed() < within, "{db}: not ingested in time");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn idle_section(ch: &TestClickHouse) -> String {
    let mut out = String::from(
        "### Idle daemon (all files ingested, nothing written)\n\n| files | window | CPU | RSS |\n|---|---|---|---|\n",
    );
    for files in [10_000usize, 100_000] {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("claude");
        let n = small_files(&root, files);
        let db = format!("bench_idle_{files}");
        let started = Instant::now();
        let d = start_daemon(work.path(), ch, &db, &root);
        wait_for_messages(ch, &db, n, Duration::from_secs(600));
        let ingest = started.elapsed().as_secs_f64();
        // Let summaries and the checkpoint save settle.
        std::thread::sleep(Duration::from_secs(3));
        let window = env_num("TB_BENCH_IDLE_SECONDS", 20) as f64;
        let (cpu0, _) = proc_cpu_rss(d.id());
        std::thread::sleep(Duration::from_secs_f64(window));
        let (cpu1, rss) = proc_cpu_rss(d.id());
        let pct = (cpu1 - cpu0) / window * 100.0;
        println!(
            "idle {files} files: ingest {ingest:.1} s, cpu {pct:.2} % of a core, rss {:.1} MB",
            rss as f64 / 1e6
        );
        out += &format!(
            "| {files} (ingested in {ingest:.1} s) | {window:.0} s | {pct:.2} % of a core | {:.1} MB |\n",
            rss as f64 / 1e6
        );
        stop(d);
    }
    out + "\n"
}

fn live_section(ch: &TestClickHouse) -> String {
    let seconds = env_num("TB_BENCH_LIVE_SECONDS", 60);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("claude");
    let n = small_files(&root, 10_000);
    let db = "bench_live";
    let d = start_daemon(work.path(), ch, db, &root);
    wait_for_messages(ch, db, n, Duration::from_secs(600));
    std::thread::sleep(Duration::from_secs(3));
    let (rt, c) = ch.client(db);
    // 50 sessions of the 10,000 append one line per second each, spread over
    // the second; a poller records when each line's key is queryable.
    let sessions: Vec<(PathBuf, String)> = (0..50)
        .map(|i| {
            let (p, s) = ((i * 37) % 100, (i * 11) % 100);
            let session = format!("p{p}s{s}");
            (root.join(format!("projects/p{p}/{session}.jsonl")), session)
        })
        .collect();
    let (cpu0, _) = proc_cpu_rss(d.id());
    let started = Instant::now();
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut lat = Vec::new();
    let mut appended = 0u64;
    let mut next = 0usize;
    let total = seconds as usize * sessions.len();
    let gap = Duration::from_secs(1) / sessions.len() as u32;
    let mut last_poll = Instant::now();
    while lat.len() < total {
        if next < total && started.elapsed() >= gap * next as u32 {
            let (path, session) = &sessions[next % sessions.len()];
            let line = usage_line(session, 1 + (next / sessions.len()) as u64);
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(line.as_bytes()).unwrap();
            drop(f);
            appended += line.len() as u64;
            pending.push((
                format!(
                    "m-{session}-{}|r-{session}-{}",
                    1 + next / sessions.len(),
                    1 + next / sessions.len()
                ),
                Instant::now(),
            ));
            next += 1;
        }
        if !pending.is_empty() && last_poll.elapsed() >= Duration::from_millis(20) {
            last_poll = Instant::now();
            let list: Vec<String> = pending.iter().map(|(k, _)| format!("'{k}'")).collect();
            let q = format!(
                "SELECT key FROM {db}.messages WHERE key IN ({})",
                list.join(",")
            );
            let seen: Vec<String> = rt.block_on(c.raw().query(&q).fetch_all()).unwrap();
            let now = Instant::now();
            pending.retain(|(k, t)| {
                if seen.contains(k) {
                    lat.push((now - *t).as_secs_f64() * 1000.0);
                    false
                } else {
                    assert!(now - *t < Duration::from_secs(60), "{k} never arrived");
                    true
                }
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, rss) = proc_cpu_rss(d.id());
    // Rounds of sustained appends, each followed by a backfill of the same
    // files: this host's speed drifts by a third over minutes, and a
    // ratio of two measures taken back to back is steadier than either.
    let rounds = env_num("TB_BENCH_LIVE_ROUNDS", 3).max(1);
    let mut before = n + total as u64;
    let mut paired = Vec::new();
    for round in 0..rounds {
        let starts: Vec<u64> = sessions
            .iter()
            .map(|(p, _)| std::fs::metadata(p).unwrap().len())
            .collect();
        let sustained = sustained_appends(ch, db, &d, &sessions, round, before);
        before += sustained.lines;
        let (mb, run) = backfill_of_the_same_lines(work.path(), ch, &sessions, &starts, round);
        println!(
            "live round {round}: sustained {:.1} ms/MB, backfill {:.1} ms/MB",
            sustained.cpu_s * 1000.0 / sustained.mb,
            run.cpu * 1000.0 / mb
        );
        paired.push((sustained, mb, run));
    }
    stop(d);
    let ratios: Vec<f64> = paired
        .iter()
        .map(|(s, mb, run)| (s.cpu_s / s.mb) / (run.cpu / mb))
        .collect();
    let (ratio_lo, ratio_hi) = spread(&ratios);
    let ratio = median(ratios.clone());
    // The round whose ratio is the median is the one shown in full.
    let mid = ratios.iter().position(|r| *r == ratio).unwrap();
    let (sustained, backfilled_mb, backfilled) = &paired[mid];
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let cpu = cpu1 - cpu0;
    let mb = appended as f64 / 1e6;
    format!(
        "### Live: 10,000 watched files, 50 sessions appending\n\n\
         | measure | value |\n|---|---|\n\
         | one line per second each: lines appended, over | {total} lines, {wall:.0} s |\n\
         | append → queryable latency p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |\n\
         | daemon CPU while appending | {:.2} s = {:.1} % of a core; RSS {:.1} MB |\n\
         | CPU per MB appended (lines of ~270 bytes, each its own read, insert and commit) | {:.0} ms/MB |\n\
         | sustained: {} lines per session every 100 ms ({:.1} MB/s), appended → all queryable | {:.1} MB in {:.1} s |\n\
         | sustained: daemon CPU, CPU per MB appended | {:.1} % of a core, {:.1} ms/MB |\n\
         | `backfill` of copies of what that round appended ({:.1} MB), CPU per MB | {:.1} ms/MB |\n\
         | sustained appends ÷ backfill, CPU per MB: median of {rounds} rounds (min–max) | {ratio:.2}x ({ratio_lo:.2}–{ratio_hi:.2}x) |\n\n",
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        cpu,
        cpu / wall * 100.0,
        rss as f64 / 1e6,
        cpu * 1000.0 / mb,
        sustained.lines_per_write,
        sustained.mb / sustained.writing_s,
        sustained.mb,
        sustained.landed_s,
        sustained.cpu_s / sustained.landed_s * 100.0,
        sustained.cpu_s * 1000.0 / sustained.mb,
        backfilled_mb,
        backfilled.cpu * 1000.0 / backfilled_mb,
    )
}

/// What a phase of sustained appends cost.
struct AppendCost {
    /// Lines per write of each session.
    lines_per_write: usize,
    /// Lines appended in all.
    lines: u64,
    /// Megabytes appended.
    mb: f64,
    /// Seconds spent writing.
    writing_s: f64,
    /// Seconds from the first write until every line was queryable.
    landed_s: f64,
    /// Daemon CPU seconds over `landed_s`.
    cpu_s: f64,
}

/// Steady appends at volume on the running daemon `d`: every 100 ms each
/// session appends a block of lines in one write, for
/// `TB_BENCH_LIVE_SUSTAINED_SECONDS` (default 20), with keys of its own in
/// each `round`; `before` messages are in `db` already. Fixed costs per wake-up
/// and per insert are shared by many lines here, unlike one line a second.
fn sustained_appends(
    ch: &TestClickHouse,
    db: &str,
    d: &std::process::Child,
    sessions: &[(PathBuf, String)],
    round: u64,
    before: u64,
) -> AppendCost {
    let seconds = env_num("TB_BENCH_LIVE_SUSTAINED_SECONDS", 20);
    let per_write = env_num("TB_BENCH_LIVE_SUSTAINED_LINES", 20) as usize;
    let ticks = seconds * 10;
    let (cpu0, _) = proc_cpu_rss(d.id());
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut block = String::new();
    for tick in 0..ticks {
        for (path, session) in sessions {
            block.clear();
            for j in 0..per_write as u64 {
                // Keys apart from the one-line-a-second phase's and from
                // the other rounds'.
                block.push_str(&usage_line(
                    session,
                    1_000_000 * (round + 1) + tick * 1_000 + j,
                ));
            }
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(block.as_bytes()).unwrap();
            bytes += block.len() as u64;
        }
        let next = Duration::from_millis(100 * (tick + 1));
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let writing_s = started.elapsed().as_secs_f64();
    let lines = ticks * sessions.len() as u64 * per_write as u64;
    let landed = Instant::now();
    while ch.totals(db).messages < before + lines {
        assert!(
            landed.elapsed() < Duration::from_secs(300),
            "sustained appends never landed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let landed_s = started.elapsed().as_secs_f64();
    let (cpu1, _) = proc_cpu_rss(d.id());
    AppendCost {
        lines_per_write: per_write,
        lines,
        mb: bytes as f64 / 1e6,
        writing_s,
        landed_s,
        cpu_s: cpu1 - cpu0,
    }
}

/// `tokenbridge backfill` of copies of what a round appended to the
/// sessions' files (each from its length in `starts` on) into a new
/// database: a backfill's CPU per MB for the very same lines. Returns the
/// megabytes read and the run.
fn backfill_of_the_same_lines(
    work: &Path,
    ch: &TestClickHouse,
    sessions: &[(PathBuf, String)],
    starts: &[u64],
    round: u64,
) -> (f64, Run) {
    let root = work.join(format!("copies{round}"));
    let mut bytes = 0u64;
    for ((path, session), &start) in sessions.iter().zip(starts) {
        let dir = root.join("projects").join(session);
        std::fs::create_dir_all(&dir).unwrap();
        let all = std::fs::read(path).unwrap();
        let appended = &all[start as usize..];
        std::fs::write(dir.join(format!("{session}.jsonl")), appended).unwrap();
        bytes += appended.len() as u64;
    }
    let db = format!("bench_live_backfill{round}");
    let cfg = write_config(work, &ch.url(), &db, &root, "", "");
    let r = run_measured(
        Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .arg("backfill")
            .arg("--config")
            .arg(&cfg),
    );
    (bytes as f64 / 1e6, r)
}

fn startup_section(out_dir: &Path, ch: &TestClickHouse) -> String {
    let _ = out_dir;
    let mut out = String::from(
        "### Start-up with rows already in ClickHouse\n\n| rows in `messages` | `dedup.load_days` | keys loaded | index load | process start → first insert acknowledged | peak RSS |\n|---|---|---|---|---|---|\n",
    );
    let (rt, c) = ch.client("bench_start");
    let mut have = 0u64;
    for rows in [1_000_000u64, 5_000_000] {
        // History over a year (5M rows: ~14k messages a day, what a busy
        // team accumulates). Keys look like Claude Code's.
        let now_ms = tokenbridge::ops::logging::unix_ms() as u64;
        let sql = format!(
            "INSERT INTO bench_start.messages (key, version, ts, ts_ms, session_id, project, model, message_id, request_id, input_tokens, output_tokens) \
             SELECT concat('msg_01', hex(sipHash64(number)), '|req_011C', hex(sipHash64(number + 1))), \
             bitOr(toUInt64(9223372036854775808), number * 2), \
             toDateTime(intDiv({now_ms} - number * 6307, 1000)), toInt64({now_ms} - number * 6307), \
             concat('s', toString(intDiv(number, 40))), 'p', 'claude-sonnet-4-20250514', '', '', 1, 1 \
             FROM numbers({have}, {})",
            rows - have
        );
        rt.block_on(c.execute(&sql)).unwrap();
        have = rows;
        for days in [7u64, 0] {
            let work = tempfile::tempdir().unwrap();
            let root = work.path().join("claude/projects/p");
            std::fs::create_dir_all(&root).unwrap();
            let session = format!("new-{rows}-{days}");
            std::fs::write(root.join("new.jsonl"), usage_line(&session, 1)).unwrap();
            let cfg = write_config_at(
                work.path(),
                &ch.url(),
                "bench_start",
                &work.path().join("claude"),
                "",
                &format!("[dedup]\nload_days = {days}\n"),
                "info",
            );
            let r = measure_startup(&cfg, &work.path().join("log"));
            out += &format!(
                "| {rows} | {} | {} | {} ms | {:.2} s | {:.1} MB |\n",
                if days == 0 {
                    "0 (all)".to_string()
                } else {
                    days.to_string()
                },
                r.keys,
                r.load_ms,
                r.first_insert_s,
                r.peak_mb,
            );
            let (loaded, wall) = (&r.keys, r.wall);
            println!(
                "startup {rows} rows, load_days {days}: {loaded}, wall {:.2}s",
                wall.as_secs_f64()
            );
        }
    }
    out + "\n"
}

/// What one measured start-up showed.
struct StartupRun {
    /// Keys the dedup index loaded.
    keys: u64,
    /// The index load, ms.
    load_ms: u64,
    /// Process start → first insert acknowledged, s.
    first_insert_s: f64,
    /// Peak RSS, MB.
    peak_mb: f64,
    /// The whole backfill.
    wall: Duration,
}

/// Runs `backfill` with `cfg` (its log to `log`) and reads its start-up
/// figures from the log's `dedup_index_loaded` and first `batch_committed`.
fn measure_startup(cfg: &Path, log: &Path) -> StartupRun {
    let started = tokenbridge::ops::logging::unix_ms();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenbridge"));
    cmd.arg("backfill").arg("--config").arg(cfg);
    // Peak RSS from the child's own VmHWM: wait4's ru_maxrss would count
    // this (by now large) process's pages, which a spawned child shares
    // until its exec.
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut peak_kb = 0u64;
    let wall_started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = wall_started.elapsed();
    let events: Vec<serde_json::Value> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ev = |name: &str| events.iter().find(|e| e["event"] == name).cloned();
    let loaded = ev("dedup_index_loaded").expect("dedup_index_loaded");
    let first = ev("batch_committed").expect("batch_committed");
    let first_ms =
        tokenbridge::timestamp::parse_rfc3339_ms(first["timestamp"].as_str().unwrap()).unwrap();
    StartupRun {
        keys: loaded["keys"].as_u64().unwrap(),
        load_ms: loaded["latency_ms"].as_u64().unwrap(),
        first_insert_s: (first_ms - started) as f64 / 1000.0,
        peak_mb: peak_kb as f64 * 1024.0 / 1e6,
        wall,
    }
}

/// A cluster-mode daemon config: watches `watch`, talks to `url`.
fn cluster_config(dir: &Path, url: &str, db: &str, watch: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[watch]\ndirs = [{:?}]\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"{url}\"\n\
             database = \"{db}\"\ncluster = \"{}\"\nrequest_timeout_ms = 120000\n[log]\nlevel = \"info\"\nformat = \"json\"\n\
             [http]\nenabled = false\n{extra}",
            watch.display().to_string(),
            dir.join("state").display().to_string(),
            common::cluster::CLUSTER,
        ),
    )
    .unwrap();
    path
}

/// Cluster mode on a real 2 shards × 2 replicas cluster (ZooKeeper and four
/// ClickHouse 18.16 servers on this machine): aggregate rows/s of 1, 2 and 4
/// daemons backfilling their own corpora at once (each through another
/// node), and a new host's start-up when the cluster holds 5M rows of 50
/// other hosts.
fn cluster_section(out_dir: &Path, ch: &TestClickHouse) -> String {
    let cluster = common::cluster::TestCluster::start();
    // Insert rate, not parsing: small usage lines (~330 bytes), 100
    // sessions per daemon.
    let per_daemon = env_num("TB_BENCH_CLUSTER_ROWS_PER_DAEMON", 200_000);
    let corpora: Vec<(PathBuf, u64)> = (0..4u64)
        .map(|i| {
            let dir = out_dir.join(format!("cluster-corpus-{per_daemon}-{i}"));
            let mut bytes = 0u64;
            let _ = std::fs::remove_dir_all(&dir);
            for s in 0..100 {
                let session = format!("bench-{i}-{s}");
                let mut text = String::new();
                for n in 0..per_daemon / 100 {
                    text += &usage_line(&session, n);
                }
                bytes += text.len() as u64;
                let p = dir.join(format!("projects/p{i}/{session}.jsonl"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            }
            (dir, bytes)
        })
        .collect();
    let mut out = format!(
        "### Cluster: concurrent daemons into 2 shards × 2 replicas\n\n\
         Each daemon backfills its own {per_daemon} usage lines (100 sessions, its own `host`) through another node, \
         all at once; ZooKeeper, the four servers and the daemons share this machine's 2 cores.\n\n\
         | daemons | `dedup.load_scope` | rows inserted | wall (all done) | rows/s, all daemons | MB/s, all daemons |\n|---|---|---|---|---|---|\n"
    );
    // The same lines into one server, for scale.
    {
        let db = "bench_cluster_single";
        let work = tempfile::tempdir().unwrap();
        let cfg = write_config_at(work.path(), &ch.url(), db, &corpora[0].0, "", "", "info");
        let started = Instant::now();
        let st = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .args(["backfill", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let wall = started.elapsed().as_secs_f64();
        let rows = (per_daemon / 100) * 100;
        assert_eq!(ch.totals(db).messages, rows);
        out += &format!(
            "| 1, one server (no cluster) | all | {rows} | {wall:.2} s | {:.0} | {:.1} |\n",
            rows as f64 / wall,
            corpora[0].1 as f64 / 1e6 / wall
        );
    }
    for (n, scope) in [(1usize, "host"), (1, "all"), (2, "host"), (4, "host")] {
        let db = format!("bench_cluster_{n}_{scope}");
        let work = tempfile::tempdir().unwrap();
        let configs: Vec<PathBuf> = (0..n)
            .map(|i| {
                cluster_config(
                    &work.path().join(format!("d{i}")),
                    &cluster.url(i % 4),
                    &db,
                    &corpora[i].0,
                    &format!(
                        "[source]\nhost = \"bench-host-{i}\"\n[dedup]\nload_scope = \"{scope}\"\n"
                    ),
                )
            })
            .collect();
        // The schema first, so that the daemons' ON CLUSTER DDL is not timed.
        drop(cluster.client(0, &db));
        let started = Instant::now();
        let children: Vec<_> = configs
            .iter()
            .map(|cfg| {
                Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
                    .args(["backfill", "--config"])
                    .arg(cfg)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "a cluster backfill failed");
        }
        let wall = started.elapsed().as_secs_f64();
        let rows = n as u64 * (per_daemon / 100) * 100;
        // Every line: 3 input and 7 output tokens.
        let tokens = rows * 10;
        let got = cluster.totals(3, &db);
        assert_eq!(
            (got.messages, got.total_tokens),
            (rows, tokens),
            "cluster totals differ from the corpora's truth"
        );
        out += &format!(
            "| {n} | {scope} | {rows} | {wall:.2} s | {:.0} | {:.1} |\n",
            rows as f64 / wall,
            corpora[..n].iter().map(|c| c.1).sum::<u64>() as f64 / 1e6 / wall
        );
        println!("cluster: {n} daemons ({scope}), {rows} rows in {wall:.2}s");
    }

    // A new host joins a cluster that holds 5M rows of 50 other hosts.
    let db = "bench_cluster_start";
    let (rt, c) = cluster.client(0, db);
    let rows = env_num("TB_BENCH_CLUSTER_ROWS", 5_000_000);
    let now_ms = tokenbridge::ops::logging::unix_ms() as u64;
    let fill_started = Instant::now();
    for from in (0..rows).step_by(1_000_000) {
        let sql = format!(
            "INSERT INTO {db}.messages (key, version, ts, ts_ms, session_id, project, model, message_id, request_id, \
             input_tokens, output_tokens, host, user) \
             SELECT concat('msg_01', hex(sipHash64(number)), '|req_011C', hex(sipHash64(number + 1))), \
             bitOr(toUInt64(9223372036854775808), number * 2), \
             toDateTime(intDiv({now_ms} - number * 6307, 1000)), toInt64({now_ms} - number * 6307), \
             concat('s', toString(intDiv(number, 40))), 'p', 'claude-sonnet-4-20250514', '', '', 1, 1, \
             concat('other-', toString(number % 50)), 'u' FROM numbers({from}, {})",
            (rows - from).min(1_000_000)
        );
        rt.block_on(c.execute(&sql)).unwrap();
    }
    println!(
        "cluster: {rows} rows of other hosts in {:.1}s",
        fill_started.elapsed().as_secs_f64()
    );
    out += &format!(
        "\nA new host's daemon starts while the cluster holds {rows} rows of 50 other hosts (history over a year):\n\n\
         | `dedup.load_scope` | `dedup.load_days` | keys loaded | index load | process start → first insert acknowledged | peak RSS |\n|---|---|---|---|---|---|\n"
    );
    for (scope, days) in [("host", 7u64), ("host", 0), ("all", 7), ("all", 0)] {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("claude/projects/p");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join("new.jsonl"),
            usage_line(&format!("new-{scope}-{days}"), 1),
        )
        .unwrap();
        let cfg = cluster_config(
            &work.path().join("d"),
            &cluster.url(1),
            db,
            &work.path().join("claude"),
            &format!("[source]\nhost = \"new-host\"\n[dedup]\nload_scope = \"{scope}\"\nload_days = {days}\n"),
        );
        let r = measure_startup(&cfg, &work.path().join("log"));
        out += &format!(
            "| {scope} | {} | {} | {} ms | {:.2} s | {:.1} MB |\n",
            if days == 0 {
                "0 (all)".to_string()
            } else {
                days.to_string()
            },
            r.keys,
            r.load_ms,
            r.first_insert_s,
            r.peak_mb
        );
        println!(
            "cluster start-up, scope {scope}, days {days}: {} keys, first insert {:.2}s",
            r.keys, r.first_insert_s
        );
    }
    out + "\n"
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    tokenbridge::ingest::discovery::scan(&[dir.to_path_buf()])
        .files
        .into_iter()
        .map(|f| f.path)
        .collect()
}

/// The agents' environment variables ccusage reads their folders from.
const AGENT_VARS: &[(&str, &str)] = &[
    ("gemini", "GEMINI_DATA_DIR"),
    ("copilot", "COPILOT_HOME"),
    ("qwen", "QWEN_DATA_DIR"),
    ("kimi", "KIMI_DATA_DIR"),
    ("grok", "GROK_HOME"),
    ("pi", "PI_AGENT_DIR"),
    ("openclaw", "OPENCLAW_DIR"),
];

/// Every agent at once: the generator's Claude Code corpus, Codex home and
/// the seven other homes, backfilled (and scanned) by tokenbridge and read
/// by ccusage's all-agents `daily`, round after round; every run's token
/// total must be the generators' truth.
fn mixed_section(repo: &Path, out_dir: &Path, ch: &TestClickHouse) -> String {
    let mb = env_num("TB_BENCH_MIXED_MB", 50);
    let rounds = env_num("TB_BENCH_ROUNDS", 5) as usize;
    let ccusage = ccusage_binary(repo);
    let tb = env!("CARGO_BIN_EXE_tokenbridge");
    let root = out_dir.join(format!("mixed-{mb}mb"));
    let gen = |dir: &Path, args: &[&str]| {
        if !dir.join("expected.json").exists() {
            let _ = std::fs::remove_dir_all(dir);
            let st = Command::new(env!("CARGO_BIN_EXE_tokenbridge-gen"))
                .arg(dir)
                .args(args)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "generation failed");
        }
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(dir.join("expected.json")).unwrap(),
        )
        .unwrap()
    };
    let mb_s = mb.to_string();
    let others_mb = (mb / 5).max(1).to_string();
    let claude = gen(
        &root.join("claude"),
        &[
            "--mb",
            &mb_s,
            "--missing-request-id-pct",
            "0",
            "--seed",
            "71",
        ],
    );
    let codex = gen(
        &root.join("codex"),
        &["--agent", "codex", "--mb", &mb_s, "--seed", "72"],
    );
    let others = gen(
        &root.join("others"),
        &["--agent", "others", "--mb", &others_mb, "--seed", "73"],
    );
    let total = |v: &serde_json::Value| v["totals"]["totalTokens"].as_u64().unwrap();
    let truth = total(&claude)
        + total(&codex)
        + others.as_object().unwrap().values().map(total).sum::<u64>();
    let files = walk(&root);
    let bytes: u64 = files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "expected.json"))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    for f in &files {
        let _ = std::fs::read(f);
    }
    let total_mb = bytes as f64 / 1e6;
    let work = tempfile::tempdir().unwrap();
    let mut agents = format!(
        "[agents.codex]\ndirs = [{:?}]\n",
        root.join("codex").display().to_string()
    );
    for (agent, _) in AGENT_VARS {
        agents += &format!(
            "[agents.{agent}]\ndirs = [{:?}]\n",
            root.join("others").join(agent).display().to_string()
        );
    }
    let (mut cc, mut bf, mut sc) = (Runs::default(), Runs::default(), Runs::default());
    for round in 0..rounds {
        let mut cmd = Command::new(&ccusage);
        cmd.args(["daily", "--json", "--offline"])
            .env("CLAUDE_CONFIG_DIR", root.join("claude"))
            .env("CODEX_HOME", root.join("codex"))
            .env("HOME", work.path())
            .env("TZ", "UTC");
        for (agent, var) in AGENT_VARS {
            cmd.env(var, root.join("others").join(agent));
        }
        let r = run_measured(&mut cmd);
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["totals"]["totalTokens"], truth, "ccusage all agents");
        cc.add(&r, total_mb);

        let db = format!("bench_mixed_{round}");
        let cfg = write_config(
            work.path(),
            &ch.url(),
            &db,
            &root.join("claude"),
            "",
            &agents,
        );
        let r = run_measured(
            Command::new(tb)
                .arg("backfill")
                .arg("--json")
                .arg("--config")
                .arg(&cfg),
        );
        let (rt, c) = ch.client(&db);
        let t: Totals = rt.block_on(c.totals()).unwrap();
        assert_eq!(t.total_tokens, truth, "backfill of every agent");
        bf.add(&r, total_mb);

        let r = run_measured(
            Command::new(tb)
                .args(["scan", "daily", "--json", "--config"])
                .arg(&cfg),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["totals"]["totalTokens"], truth, "scan of every agent");
        sc.add(&r, total_mb);
        println!(
            "mixed round {round}: ccusage {:.3}s | backfill {:.3}s | scan {:.3}s",
            cc.wall[round], bf.wall[round], sc.wall[round]
        );
    }
    let ccw = cc.wall();
    format!(
        "### Every agent at once\n\n{total_mb:.0} MB in {} files: Claude Code and Codex {mb} MB each, Gemini CLI, Copilot CLI, Qwen Code, Kimi, Grok Build, pi and OpenClaw {others_mb} MB each; median of {rounds}.\n\n\
         | measure | ccusage 20.0.24 `daily` (all agents) | tokenbridge |\n|---|---|---|\n\
         | backfill into ClickHouse | {ccw:.3} s, {:.0} MB/s, {:.2} cores, {:.1} MB | {:.3} s, {:.0} MB/s (**{:.2}x**), {:.2} cores, {:.1} MB |\n\
         | `scan daily` (no database) | | {:.3} s, {:.0} MB/s ({:.2}x), {:.2} cores, {:.1} MB |\n\n",
        files.len() - 3,
        total_mb / ccw,
        cc.cores(),
        cc.peak_mb(),
        bf.wall(),
        total_mb / bf.wall(),
        ccw / bf.wall(),
        bf.cores(),
        bf.peak_mb(),
        sc.wall(),
        total_mb / sc.wall(),
        ccw / sc.wall(),
        sc.cores(),
        sc.peak_mb(),
    )
}
