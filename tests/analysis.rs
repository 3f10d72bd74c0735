//! Enhanced analysis and session summaries against a real ClickHouse: the
//! flag changes no token total, the `sessions` table equals the generator's
//! truth (deduplicated and naive), content estimates in ClickHouse equal the
//! offline scan's, and a growing session's summary follows it across a
//! restart.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// One `sessions` row, as the test reads it.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
struct SessionRow {
    session_id: String,
    messages: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_tokens: u64,
    cache_read_tokens: u64,
    total_tokens: u64,
    cost_usd: f64,
    naive_lines: u64,
    naive_total_tokens: u64,
    overcount_pct: f64,
    cache_share_pct: f64,
    est_user_prompt_tokens: u64,
    est_tool_result_tokens: u64,
    est_assistant_text_tokens: u64,
    est_thinking_tokens: u64,
    est_tool_use_tokens: u64,
    est_system_tokens: u64,
    est_sidechain_user_prompt_tokens: u64,
    est_sidechain_tool_result_tokens: u64,
    est_sidechain_assistant_text_tokens: u64,
    est_sidechain_thinking_tokens: u64,
    est_sidechain_tool_use_tokens: u64,
    est_sidechain_system_tokens: u64,
    est_assistant_output_tokens: u64,
}

fn sessions(ch: &TestClickHouse, db: &str) -> BTreeMap<String, SessionRow> {
    let (rt, c) = ch.client(db);
    let sql = format!(
        "SELECT session_id, messages, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, \
         total_tokens, cost_usd, naive_lines, naive_total_tokens, overcount_pct, cache_share_pct, \
         est_user_prompt_tokens, est_tool_result_tokens, est_assistant_text_tokens, est_thinking_tokens, \
         est_tool_use_tokens, est_system_tokens, est_sidechain_user_prompt_tokens, est_sidechain_tool_result_tokens, \
         est_sidechain_assistant_text_tokens, est_sidechain_thinking_tokens, est_sidechain_tool_use_tokens, \
         est_sidechain_system_tokens, est_assistant_output_tokens FROM {db}.sessions FINAL"
    );
    let rows: Vec<SessionRow> = rt.block_on(c.raw().query(&sql).fetch_all()).unwrap();
    rows.into_iter()
        .map(|r| (r.session_id.clone(), r))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn scan_json(args: &[&str]) -> serde_json::Value {
    let out = bin().arg("scan").args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn enhanced_analysis_leaves_totals_alone_and_summaries_match_truth() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let corpus_dir = work.path().join("claude");
    let exp = generated_corpus(&corpus_dir, 11, 6 << 20);
    let (base_dir, enh_dir) = (work.path().join("base"), work.path().join("enh"));
    std::fs::create_dir_all(&base_dir).unwrap();
    std::fs::create_dir_all(&enh_dir).unwrap();
    let cfg_base = write_config(&base_dir, &ch, "tb_an_base", &[&corpus_dir], "");
    let cfg_enh = write_config(
        &enh_dir,
        &ch,
        "tb_an_enh",
        &[&corpus_dir],
        "[analysis]\nenhanced = true\n",
    );
    let sb = backfill(&cfg_base, &[]);
    let se = backfill(&cfg_enh, &[]);
    assert_eq!(sb["complete"], true);
    assert_eq!(se["complete"], true);

    // The flag changes no token figure.
    assert_eq!(ch.totals("tb_an_base"), exp.totals);
    assert_eq!(ch.totals("tb_an_enh"), exp.totals);
    assert_eq!(
        ch.totals_by("tb_an_enh", "session_id"),
        ch.totals_by("tb_an_base", "session_id")
    );

    // The overhead figures, side by side.
    let (ab, ae) = (&sb["analysis"], &se["analysis"]);
    eprintln!("analysis cost: base run {ab}\nenhanced run {ae}");
    assert!(ab["baseCpuMsPerMb"].as_f64().unwrap() > 0.0);
    assert_eq!(ab["enhancedCpuMsPerMb"].as_f64().unwrap(), 0.0);
    assert_eq!(ab["enhancedInsertBytes"], 0);
    assert!(ae["enhancedCpuMsPerMb"].as_f64().unwrap() > 0.0);
    assert!(ae["enhancedInsertBytes"].as_u64().unwrap() > 0);
    assert!(se["contentRowsInserted"].as_u64().unwrap() > 0);
    assert_eq!(sb["contentRowsInserted"], 0);

    // Summaries: exact per session, with the naive figures of the generator.
    let report = scan_json(&[corpus_dir.to_str().unwrap(), "session"]);
    let mut cost_by_session = BTreeMap::new();
    for s in report["sessions"].as_array().unwrap() {
        cost_by_session.insert(
            s["sessionId"].as_str().unwrap().to_string(),
            s["totalCost"].as_f64().unwrap(),
        );
    }
    for db in ["tb_an_base", "tb_an_enh"] {
        let sums = sessions(&ch, db);
        assert_eq!(
            sums.keys().collect::<Vec<_>>(),
            exp.by_session.keys().collect::<Vec<_>>(),
            "{db}: one summary per session"
        );
        for (id, s) in &sums {
            let t = &exp.by_session[id];
            assert_eq!(
                (
                    s.messages,
                    s.input_tokens,
                    s.output_tokens,
                    s.cache_creation_tokens,
                    s.cache_read_tokens,
                    s.total_tokens
                ),
                (
                    t.messages,
                    t.input_tokens,
                    t.output_tokens,
                    t.cache_creation_tokens,
                    t.cache_read_tokens,
                    t.total_tokens
                ),
                "{db} {id}"
            );
            let naive = &exp.naive_by_session[id];
            assert_eq!(s.naive_total_tokens, naive.total_tokens, "{db} {id} naive");
            assert_eq!(s.naive_lines, naive.messages, "{db} {id} naive lines");
            let over = (s.naive_total_tokens as f64 - s.total_tokens as f64) * 100.0
                / s.total_tokens as f64;
            assert!(close(s.overcount_pct, over), "{db} {id} overcount");
            let share = (s.cache_creation_tokens + s.cache_read_tokens) as f64 * 100.0
                / s.total_tokens as f64;
            assert!(close(s.cache_share_pct, share), "{db} {id} cache share");
            assert!(
                (s.cost_usd - cost_by_session[id]).abs() <= 1e-9 + 1e-6 * s.cost_usd,
                "{db} {id} cost {} vs scan {}",
                s.cost_usd,
                cost_by_session[id]
            );
        }
        let over_all: u64 = sums.values().map(|s| s.naive_total_tokens).sum();
        assert_eq!(over_all, exp.naive.total_tokens, "{db}: naive overall");
    }

    // Base mode estimates nothing; enhanced mode's estimates in ClickHouse
    // equal the offline scan's, category by category.
    let base = sessions(&ch, "tb_an_base");
    assert!(base.values().all(|s| s.est_user_prompt_tokens == 0
        && s.est_assistant_output_tokens == 0
        && s.est_system_tokens == 0));
    let enh = sessions(&ch, "tb_an_enh");
    let offline = scan_json(&[
        corpus_dir.to_str().unwrap(),
        "daily",
        "--analysis",
        "heuristic",
    ]);
    let c = &offline["analysis"]["content"];
    let sum = |f: fn(&SessionRow) -> u64| enh.values().map(f).sum::<u64>();
    let got = serde_json::json!({
        "userPrompt": sum(|s| s.est_user_prompt_tokens),
        "toolResult": sum(|s| s.est_tool_result_tokens),
        "assistantText": sum(|s| s.est_assistant_text_tokens),
        "thinking": sum(|s| s.est_thinking_tokens),
        "toolUse": sum(|s| s.est_tool_use_tokens),
        "system": sum(|s| s.est_system_tokens),
        "sidechain": {
            "userPrompt": sum(|s| s.est_sidechain_user_prompt_tokens),
            "toolResult": sum(|s| s.est_sidechain_tool_result_tokens),
            "assistantText": sum(|s| s.est_sidechain_assistant_text_tokens),
            "thinking": sum(|s| s.est_sidechain_thinking_tokens),
            "toolUse": sum(|s| s.est_sidechain_tool_use_tokens),
            "system": sum(|s| s.est_sidechain_system_tokens),
        },
        "entries": c["entries"],
    });
    assert_eq!(&got, c, "content estimates: ClickHouse vs offline scan");
    for k in [
        "userPrompt",
        "toolResult",
        "assistantText",
        "thinking",
        "toolUse",
        "system",
    ] {
        assert!(c[k].as_u64().unwrap() > 0, "corpus has {k} content");
    }
    assert!(c["sidechain"]["userPrompt"].as_u64().unwrap() > 0);
    assert_eq!(
        sum(|s| s.est_assistant_output_tokens),
        offline["analysis"]["estimatedAssistantOutput"]
            .as_u64()
            .unwrap()
    );
    // Re-reading everything (fresh state) changes nothing: content rows and
    // naive sums replace themselves.
    std::fs::remove_dir_all(enh_dir.join("state")).unwrap();
    backfill(&cfg_enh, &[]);
    assert_eq!(sessions(&ch, "tb_an_enh"), enh);
    // So does re-reading with enhanced analysis turned off: the summaries
    // keep the estimates the content table holds.
    let off_dir = work.path().join("off");
    std::fs::create_dir_all(&off_dir).unwrap();
    let cfg_off = write_config(&off_dir, &ch, "tb_an_enh", &[&corpus_dir], "");
    backfill(&cfg_off, &[]);
    let after = sessions(&ch, "tb_an_enh");
    assert_eq!(after.len(), enh.len());
    for (id, s) in &after {
        let before = &enh[id];
        assert_eq!(
            (
                s.est_user_prompt_tokens,
                s.est_assistant_output_tokens,
                s.est_system_tokens
            ),
            (
                before.est_user_prompt_tokens,
                before.est_assistant_output_tokens,
                before.est_system_tokens
            ),
            "{id}"
        );
        assert_eq!(
            (s.total_tokens, s.naive_total_tokens),
            (before.total_tokens, before.naive_total_tokens)
        );
    }
}

fn user_line(session: &str, uuid: &str, text: &str) -> String {
    format!(
        "{{\"type\":\"user\",\"sessionId\":\"{session}\",\"uuid\":\"{uuid}\",\"timestamp\":\"2025-09-01T09:59:00Z\",\"message\":{{\"role\":\"user\",\"content\":\"{text}\"}}}}\n"
    )
}

#[test]
fn session_summary_follows_a_growing_session_across_a_restart() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let file = watch.join("projects/p/grow.jsonl");
    append(&file, user_line("grow", "u1", "hello world"));
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_grow",
        &[&watch],
        "[analysis]\nenhanced = true\n",
    );
    let summary = |ch: &TestClickHouse| sessions(ch, "tb_grow").get("grow").cloned();
    let log = work.path().join("d.log");
    let d = Daemon::start(&cfg, &log);

    // A partial line of m1 (output 1), then its full line (5) and m2 (3).
    append(&file, usage_line("grow", 1, 10, 1));
    assert!(
        wait_until(Duration::from_secs(30), || summary(&ch)
            .is_some_and(|s| s.naive_lines == 1)),
        "{}",
        d.log_text()
    );
    let s = summary(&ch).unwrap();
    assert_eq!((s.messages, s.output_tokens), (1, 1));
    assert_eq!(s.est_user_prompt_tokens, 2);
    append(
        &file,
        usage_line("grow", 1, 10, 5) + &usage_line("grow", 2, 20, 3),
    );
    assert!(wait_until(Duration::from_secs(30), || summary(&ch)
        .is_some_and(|s| s.naive_lines == 3)));
    let s = summary(&ch).unwrap();
    assert_eq!((s.messages, s.input_tokens, s.output_tokens), (2, 30, 8));
    assert_eq!(s.naive_total_tokens, 11 + 15 + 23);
    assert!(close(s.overcount_pct, (49.0 - 38.0) * 100.0 / 38.0));

    // ClickHouse refuses summaries and content for a while: usage rows still
    // land, the refusals are logged, and the summary catches up afterwards.
    let (rt, c) = ch.client("tb_grow");
    // Conditions no existing row meets (ALTER evaluates them on old rows).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for (t, cond) in [
        ("sessions", format!("updated_ms > {now_ms}")),
        ("content", "key = 'u-lost'".to_string()),
    ] {
        rt.block_on(c.execute(&format!(
            "ALTER TABLE tb_grow.{t} ADD COLUMN guard UInt8 MATERIALIZED throwIf({cond})"
        )))
        .unwrap();
    }
    append(
        &file,
        user_line("grow", "u-lost", "refused") + &usage_line("grow", 9, 1, 1),
    );
    let dref = &d;
    let has = |event: &'static str| move || dref.events().iter().any(|e| e["event"] == event);
    assert!(wait_until(Duration::from_secs(30), has("summary_failed")));
    assert!(wait_until(
        Duration::from_secs(30),
        has("aux_rows_rejected")
    ));
    assert_eq!(ch.totals("tb_grow").messages, 3);
    for t in ["sessions", "content"] {
        rt.block_on(c.execute(&format!("ALTER TABLE tb_grow.{t} DROP COLUMN guard")))
            .unwrap();
    }
    assert!(wait_until(
        Duration::from_secs(30),
        has("summary_recovered")
    ));
    assert!(wait_until(Duration::from_secs(30), || summary(&ch)
        .is_some_and(|s| s.messages == 3 && s.naive_lines == 4)));
    assert!(d.stop().success());
    let ev = events_of(&log);
    let cost = ev
        .iter()
        .find(|e| e["event"] == "analysis_cost")
        .expect("analysis_cost logged at stop");
    for f in [
        "megabytes",
        "base_cpu_ms_per_mb",
        "enhanced_cpu_ms_per_mb",
        "base_insert_bytes",
        "enhanced_insert_bytes",
    ] {
        assert!(cost[f].is_number(), "analysis_cost.{f}");
    }
    let rejected = ev
        .iter()
        .find(|e| e["event"] == "aux_rows_rejected")
        .unwrap();
    assert_eq!(rejected["table"], "content");
    assert!(rejected["rows"].is_number() && rejected["error"].is_string());
    let failed = ev.iter().find(|e| e["event"] == "summary_failed").unwrap();
    assert!(failed["sessions"].is_number() && failed["error"].is_string());

    // After a restart the naive sums resume with the offset: nothing counted twice.
    let d = Daemon::start(&cfg, &log);
    append(
        &file,
        usage_line("grow", 3, 1, 1) + &user_line("grow", "u2", "again"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || summary(&ch)
            .is_some_and(
                |s| s.naive_lines == 5 && s.est_user_prompt_tokens == 3
            )),
        "{:?}\n{}",
        summary(&ch),
        d.log_text()
    );
    let s = summary(&ch).unwrap();
    assert_eq!((s.messages, s.total_tokens), (4, 42));
    assert_eq!(s.naive_total_tokens, 53);
    assert!(d.stop().success());
}
