//! A million distinct dedup keys: totals stay exact and memory stays bounded
//! when the dedup index is limited to a window far smaller than the key count
//! (keys beyond it are resolved by ClickHouse's FINAL on read).
//!
//! The memory bound is the one the design promises ([`MemoryBound`]), and it
//! must hold on a busy machine: two threads burn CPU beside the backfill, so
//! ClickHouse and the sink fall behind the reader, which is when an
//! unbounded queue would grow.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use tokenbridge::config::Config;
use tokenbridge::ops::memory::MemoryBound;

/// Threads that keep every core busy until dropped.
struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl CpuHog {
    fn start(n: usize) -> CpuHog {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                    }
                    x
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const KEYS: u64 = 1_000_000;

#[test]
// The child is reaped with wait4 (for its peak RSS), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn one_million_keys_exact_with_bounded_memory() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude/projects/p");
    std::fs::create_dir_all(&watch).unwrap();
    let (mut input, mut output) = (0u64, 0u64);
    let mut files: Vec<_> = (0..20)
        .map(|i| {
            std::io::BufWriter::new(
                std::fs::File::create(watch.join(format!("s{i}.jsonl"))).unwrap(),
            )
        })
        .collect();
    for k in 0..KEYS {
        let (i, o) = (k % 7 + 1, k % 13 + 1);
        input += i;
        output += o + 100;
        let line = |out: u64| {
            format!(
                "{{\"type\":\"assistant\",\"sessionId\":\"s{}\",\"timestamp\":\"2025-09-01T10:00:00Z\",\"requestId\":\"r{k}\",\"message\":{{\"id\":\"m{k}\",\"model\":\"claude-sonnet-4-20250514\",\"usage\":{{\"input_tokens\":{i},\"output_tokens\":{out}}}}}}}\n",
                k % 20
            )
        };
        let f = &mut files[(k % 20) as usize];
        // Every tenth message streams: a partial line first, then the full one.
        if k % 10 == 0 {
            f.write_all(line(o).as_bytes()).unwrap();
        }
        f.write_all(line(o + 100).as_bytes()).unwrap();
    }
    drop(files);
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_scale",
        &[&work.path().join("claude")],
        "[dedup]\nmax_keys = 200000\n",
    );

    let hog = CpuHog::start(2);
    let mut child = bin()
        .arg("backfill")
        .arg("--json")
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "backfill failed"
    );
    drop(hog);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak = usage.ru_maxrss as u64 * 1024;
    let config = Config::load(&cfg).unwrap();
    // 20 files; the longest line is a full usage line (~230 bytes).
    let bound = MemoryBound::of(&config, 20, 300);
    println!(
        "1M keys under a CPU hog: peak RSS {:.1} MB, bound {:.1} MB {bound:?}, {summary}",
        peak as f64 / 1e6,
        bound.total() as f64 / 1e6
    );

    let t = ch.totals("tb_scale");
    assert_eq!(
        (t.input_tokens, t.output_tokens, t.messages),
        (input, output, KEYS)
    );
    assert_eq!(summary["usageLines"], KEYS + KEYS / 10);
    // The window is 200k keys (~13 MB); rows in flight are bounded by the
    // channel's and the batch's byte limits. The whole 230 MB corpus must
    // not be held, whatever the timing.
    assert!(
        peak <= bound.total(),
        "peak RSS {peak} bytes above the designed bound {bound:?}"
    );
    assert!(bound.total() < 200 << 20, "{bound:?}");
}
