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

// The integration tests' harness: a real clickhouse-server on free ports.
#[path = "../tests/common/mod.rs"]
mod common;

use common::TestClickHouse;
use tokenbridge::ch::client::Totals;
use tokenbridge::corpus::Expected;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// A config for database `db`; `watch_extra` goes into `[watch]`, `extra`
/// after the last section.
fn write_config(
    dir: &Path,
    url: &str,
    db: &str,
    watch: &Path,
    watch_extra: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{db}.toml"));
    std::fs::write(
        &path,
        format!(
            "[watch]\ndirs = [{:?}]\n{watch_extra}\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"{url}\"\ndatabase = \"{db}\"\n[log]\nlevel = \"warn\"\nformat = \"json\"\n[http]\nenabled = false\n{extra}",
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
    // Generated by the generator binary, not in this process: a child's peak
    // RSS (wait4's ru_maxrss) would otherwise include this process's memory
    // from before the child's exec.
    // Regenerated when missing, or written by an older generator whose
    // expected.json no longer parses.
    let cached = std::fs::read(corpus_dir.join("expected.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Expected>(&b).ok());
    if cached.is_none() {
        let _ = std::fs::remove_dir_all(&corpus_dir);
        let st = Command::new(env!("CARGO_BIN_EXE_tokenbridge-gen"))
            .arg(&corpus_dir)
            .args([
                "--seed",
                "42",
                "--mb",
                &mb.to_string(),
                "--missing-request-id-pct",
                "0",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "corpus generation failed");
    }
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(corpus_dir.join("expected.json")).unwrap()).unwrap();
    let bytes = expected.bytes as f64;
    println!(
        "corpus: {:.1} MB, {} files, {} messages",
        bytes / 1e6,
        expected.files,
        expected.totals.messages
    );

    let ch = TestClickHouse::start();
    let url = ch.url();
    let work = tempfile::tempdir().unwrap();

    // Warm the page cache once for both tools.
    for entry in walk(&corpus_dir) {
        let _ = std::fs::read(entry);
    }

    let mut cc_wall = Vec::new();
    let mut cc_rss = Vec::new();
    let mut tb_wall = Vec::new();
    let mut tb_rss = Vec::new();
    let mut tb_acked = Vec::new();
    let mut scan_wall = Vec::new();
    let mut scan_rss = Vec::new();
    let mut enh_wall = Vec::new();
    let mut enh_rss = Vec::new();
    let mut fast_wall = Vec::new();
    let mut fast_rss = Vec::new();
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
        let cfg = write_config(work.path(), &url, &db, &corpus_dir, "", "");
        let (r, v) = measured_backfill(tb, &cfg, &ch, &db, &expected);
        tb_wall.push(r.wall.as_secs_f64());
        tb_rss.push(r.max_rss as f64);
        // Files to usage rows acknowledged: the wall time less what the run
        // did after its last insert (naive sums, checkpoints, summaries).
        let after = v["afterLastCommitMs"].as_f64().unwrap() / 1000.0;
        tb_acked.push(r.wall.as_secs_f64() - after);

        // The same with `validate_all_lines = false`: only lines that can
        // carry usage are parsed (what ccusage does).
        let db = format!("bench_fast_{round}");
        let cfg = write_config(
            work.path(),
            &url,
            &db,
            &corpus_dir,
            "validate_all_lines = false",
            "",
        );
        let (r, _) = measured_backfill(tb, &cfg, &ch, &db, &expected);
        fast_wall.push(r.wall.as_secs_f64());
        fast_rss.push(r.max_rss as f64);

        // The same report straight from files, no ClickHouse.
        let (r, _) = measured_scan(tb, &corpus_dir, &[], &expected);
        scan_wall.push(r.wall.as_secs_f64());
        scan_rss.push(r.max_rss as f64);

        // The same with enhanced analysis (heuristic estimator).
        let (r, v) = measured_scan(tb, &corpus_dir, &["--analysis", "heuristic"], &expected);
        assert!(v["analysis"]["content"]["entries"].as_u64().unwrap() > 0);
        enh_wall.push(r.wall.as_secs_f64());
        enh_rss.push(r.max_rss as f64);
        println!(
            "round {round}: ccusage {:.3}s {:.0}MB | tokenbridge {:.3}s {:.0}MB",
            cc_wall[round],
            cc_rss[round] / 1e6,
            tb_wall[round],
            tb_rss[round] / 1e6
        );
    }
    // Each round runs both tools back to back; the per-round ratio is less
    // exposed to the machine's drift than a ratio of medians.
    let ratios: Vec<f64> = cc_wall.iter().zip(&tb_wall).map(|(c, t)| c / t).collect();
    let (ratio_lo, ratio_hi) = (
        ratios.iter().cloned().fold(f64::MAX, f64::min),
        ratios.iter().cloned().fold(0.0, f64::max),
    );
    let ratio_med = median(ratios);
    let acked_ratios: Vec<f64> = cc_wall.iter().zip(&tb_acked).map(|(c, t)| c / t).collect();
    let (acked_lo, acked_hi) = (
        acked_ratios.iter().cloned().fold(f64::MAX, f64::min),
        acked_ratios.iter().cloned().fold(0.0, f64::max),
    );
    let acked_med = median(acked_ratios);
    let tbaw = median(tb_acked);
    let (ccw, tbw, scw) = (median(cc_wall), median(tb_wall), median(scan_wall));
    let cc_peak = cc_rss.iter().cloned().fold(0.0, f64::max);
    let tb_peak = tb_rss.iter().cloned().fold(0.0, f64::max);
    let scan_peak = scan_rss.iter().cloned().fold(0.0, f64::max);
    let enhw = median(enh_wall);
    let fastw = median(fast_wall);
    let fast_peak = fast_rss.iter().cloned().fold(0.0, f64::max);
    let enh_peak = enh_rss.iter().cloned().fold(0.0, f64::max);

    // Enhanced backfill once: the daemon's own figures of what the enhanced
    // path costs next to the base path.
    let enh_cfg = write_config(
        work.path(),
        &url,
        "bench_enh",
        &corpus_dir,
        "",
        "[analysis]\nenhanced = true\n",
    );
    let (r, enh_backfill) = measured_backfill(tb, &enh_cfg, &ch, "bench_enh", &expected);
    let enh_backfill_wall = r.wall.as_secs_f64();
    let cost = &enh_backfill["analysis"];
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);

    // Heuristic vs exact o200k_base on the corpus's content, once.
    let (r, exact) = measured_scan(tb, &corpus_dir, &["--analysis", "o200k"], &expected);
    let o200k_wall = r.wall.as_secs_f64();
    let (_, heur) = measured_scan(tb, &corpus_dir, &["--analysis", "heuristic"], &expected);
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
            // Copies padded for in-place parsing, made before the clock
            // starts: growing 210 MB of buffers inside the timed region
            // measured the allocator and page faults, not the parser.
            let mut copies: Vec<(tokenbridge::record::SourceContext, usize, Vec<u8>)> = files
                .iter()
                .map(|(p, d)| {
                    let mut v = Vec::with_capacity(d.len() + tokenbridge::parse::PADDING);
                    v.extend_from_slice(d);
                    v.resize(d.len() + tokenbridge::parse::PADDING, 0);
                    let end = tokenbridge::lines::complete_prefix_len(d);
                    (tokenbridge::record::SourceContext::from_path(p), end, v)
                })
                .collect();
            let started = Instant::now();
            let usage: u64 = pool.install(|| {
                use rayon::prelude::*;
                copies
                    .par_iter_mut()
                    .map(|(ctx, end, d)| {
                        tokenbridge::reader::parse_lines(
                            d,
                            *end,
                            0,
                            ctx,
                            64 << 20,
                            tokenbridge::parse::ParseMode::Full,
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
    };
    let parse1 = parse_mbps(1);
    let parse_all = parse_mbps(rayon::current_num_threads());

    // Latency with default settings: a line appended to a watched file until
    // it is queryable.
    let n_lines = env_num("TB_BENCH_LATENCY_LINES", 200) as usize;
    let watch = work.path().join("live");
    std::fs::create_dir_all(watch.join("projects/p")).unwrap();
    let cfg = write_config(work.path(), &url, "bench_live", &watch, "", "");
    let mut daemon = Command::new(tb)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (rt, c) = ch.client("bench_live");
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
         | per-round ratio ccusage / backfill: median (min–max) | | {ratio_med:.2}x ({ratio_lo:.2}–{ratio_hi:.2}x) |\n\
         | files → usage rows acknowledged (wall less what follows the last insert: naive sums, checkpoints, session summaries), median | {ccw:.3} s | {tbaw:.3} s / {:.0} MB/s ({:.2}x) |\n\
         | per-round ratio ccusage / files → usage rows acknowledged: median (min–max) | | {acked_med:.2}x ({acked_lo:.2}–{acked_hi:.2}x) |\n\
         | peak RSS (max over rounds) | {:.1} MB | {:.1} MB |\n\
         | backfill with `validate_all_lines = false`, median wall / throughput / peak RSS | {ccw:.3} s | {fastw:.3} s / {:.0} MB/s ({:.2}x) / {:.1} MB |\n\
         | `scan daily --json` vs `ccusage daily --json`, median wall / throughput / peak RSS | {ccw:.3} s | {scw:.3} s / {:.0} MB/s ({:.2}x) / {:.1} MB |\n\
         | `scan daily --json --analysis heuristic` (enhanced), median wall / throughput / peak RSS | {ccw:.3} s | {enhw:.3} s / {:.0} MB/s ({:.2}x) / {:.1} MB |\n\
         | `scan --analysis o200k` (exact BPE), one run | | {o200k_wall:.2} s / {:.0} MB/s; heuristic vs o200k on all content: {heur_error_pct:+.1} % |\n\
         | enhanced backfill, one run: wall; CPU ms/MB base / enhanced; insert bytes base / enhanced | | {enh_backfill_wall:.3} s; {:.1} / {:.1} ms/MB; {:.1} / {:.1} MB |\n\
         | parse only, 1 thread / all threads | | {parse1:.0} / {parse_all:.0} MB/s |\n\
         | append → queryable latency, {n_lines} lines: p50 / p99 / max | | {:.0} / {:.0} / {:.0} ms |\n",
        bytes / 1e6,
        expected.files,
        bytes / 1e6 / ccw,
        bytes / 1e6 / tbw,
        ccw / tbw,
        bytes / 1e6 / tbaw,
        ccw / tbaw,
        cc_peak / 1e6,
        tb_peak / 1e6,
        bytes / 1e6 / fastw,
        ccw / fastw,
        fast_peak / 1e6,
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
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
    );
    println!("\n{report}");
    std::fs::write(out_dir.join("results.md"), &report).unwrap();
    drop(ch);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    tokenbridge::discovery::scan(&[dir.to_path_buf()]).files
}
