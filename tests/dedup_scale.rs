//! A million distinct dedup keys: totals stay exact and memory stays bounded
//! when the dedup index is limited to a window far smaller than the key count
//! (keys beyond it are resolved by ClickHouse's FINAL on read).

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

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
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak_mb = usage.ru_maxrss as f64 / 1024.0;
    println!("1M keys: peak RSS {peak_mb:.1} MB, {summary}");

    let t = ch.totals("tb_scale");
    assert_eq!(
        (t.input_tokens, t.output_tokens, t.messages),
        (input, output, KEYS)
    );
    assert_eq!(summary["usageLines"], KEYS + KEYS / 10);
    // The window is 200k keys (~10 MB); rows in flight are bounded by the
    // channel and the batch. The whole 230 MB corpus must not be held.
    assert!(peak_mb < 200.0, "peak RSS {peak_mb:.1} MB");
}
