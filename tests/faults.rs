//! Delivery under faults, against a real ClickHouse and the real binary:
//! `kill -9` at random points (and at failpoints between an insert and its
//! checkpoint, and in the middle of writing the state file), a ClickHouse
//! outage, rows ClickHouse rejects, and bad input of every kind.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokenbridge::testkit::corpus::{self, Rng, Spec};

/// Runs backfill and kills it with SIGKILL after `delay` (if still running).
/// Returns true if it was killed.
fn backfill_killed_after(config: &Path, delay: Duration, env: Option<(&str, &str)>) -> bool {
    let mut cmd = bin();
    cmd.arg("backfill")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
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

#[test]
fn kill9_during_backfill_at_random_points_then_exact() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let exp = generated_corpus(&watch, 31, 40 << 20);
    // One row per insert: the whole corpus takes hundreds of inserts, so
    // the kills below (about 5 s of progress in all, bounded by time)
    // leave work for the last run on a fast machine too.
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_kill",
        &[&watch],
        "[batch]\nmax_rows = 1\nchannel_capacity = 1\n",
    );
    let mut kills = 0;
    // Deterministic crash points: right after ClickHouse acknowledged a batch
    // (before the checkpoint moved), with the new state file half-done, and
    // in the middle of an append to the checkpoint journal (a torn line).
    // A run's inserts count only rows not yet in ClickHouse, so `after_insert`
    // always moves on by that many batches; checkpoints are saved about once
    // a second, the first save of a run without a snapshot writes one, and
    // the next appends to the journal.
    for (fp, n) in [
        ("after_insert", "2"),
        ("checkpoint_temp_written", "1"),
        ("after_insert", "5"),
        ("checkpoint_journal_half_written", "1"),
    ] {
        let spec = format!("{fp}:{n}");
        let st = bin()
            .arg("backfill")
            .arg("--config")
            .arg(&cfg)
            .env("TOKENBRIDGE_FAILPOINT", &spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!st.success(), "failpoint {spec} was not reached");
        kills += 1;
    }
    let mut rng = Rng::new(99);
    for _ in 0..12 {
        let delay = Duration::from_millis(rng.range(30, 250));
        if backfill_killed_after(&cfg, delay, None) {
            kills += 1;
        }
    }
    println!("{kills} kill points landed mid-run");
    assert!(kills >= 10, "only {kills} kill points landed mid-run");
    let mid = ch.totals("tb_kill");
    println!(
        "{} of {} messages in before the last run",
        mid.messages, exp.totals.messages
    );
    assert!(
        mid.messages < exp.totals.messages,
        "corpus finished before the kills"
    );
    // The last run may batch as usual: a changed batch size between runs
    // must not matter either.
    write_config(work.path(), &ch, "tb_kill", &[&watch], "");
    let done = backfill(&cfg, &[]);
    assert_eq!(done["complete"], true);
    assert_eq!(ch.totals("tb_kill"), exp.totals);
    assert_eq!(ch.totals_by("tb_kill", "session_id"), exp.by_session);
    assert_eq!(ch.duplicate_rows("tb_kill"), 0, "a row was inserted twice");
}

#[test]
fn kill9_of_the_daemon_while_files_grow_then_exact() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_kill_live",
        &[&watch],
        "[batch]\nmax_rows = 5\n",
    );
    let (files, exp) = corpus::generate(&Spec {
        seed: 5,
        target_bytes: 6 << 20,
        huge_tool_results: false,
        ..Spec::default()
    });
    let log = work.path().join("daemon.log");
    let writer_root = watch.clone();
    let writer = std::thread::spawn(move || {
        // Line by line, each in two pieces, round-robin over files.
        let max = files.iter().map(|f| f.lines.len()).max().unwrap();
        for i in 0..max {
            for f in &files {
                if let Some(l) = f.lines.get(i) {
                    let p = writer_root.join(&f.rel_path);
                    let cut = l.len() / 3;
                    append(&p, &l.as_bytes()[..cut]);
                    append(&p, &l.as_bytes()[cut..]);
                }
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let mut rng = Rng::new(7);
    for _ in 0..6 {
        let d = Daemon::start(&cfg, &log);
        std::thread::sleep(Duration::from_millis(rng.range(150, 900)));
        d.kill9();
    }
    writer.join().unwrap();
    let d = Daemon::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(60), || ch.totals("tb_kill_live")
            == exp.totals),
        "got {:?} want {:?}",
        ch.totals("tb_kill_live"),
        exp.totals
    );
    assert_eq!(ch.duplicate_rows("tb_kill_live"), 0);
    assert!(d.stop().success());
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn clickhouse_outage_of_35s_loses_and_duplicates_nothing() {
    let mut ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let cfg = write_config(work.path(), &ch, "tb_outage", &[&watch], "");
    let (files, exp) = corpus::generate(&Spec {
        seed: 77,
        target_bytes: 60 << 20,
        ..Spec::default()
    });
    let (first, rest) = files.split_at(files.len() / 4);
    for f in first {
        append(&watch.join(&f.rel_path), f.lines.concat().as_bytes());
    }
    let log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_outage")
        .messages
        > 0));
    let rss_before = rss_kb(d.child.id());

    ch.server.stop();
    let down_at = Instant::now();
    // While ClickHouse is down, 45 MB more arrive; they must wait on disk.
    let mut max_rss = 0;
    for f in rest {
        append(&watch.join(&f.rel_path), f.lines.concat().as_bytes());
        max_rss = max_rss.max(rss_kb(d.child.id()));
    }
    while down_at.elapsed() < Duration::from_secs(35) {
        max_rss = max_rss.max(rss_kb(d.child.id()));
        std::thread::sleep(Duration::from_millis(500));
    }
    ch.server.restart().unwrap();
    let up_at = Instant::now();
    let before = ch.totals("tb_outage").messages;
    assert!(
        wait_until(Duration::from_secs(5), || ch.totals("tb_outage").messages
            > before),
        "no insert within 5 s of clickhouse coming back"
    );
    let resumed_ms = up_at.elapsed().as_millis();
    assert!(
        wait_until(Duration::from_secs(60), || ch.totals("tb_outage")
            == exp.totals),
        "got {:?} want {:?}",
        ch.totals("tb_outage"),
        exp.totals
    );
    assert_eq!(ch.duplicate_rows("tb_outage"), 0);
    let events = d.events();
    let failed = events
        .iter()
        .filter(|e| e["event"] == "insert_failed")
        .count();
    let recovered = events
        .iter()
        .filter(|e| e["event"] == "clickhouse_recovered")
        .count();
    assert!(
        (1..=3).contains(&failed),
        "insert_failed logged {failed} times in 35 s"
    );
    assert_eq!(recovered, 1);
    let growth_mb = max_rss.saturating_sub(rss_before) / 1024;
    println!("outage: rss before {rss_before} kB, max {max_rss} kB, resumed after {resumed_ms} ms, {failed} insert_failed lines");
    assert!(
        growth_mb < 40,
        "RSS grew by {growth_mb} MB while 45 MB waited on disk"
    );
    assert!(d.stop().success());
}

#[test]
fn bad_input_never_stops_ingestion() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let file = watch.join("projects/p/bad.jsonl");
    let mut data: Vec<u8> = Vec::new();
    // Each call writes one line; a trailing newline in `b` is not doubled.
    let mut line = |b: &[u8]| {
        data.extend_from_slice(b.strip_suffix(b"\n").unwrap_or(b));
        data.push(b'\n');
    };
    line(usage_line("bad", "a", "1", "10").as_bytes()); // valid
    line(br#"{"type":"assistant","message":{"id":"#); // malformed JSON
    let cut = usage_line("bad", "b", "2", "20"); // a cut line followed by a complete one
    let cut = cut.trim_end();
    line(format!("{}{}", &usage_line("bad", "cut", "9", "9")[..50], cut).as_bytes());
    let mut bad_utf8 = usage_line("bad", "x1", "5", "5").into_bytes();
    let inside = usage_line("bad", "x1", "5", "5").find("sonnet").unwrap();
    bad_utf8[inside] = 0xff;
    line(&bad_utf8); // invalid UTF-8
    let mut nul = vec![0u8; 12];
    nul.extend_from_slice(usage_line("bad", "c", "3", "30").as_bytes());
    line(&nul); // NUL padding before a complete line
    line(&[0u8; 64]); // NUL only
    line(format!(r#"{{"type":"user","pad":"{}"}}"#, "z".repeat(20_000)).as_bytes()); // over max_line_bytes
    line(format!("{}{}", "[".repeat(1500), "]".repeat(1500)).as_bytes()); // too deep
    line(usage_line("bad", "neg", "-1", "1").as_bytes());
    line(usage_line("bad", "flt", "1.5", "1").as_bytes());
    line(usage_line("bad", "str", "\"7\"", "1").as_bytes());
    line(usage_line("bad", "big", "99999999999999999", "1").as_bytes());
    line(
        usage_line("bad", "miss", "1", "1")
            .replace("\"input_tokens\":1,", "")
            .as_bytes(),
    ); // missing field
    line(
        usage_line("bad", "typ", "1", "1")
            .replace("\"claude-sonnet-4-20250514\"", "42")
            .as_bytes(),
    ); // mistyped
    line(b"[1,2,3]"); // not an object
    line(usage_line("bad", "d", "4", "40").as_bytes()); // valid
    append(&file, &data);

    let cfg = write_config_with(
        work.path(),
        &ch,
        "tb_bad",
        &[&watch],
        "max_line_bytes = 4096",
        "",
    );
    let summary = backfill(&cfg, &[]);
    assert_eq!(summary["usageLines"], 4, "{summary}");
    assert_eq!(summary["malformedLines"], 14, "{summary}");
    let t = ch.totals("tb_bad");
    assert_eq!((t.input_tokens, t.output_tokens, t.messages), (10, 100, 4));

    // Every bad line is in the dead-letter file with its offset and kind.
    let dl = std::fs::read_to_string(work.path().join("state/dead-letter.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = dl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 14);
    let kinds: std::collections::BTreeMap<String, usize> =
        recs.iter().fold(Default::default(), |mut m, r| {
            *m.entry(r["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
            m
        });
    for k in [
        "invalid_json",
        "invalid_utf8",
        "too_long",
        "too_deep",
        "bad_token_count",
        "missing_field",
        "mistyped_field",
        "not_object",
    ] {
        assert!(kinds.contains_key(k), "no {k} in {kinds:?}");
    }
    assert_eq!(kinds["bad_token_count"], 4);
    assert!(recs
        .iter()
        .all(|r| r["source_file"].as_str().unwrap().ends_with("bad.jsonl")));
    let second_line_offset = usage_line("bad", "a", "1", "10").len();
    assert!(recs.iter().any(|r| r["offset"] == second_line_offset));
}

#[test]
fn rows_clickhouse_rejects_go_to_the_dead_letter_file() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    // A guard on the table makes the server reject exactly one row.
    let (rt, c) = ch.client("tb_reject");
    rt.block_on(c.execute(
        "ALTER TABLE tb_reject.messages ADD COLUMN guard UInt8 MATERIALIZED throwIf(input_tokens = 666)",
    ))
    .unwrap();
    let mut text = String::new();
    for i in 0..50 {
        let input = if i == 17 { "666" } else { "1" };
        text.push_str(&usage_line("rej", i, input, "2"));
    }
    append(&watch.join("projects/p/s.jsonl"), text.as_bytes());
    let cfg = write_config(work.path(), &ch, "tb_reject", &[&watch], "");
    let summary = backfill(&cfg, &[]);
    assert_eq!(summary["rowsRejected"], 1, "{summary}");
    assert_eq!(summary["rowsInserted"], 49, "{summary}");
    let t = ch.totals("tb_reject");
    assert_eq!((t.input_tokens, t.messages), (49, 49));
    let dl = std::fs::read_to_string(work.path().join("state/dead-letter.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(dl.lines().next().unwrap()).unwrap();
    assert_eq!(rec["reason"], "rejected_by_clickhouse");
    assert_eq!(rec["row"]["key"], "m-rej-17|r-rej-17");
    assert!(rec["error"].as_str().unwrap().contains("395"), "{rec}");
}
