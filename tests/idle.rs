//! An idle daemon stays idle: with 1,000 transcripts ingested and nothing
//! written, it opens no file and scans no folder beyond its periodic rescan,
//! and uses next to no CPU. Its own reads must not wake it (they once did:
//! inotify's open/close events made it list and open everything again, a
//! core's worth of CPU forever). An append still lands at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted from `state` (3).
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn an_idle_daemon_over_a_thousand_files_does_nothing() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("claude");
    let mut lines = 0u64;
    for p in 0..10 {
        for s in 0..100 {
            let session = format!("p{p}s{s}");
            let path = root.join(format!("projects/p{p}/{session}.jsonl"));
            append(
                &path,
                "{\"type\":\"user\",\"message\":{\"content\":\"hi\"}}\n",
            );
            append(&path, usage_line(&session, 1, 10, 20));
            lines += 1;
        }
    }
    // The periodic rescan every 2 s, backing off to every 8 s while it finds
    // nothing the watcher missed: one to five fall into the window.
    let cfg = write_config(work.path(), &ch, "tb_idle", &[&root], "");
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("rescan_interval_ms = 2000"));
    let log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(60), || ch.totals("tb_idle").messages
            == lines),
        "not ingested: {:?}\n{}",
        ch.totals("tb_idle"),
        d.log_text()
    );
    let addr = http_addr(&d).expect("http endpoint");
    // Let the start-up settle (summaries, checkpoint save).
    std::thread::sleep(Duration::from_secs(2));

    let before = http_get(&addr, "/metrics").1;
    let cpu_before = cpu_seconds(d.child.id());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let after = http_get(&addr, "/metrics").1;
    let cpu = cpu_seconds(d.child.id()) - cpu_before;
    let window = started.elapsed().as_secs_f64();
    let delta = |name: &str| metric(&after, name) - metric(&before, name);

    let full = delta("tokenbridge_scans_total{kind=\"full\"}");
    println!(
        "idle {window:.1} s over {lines} files: cpu {cpu:.3} s, opens {}, full scans {full}, path looks {}, wake-ups {}, events ignored {}",
        delta("tokenbridge_file_opens_total"),
        delta("tokenbridge_scans_total{kind=\"paths\"}"),
        delta("tokenbridge_wakeups_total"),
        delta("tokenbridge_watch_events_ignored_total"),
    );
    assert_eq!(
        delta("tokenbridge_file_opens_total"),
        0.0,
        "files opened while idle"
    );
    assert_eq!(delta("tokenbridge_scans_total{kind=\"paths\"}"), 0.0);
    assert_eq!(delta("tokenbridge_wakeups_total"), 0.0, "woken while idle");
    // Only the periodic rescans: at most 10 s / 2 s, at least one every 8 s.
    assert!(
        full <= (window / 2.0).ceil(),
        "{full} full scans in {window:.1} s"
    );
    assert!(full >= 1.0, "the periodic rescan stopped");
    // The feedback loop this guards against used 70-110 % of a core; an idle
    // daemon with 1,000 files uses well under 1 %. 5 % leaves room for a
    // busy machine's accounting.
    assert!(
        cpu < 0.05 * window,
        "{cpu:.3} s of CPU in {window:.1} s idle"
    );

    // An append wakes it for that one file.
    let opens = metric(&after, "tokenbridge_file_opens_total");
    append(
        &root.join("projects/p3/p3s7.jsonl"),
        usage_line("p3s7", 2, 5, 5),
    );
    assert!(
        wait_until(Duration::from_secs(10), || ch.totals("tb_idle").messages
            == lines + 1),
        "append not ingested:\n{}",
        d.log_text()
    );
    let now = http_get(&addr, "/metrics").1;
    let opened = metric(&now, "tokenbridge_file_opens_total") - opens;
    assert!(
        (1.0..=3.0).contains(&opened),
        "{opened} opens for one append"
    );
    assert!(metric(&now, "tokenbridge_wakeups_total") >= 1.0);
    assert!(d.stop().success());
}
