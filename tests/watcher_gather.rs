//! notify's thread gathers a flow of events instead of waking once per
//! `write` ([`tokenbridge::ingest::watcher::Gather`]), and every written file
//! is still named. Its own test binary: it counts the context switches of
//! the one notify thread in this process, which a test running beside it
//! with a watcher of its own would add to.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenbridge::ingest::watcher::{DirWatcher, Wake, GATHER_WINDOW};
use tokenbridge::ops::metrics::Metrics;

#[test]
fn a_flow_of_appends_is_delivered_whole_in_few_wake_ups() {
    let d = tempfile::tempdir().unwrap();
    // Made before the watch starts: only appends raise events below.
    let files: Vec<PathBuf> = (0..100)
        .map(|i| d.path().join(format!("s{i}.jsonl")))
        .collect();
    for f in &files {
        std::fs::write(f, "{}\n").unwrap();
    }
    let (tx, rx) = crossbeam_channel::bounded(4096);
    let metrics = Arc::new(Metrics::default());
    let others = notify_threads();
    let mut w = DirWatcher::new(tx, metrics.clone()).unwrap();
    // This watcher's thread: the one that was not there before (it
    // names itself once running).
    let waited = Instant::now();
    let mut mine: Vec<PathBuf> = Vec::new();
    while mine.is_empty() && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
        mine = notify_threads().difference(&others).cloned().collect();
    }
    assert_eq!(mine.len(), 1, "{mine:?}");
    let thread = mine.pop().unwrap();
    assert!(w.sync(&[d.path().to_path_buf()]).is_empty());
    std::thread::sleep(Duration::from_millis(100));

    // A flow: 100 appends 1 ms apart to 20 sessions, as sessions being
    // written come. Each would wake a waiting thread.
    let switches_before = switches(&thread);
    let started = Instant::now();
    for round in 0..5 {
        for f in &files[..20] {
            append(f, round);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let writing = started.elapsed();
    expect_named(&rx, &files[..20], Duration::from_secs(5));
    // Gathered: a wake-up, a pause and a drain per window (a few more when
    // the thread is preempted), not one per write. On a busy machine the
    // writes come further apart and the bound grows with them.
    let woke = switches(&thread) - switches_before;
    let windows = (writing.as_secs_f64() / GATHER_WINDOW.as_secs_f64()).ceil() as u64;
    let bound = 4 * (windows + 1);
    assert!(
        woke <= bound,
        "notify's thread woke {woke} times for 100 writes in {writing:?} (at most {bound})"
    );

    // A burst: one append to each of 100 files at once. What queued during
    // a pause is handed on in one go, not two events per window (which
    // would take a second here).
    std::thread::sleep(Duration::from_millis(200));
    while rx.try_recv().is_ok() {}
    let started = Instant::now();
    for f in &files {
        append(f, 9);
    }
    let writing = started.elapsed();
    expect_named(&rx, &files, Duration::from_secs(5));
    let took = started.elapsed();
    assert!(
        took <= writing + GATHER_WINDOW * 5,
        "100 appends written in {writing:?} were all named after {took:?}"
    );
    assert!(!w.take_lost());
}

fn append(f: &Path, n: u32) {
    use std::io::Write;
    let mut h = std::fs::OpenOptions::new().append(true).open(f).unwrap();
    h.write_all(format!("{{\"n\":{n}}}\n").as_bytes()).unwrap();
}

/// Waits until wake-ups named every one of `files` as written.
fn expect_named(rx: &crossbeam_channel::Receiver<Wake>, files: &[PathBuf], within: Duration) {
    let mut named = HashSet::new();
    let deadline = Instant::now() + within;
    while !files.iter().all(|f| named.contains(f)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Wake::Written(p)) => named.extend(p),
            Ok(other) => panic!("{other:?}"),
            Err(_) => panic!("{} of {} files named", named.len(), files.len()),
        }
    }
}

/// The ids of this process's notify threads.
fn notify_threads() -> HashSet<PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|t| t.path())
        .filter(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.starts_with("notify-rs"))
        })
        .collect()
}

/// Voluntary context switches of the thread at `task` (`/proc` path):
/// how often it slept and was woken.
fn switches(task: &Path) -> u64 {
    let status = std::fs::read_to_string(task.join("status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}
