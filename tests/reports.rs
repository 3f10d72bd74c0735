//! Reports: `scan` (from files) and `report` (from ClickHouse) against the
//! generator's truth and against ccusage 20.0.24 on the same corpus; `verify`
//! against a ClickHouse that lost a row.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tokenbridge::testkit::corpus::{self, Spec, Tokens};

fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn as_truth(list: &serde_json::Value, key: &str) -> BTreeMap<String, Tokens> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let n = |f: &str| v[f].as_u64().unwrap();
            (
                v[key].as_str().unwrap().to_string(),
                Tokens {
                    input_tokens: n("inputTokens"),
                    output_tokens: n("outputTokens"),
                    cache_creation_tokens: n("cacheCreationTokens"),
                    cache_read_tokens: n("cacheReadTokens"),
                    total_tokens: n("totalTokens"),
                    messages: n("messages"),
                },
            )
        })
        .collect()
}

#[test]
fn scan_and_report_equal_the_generator_truth() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("claude");
    let exp = generated_corpus(&dir, 13, 8 << 20);
    let cfg = write_config(work.path(), &ch, "tb_reports", &[&dir], "");
    backfill(&cfg, &[]);
    for (kind, list, key, truth) in [
        ("daily", "daily", "date", &exp.by_day),
        ("session", "sessions", "sessionId", &exp.by_session),
        ("model", "models", "modelName", &exp.by_model),
    ] {
        let scanned = run_json(bin().args(["scan"]).arg(&dir).args([kind, "--json"]));
        let reported = run_json(bin().args(["report", kind, "--json", "--config"]).arg(&cfg));
        assert_eq!(&as_truth(&scanned[list], key), truth, "scan {kind}");
        assert_eq!(&as_truth(&reported[list], key), truth, "report {kind}");
        assert_eq!(scanned, reported, "scan and report disagree on {kind}");
    }
    let monthly = run_json(
        bin()
            .args(["report", "monthly", "--json", "--config"])
            .arg(&cfg),
    );
    assert_eq!(monthly["totals"]["totalTokens"], exp.totals.total_tokens);
    assert!(monthly["totals"]["totalCost"].as_f64().unwrap() > 0.0);
    // Text output is an aligned table.
    let out = bin()
        .args(["report", "daily", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let widths: BTreeSet<usize> = text.lines().map(|l| l.chars().count()).collect();
    assert!(text.starts_with("Date") && text.contains("Total"), "{text}");
    assert!(widths.len() <= 2, "columns not aligned:\n{text}");
}

fn ccusage(dir: &Path, kind: &str) -> serde_json::Value {
    ccusage_with(dir, kind, &[])
}

fn ccusage_with(dir: &Path, kind: &str, extra: &[&str]) -> serde_json::Value {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/ccusage/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage");
    assert!(
        bin.exists(),
        "ccusage 20.0.24 is not installed: run scripts/setup.sh"
    );
    run_json(
        Command::new(bin)
            .args(["claude", kind, "--json", "--offline"])
            .args(extra)
            .env("CLAUDE_CONFIG_DIR", dir)
            .env("TZ", "UTC"),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-9)
}

#[test]
fn scan_matches_ccusage_on_the_same_corpus() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("claude");
    // Every response has a requestId: ccusage does not deduplicate the others
    // (a documented difference).
    let exp = corpus::write_corpus(
        &dir,
        &Spec {
            seed: 21,
            target_bytes: 12 << 20,
            missing_request_id: 0.0,
            ..Spec::default()
        },
    )
    .unwrap();
    let fields = [
        "inputTokens",
        "outputTokens",
        "cacheCreationTokens",
        "cacheReadTokens",
        "totalTokens",
    ];

    let ours = run_json(bin().args(["scan"]).arg(&dir).args(["daily", "--json"]));
    let theirs = ccusage(&dir, "daily");
    for f in fields {
        assert_eq!(ours["totals"][f], theirs["totals"][f], "totals.{f}");
    }
    assert!(close(
        ours["totals"]["totalCost"].as_f64().unwrap(),
        theirs["totals"]["totalCost"].as_f64().unwrap()
    ));
    let by_date = |v: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        v["daily"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["date"].as_str().unwrap().to_string(), d.clone()))
            .collect()
    };
    let (o, t) = (by_date(&ours), by_date(&theirs));
    assert_eq!(o.keys().collect::<Vec<_>>(), t.keys().collect::<Vec<_>>());
    for (date, d) in &o {
        for f in fields {
            assert_eq!(d[f], t[date][f], "{date}.{f}");
        }
        assert!(
            close(
                d["totalCost"].as_f64().unwrap(),
                t[date]["totalCost"].as_f64().unwrap()
            ),
            "{date} cost"
        );
        let models = |v: &serde_json::Value| {
            v["modelsUsed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(models(d), models(&t[date]));
    }

    // Sessions: equal except for resumed sessions and their sources, where
    // ccusage counts copied lines in the file it met them in and tokenbridge
    // in the session their `sessionId` names. Together those agree.
    let ours = run_json(bin().args(["scan"]).arg(&dir).args(["session", "--json"]));
    let theirs = ccusage(&dir, "session");
    let by_id = |v: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["sessionId"].as_str().unwrap().to_string(), s.clone()))
            .collect()
    };
    let (o, t) = (by_id(&ours), by_id(&theirs));
    let involved: BTreeSet<String> = exp.resumed_sessions.iter().flatten().cloned().collect();
    assert!(!involved.is_empty(), "the corpus has no resumed session");
    let mut differing = 0;
    for (id, s) in &o {
        let other = t
            .get(id)
            .unwrap_or_else(|| panic!("ccusage has no session {id}"));
        let same = fields.iter().all(|f| s[*f] == other[*f]);
        if involved.contains(id) {
            differing += usize::from(!same);
            continue;
        }
        assert!(same, "session {id}: ours {s} theirs {other}");
        assert!(
            close(
                s["totalCost"].as_f64().unwrap(),
                other["totalCost"].as_f64().unwrap()
            ),
            "session {id} cost"
        );
        assert_eq!(s["projectPath"], other["projectPath"]);
    }
    let sum = |m: &BTreeMap<String, serde_json::Value>| -> u64 {
        involved
            .iter()
            .filter_map(|id| m.get(id))
            .map(|s| s["totalTokens"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum(&o), sum(&t), "resumed sessions together");
    println!(
        "{differing} of {} resumed/source sessions attribute copied lines differently",
        involved.len()
    );
}

#[test]
fn verify_passes_then_names_the_session_that_lost_a_row() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge"),
        &watch,
    );
    let cfg = write_config(work.path(), &ch, "tb_verify", &[&watch], "");
    backfill(&cfg, &[]);
    let out = bin()
        .args(["verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 sessions match"));

    let (rt, c) = ch.client("tb_verify");
    rt.block_on(c.execute("ALTER TABLE tb_verify.messages DELETE WHERE key = 'msg_h|req_h'"))
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_verify")
        .messages
        == 8));
    let out = bin()
        .args(["verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("session sess-2 differs") && !text.contains("session sess-1"),
        "{text}"
    );
    let one = bin()
        .args(["verify", "--session", "sess-1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(one.status.success());
}

/// Claude Code's advisor calls, fast mode and recorded costs
/// (`fixtures/claude/*`): the same totals, per-model costs and model names as
/// ccusage 20.0.24 in every cost mode, from the files and from ClickHouse.
#[test]
fn advisor_fast_mode_and_recorded_cost_match_ccusage_in_every_cost_mode() {
    let ch = TestClickHouse::start();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/claude");
    let fields = [
        "inputTokens",
        "outputTokens",
        "cacheCreationTokens",
        "cacheReadTokens",
        "totalTokens",
    ];
    for case in ["advisor", "fast-mode", "recorded-cost"] {
        let dir = root.join(case);
        let exp: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let db = format!("tb_fx_{}", case.replace('-', "_"));
        let cfg = write_config(work.path(), &ch, &db, &[&dir], "");
        backfill(&cfg, &[]);
        for mode in ["auto", "calculate", "display"] {
            let scanned = run_json(
                bin()
                    .args(["scan"])
                    .arg(&dir)
                    .args(["daily", "--json", "--mode", mode]),
            );
            let reported = run_json(
                bin()
                    .args(["report", "daily", "--json", "--mode", mode, "--config"])
                    .arg(&cfg),
            );
            let theirs = ccusage_with(&dir, "daily", &["--mode", mode]);
            for ours in [&scanned, &reported] {
                for f in fields {
                    assert_eq!(ours["totals"][f], exp["totals"][f], "{case} {mode} {f}");
                    assert_eq!(ours["totals"][f], theirs["totals"][f], "{case} {mode} {f}");
                }
                let cost = ours["totals"]["totalCost"].as_f64().unwrap();
                let want = exp["totalCost"][mode].as_f64().unwrap();
                assert!(close(cost, want), "{case} {mode}: cost {cost}, want {want}");
                assert!(close(cost, theirs["totals"]["totalCost"].as_f64().unwrap()));
                let per_model = |v: &serde_json::Value| -> BTreeMap<String, (u64, u64, f64)> {
                    v["daily"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|d| d["modelBreakdowns"].as_array().unwrap().clone())
                        .map(|b| {
                            (
                                format!(
                                    "{}@{}",
                                    b["modelName"].as_str().unwrap(),
                                    b["inputTokens"]
                                ),
                                (
                                    b["inputTokens"].as_u64().unwrap(),
                                    b["outputTokens"].as_u64().unwrap(),
                                    b["cost"].as_f64().unwrap(),
                                ),
                            )
                        })
                        .collect()
                };
                let (a, b) = (per_model(ours), per_model(&theirs));
                assert_eq!(
                    a.keys().collect::<Vec<_>>(),
                    b.keys().collect::<Vec<_>>(),
                    "{case} {mode}"
                );
                for (k, x) in &a {
                    let y = b[k];
                    assert_eq!((x.0, x.1), (y.0, y.1), "{case} {mode} {k}");
                    assert!(
                        close(x.2, y.2),
                        "{case} {mode} {k}: cost {} vs {}",
                        x.2,
                        y.2
                    );
                }
            }
        }
        let models: BTreeSet<String> =
            run_json(bin().args(["scan"]).arg(&dir).args(["daily", "--json"]))["daily"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|d| d["modelsUsed"].as_array().unwrap().clone())
                .map(|m| m.as_str().unwrap().to_string())
                .collect();
        let want: BTreeSet<String> = exp["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        assert_eq!(models, want, "{case}");
    }
}

/// `blocks` (5-hour billing windows and the gaps between them) and `weekly`
/// (Sunday and Monday weeks) from files and from ClickHouse equal ccusage
/// 20.0.24's on a generated corpus: every block's times, entry count, token
/// counts and models; costs within 0.1 %.
#[test]
fn blocks_and_weekly_match_ccusage() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("claude");
    corpus::write_corpus(
        &dir,
        &Spec {
            seed: 23,
            target_bytes: 6 << 20,
            missing_request_id: 0.0,
            ..Spec::default()
        },
    )
    .unwrap();
    // Sparse activity too: windows crossed, gaps, a gap that starts after
    // the next block's (hour-floored) start.
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/claude/blocks"),
        &dir,
    );
    let ch = TestClickHouse::start();
    let cfg = write_config(work.path(), &ch, "tb_blocks", &[&dir], "");
    assert_eq!(backfill(&cfg, &[])["complete"], true);

    let theirs = ccusage(&dir, "blocks");
    let scanned = run_json(bin().arg("scan").arg(&dir).args(["blocks", "--json"]));
    let reported = run_json(
        bin()
            .args(["report", "blocks", "--json", "--config"])
            .arg(&cfg),
    );
    let blocks = |v: &serde_json::Value| v["blocks"].as_array().unwrap().clone();
    let (t, s, r) = (blocks(&theirs), blocks(&scanned), blocks(&reported));
    assert!(t.len() >= 3, "{} blocks", t.len());
    assert!(t.iter().any(|b| b["isGap"] == true), "no gap in the corpus");
    for ours in [&s, &r] {
        assert_eq!(ours.len(), t.len());
        for (a, b) in ours.iter().zip(&t) {
            for f in [
                "id",
                "startTime",
                "endTime",
                "actualEndTime",
                "isGap",
                "isActive",
                "entries",
                "tokenCounts",
                "totalTokens",
            ] {
                assert_eq!(a[f], b[f], "{f} of block {}", b["id"]);
            }
            let models = |v: &serde_json::Value| {
                let mut m: Vec<String> = serde_json::from_value(v["models"].clone()).unwrap();
                m.sort();
                m
            };
            assert_eq!(models(a), models(b), "models of {}", b["id"]);
            assert!(
                close(
                    a["costUSD"].as_f64().unwrap(),
                    b["costUSD"].as_f64().unwrap()
                ),
                "cost of {}: {} vs {}",
                b["id"],
                a["costUSD"],
                b["costUSD"]
            );
        }
    }

    for start in ["sunday", "monday"] {
        let theirs = ccusage_with(&dir, "weekly", &["--start-of-week", start]);
        let ours = run_json(bin().arg("scan").arg(&dir).args([
            "weekly",
            "--json",
            "--start-of-week",
            start,
        ]));
        let weeks = |v: &serde_json::Value| -> Vec<(String, u64)> {
            v["weekly"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    (
                        w["week"].as_str().unwrap().to_string(),
                        w["totalTokens"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(weeks(&ours), weeks(&theirs), "weeks starting {start}");
        assert!(close(
            ours["totals"]["totalCost"].as_f64().unwrap(),
            theirs["totals"]["totalCost"].as_f64().unwrap()
        ));
    }
}
