//! Backfill against a real ClickHouse: generated corpus and hand-written
//! fixtures, totals checked to the token against independent truths.

mod common;

use std::path::Path;

use common::*;
use tokenbridge::testkit::corpus::Expected;

fn check_against_truth(ch: &TestClickHouse, db: &str, exp: &Expected) {
    assert_eq!(ch.totals(db), exp.totals, "overall totals");
    assert_eq!(ch.totals_by(db, "model"), exp.by_model, "per model");
    assert_eq!(
        ch.totals_by(db, "session_id"),
        exp.by_session,
        "per session"
    );
    assert_eq!(ch.totals_by(db, "toDate(ts)"), exp.by_day, "per UTC day");
    assert_eq!(
        ch.duplicate_rows(db),
        0,
        "a (key, version) row inserted twice"
    );
}

#[test]
fn backfill_generated_corpus_equals_truth_and_is_idempotent() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let corpus_dir = work.path().join("claude");
    let exp = generated_corpus(&corpus_dir, 7, 12 << 20);
    assert!(
        exp.naive.total_tokens > exp.totals.total_tokens,
        "corpus must contain duplicates"
    );
    let cfg = write_config(work.path(), &ch, "tb_backfill", &[&corpus_dir], "");
    let summary = backfill(&cfg, &[]);
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["files"], exp.files);
    assert_eq!(summary["malformedLines"], exp.malformed_lines);
    assert_eq!(summary["bytes"], exp.bytes);
    // The time after the last insert (summaries, checkpoints) is part of the
    // run's own time.
    let after_ms = summary["afterLastCommitMs"].as_f64().unwrap();
    let elapsed_ms = summary["elapsedSeconds"].as_f64().unwrap() * 1000.0;
    assert!(after_ms >= 0.0 && after_ms <= elapsed_ms + 1.0, "{summary}");
    check_against_truth(&ch, "tb_backfill", &exp);

    // Nothing new: a second backfill reads nothing and inserts nothing.
    let again = backfill(&cfg, &[]);
    assert_eq!(again["bytes"], 0);
    assert_eq!(again["rowsInserted"], 0);
    check_against_truth(&ch, "tb_backfill", &exp);

    // A fresh state dir re-reads everything; the dedup index loaded from
    // ClickHouse drops every row, so the table does not change.
    let raw_before = ch.raw_rows("tb_backfill");
    std::fs::remove_dir_all(work.path().join("state")).unwrap();
    let fresh = backfill(&cfg, &[]);
    assert_eq!(fresh["bytes"], exp.bytes);
    assert_eq!(fresh["rowsInserted"], 0);
    assert_eq!(ch.raw_rows("tb_backfill"), raw_before);
    check_against_truth(&ch, "tb_backfill", &exp);
}

#[test]
fn usage_lines_only_mode_gives_the_same_totals() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let corpus_dir = work.path().join("claude");
    let exp = generated_corpus(&corpus_dir, 9, 6 << 20);
    let cfg = write_config_with(
        work.path(),
        &ch,
        "tb_fast",
        &[&corpus_dir],
        "validate_all_lines = false",
        "",
    );
    let summary = backfill(&cfg, &[]);
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["bytes"], exp.bytes);
    check_against_truth(&ch, "tb_fast", &exp);
    // Lines that cannot carry usage are not validated: their malformed ones
    // count as `other`, so fewer malformed lines are reported, never more.
    let malformed = summary["malformedLines"].as_u64().unwrap();
    assert!(malformed <= exp.malformed_lines, "{malformed}");
}

#[test]
fn fixtures_edge_cases() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge");
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("expected.json")).unwrap()).unwrap();
    let cfg = write_config(work.path(), &ch, "tb_fixtures", &[&fixtures], "");
    let summary = backfill(&cfg, &[&fixtures]);
    assert_eq!(summary["malformedLines"], exp["malformedLines"]);
    assert_eq!(summary["blankLines"], exp["blankLines"]);
    let totals = serde_json::to_value(ch.totals("tb_fixtures")).unwrap();
    assert_eq!(totals, exp["totals"]);
    let by_session = serde_json::to_value(ch.totals_by("tb_fixtures", "session_id")).unwrap();
    assert_eq!(by_session, exp["bySession"]);

    // The report command prints the same totals.
    let out = bin()
        .args(["report", "totals", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, exp["totals"]);

    // The main-chain copy of msg_f won over the larger sidechain line.
    let (rt, c) = ch.client("tb_fixtures");
    let (out, side): (u64, u8) = rt
        .block_on(
            c.raw()
                .query("SELECT output_tokens, is_sidechain FROM tb_fixtures.messages FINAL WHERE key = 'msg_f|req_f'")
                .fetch_one(),
        )
        .unwrap();
    assert_eq!((out, side), (20, 0));
}

#[test]
fn thousands_of_files_fit_in_a_small_descriptor_limit() {
    use std::os::unix::process::CommandExt;
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("claude/projects/p");
    for i in 0..2000 {
        append(&dir.join(format!("s{i}.jsonl")), usage_line("fd", i, 1, 1));
    }
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_fds",
        &[&work.path().join("claude")],
        "",
    );
    let mut cmd = bin();
    cmd.args(["backfill", "--json", "--config"]).arg(&cfg);
    // SAFETY: setrlimit in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["files"], 2000, "{summary}");
    assert_eq!(summary["fileErrors"], 0, "{summary}");
    assert_eq!(ch.totals("tb_fds").messages, 2000);
}

/// A large batch goes out as parallel inserts of at least
/// `MIN_ROWS_PER_INSERT` rows each: as many parts land as the split says,
/// and every row lands once.
#[test]
fn large_batches_go_out_as_parallel_inserts() {
    use tokenbridge::ch::client::MIN_ROWS_PER_INSERT;
    use tokenbridge::record::UsageRow;
    let ch = TestClickHouse::start();
    let rows = |n: u64| -> Vec<UsageRow> {
        (0..n)
            .map(|i| UsageRow {
                key: format!("m{i}|r{i}"),
                version: (1 << 63) | (i << 1),
                ts: 1_757_000_000,
                ts_ms: 1_757_000_000_000,
                session_id: format!("s{}", i % 7).into(),
                project: "p".into(),
                is_sidechain: 0,
                agent_id: "".into(),
                model: "claude-sonnet-4-20250514".into(),
                message_id: format!("m{i}"),
                request_id: format!("r{i}"),
                entry_type: "assistant".into(),
                input_tokens: i,
                output_tokens: 2 * i,
                cache_creation_input_tokens: 0,
                cache_creation_5m_tokens: 0,
                cache_creation_1h_tokens: 0,
                cache_read_input_tokens: 1,
                web_search_requests: 0,
                web_fetch_requests: 0,
                service_tier: "standard".into(),
                cwd: "/w".into(),
                git_branch: "main".into(),
                cc_version: "2.0.1".into(),
                source_file: "/w/s.jsonl".into(),
                source_offset: i,
                cost_usd: 0.0,
                agent: "claude".into(),
                reasoning_tokens: 0,
                recorded_cost_usd: None,
                host: "".into(),
                user: "".into(),
            })
            .collect()
    };
    let min = MIN_ROWS_PER_INSERT as u64;
    for (db, n, parallel, parts) in [
        ("tb_par2", 2 * min + 100, 2, 2),
        ("tb_par1", 2 * min + 100, 1, 1),
        ("tb_small", 2 * min - 1, 2, 1),
        ("tb_par4", 4 * min + 3, 4, 4),
    ] {
        let (rt, c) = ch.client(db);
        rt.block_on(c.insert_into("messages", &rows(n), parallel))
            .unwrap();
        assert_eq!(ch.raw_rows(db), n, "{db}");
        // Inserted parts are level 0 and stay listed (inactive) after a merge.
        let inserted: u64 = rt
            .block_on(
                c.raw()
                    .query(&format!(
                        "SELECT count() FROM system.parts WHERE database = '{db}' \
                         AND table = 'messages' AND level = 0"
                    ))
                    .fetch_one(),
            )
            .unwrap();
        assert_eq!(inserted, parts, "{db}");
        let t = ch.totals(db);
        assert_eq!(
            (
                t.messages,
                t.input_tokens,
                t.output_tokens,
                t.cache_read_tokens
            ),
            (n, n * (n - 1) / 2, n * (n - 1), n),
            "{db}"
        );
    }
}
