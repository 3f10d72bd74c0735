//! Codex CLI: `scan --agent codex` against the generator's truth and against
//! ccusage 20.0.24 (`ccusage codex … --json --offline` with `CODEX_HOME`),
//! the hand-written fixtures under `fixtures/codex/` (each with what
//! tokenbridge and ccusage report, where they differ), and a mixed Claude +
//! Codex backfill into a real ClickHouse across `kill -9`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokenbridge::testkit::codex::{self, Spec, Traps};
use tokenbridge::testkit::corpus::{Rng, Tokens};

/// The token fields both tools print, in Codex's shape.
const FIELDS: [&str; 5] = [
    "inputTokens",
    "cacheReadTokens",
    "outputTokens",
    "reasoningOutputTokens",
    "totalTokens",
];

fn run_json(cmd: &mut Command) -> Value {
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

fn ccusage_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/ccusage/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage");
    assert!(
        bin.exists(),
        "ccusage 20.0.24 is not installed: run scripts/setup.sh"
    );
    bin
}

fn ccusage_cmd(home: &Path, kind: &str) -> Command {
    let mut c = Command::new(ccusage_bin());
    c.args(["codex", kind, "--json", "--offline"])
        .env("CODEX_HOME", home)
        .env("TZ", "UTC");
    c
}

fn scan(home: &Path, kind: &str) -> Value {
    run_json(
        bin()
            .args(["scan", "--agent", "codex"])
            .arg(home)
            .args([kind, "--json"]),
    )
}

fn tokens(v: &Value) -> BTreeMap<&'static str, u64> {
    FIELDS
        .iter()
        .map(|f| {
            (
                *f,
                v[*f].as_u64().unwrap_or_else(|| panic!("no {f} in {v}")),
            )
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-9)
}

/// A report's rows by key, as [`Tokens`] (non-cached input, cached, output).
fn as_truth(list: &Value, key: &str) -> BTreeMap<String, Tokens> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let n = |f: &str| v[f].as_u64().unwrap();
            let t = Tokens {
                input_tokens: n("inputTokens"),
                output_tokens: n("outputTokens"),
                cache_creation_tokens: 0,
                cache_read_tokens: n("cacheReadTokens"),
                total_tokens: n("totalTokens"),
                messages: 0,
            };
            (v[key].as_str().unwrap().to_string(), t)
        })
        .collect()
}

fn without_counts(m: &BTreeMap<String, Tokens>) -> BTreeMap<String, Tokens> {
    m.iter()
        .map(|(k, t)| (k.clone(), Tokens { messages: 0, ..*t }))
        .collect()
}

#[test]
fn fixtures_give_their_documented_totals_in_both_tools() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/codex");
    let mut cases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let home = entry.unwrap().path();
        let exp: Value =
            serde_json::from_slice(&std::fs::read(home.join("expected.json")).unwrap()).unwrap();
        let case = home.file_name().unwrap().to_string_lossy().into_owned();
        let ours = scan(&home, "daily");
        assert_eq!(
            tokens(&ours["totals"]),
            tokens(&exp["tokenbridge"]),
            "{case}: tokenbridge"
        );
        let out = ccusage_cmd(&home, "daily").output().unwrap();
        match &exp["ccusage"] {
            Value::String(s) if s == "error" => {
                assert!(!out.status.success(), "{case}: ccusage now reads it");
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("Invalid Codex timestamp"),
                    "{case}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Value::String(s) if s == "same" => {
                let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(
                    tokens(&theirs["totals"]),
                    tokens(&ours["totals"]),
                    "{case}: ccusage"
                );
                let (a, b) = (
                    ours["totals"]["costUSD"].as_f64().unwrap(),
                    theirs["totals"]["costUSD"].as_f64().unwrap(),
                );
                assert!(close(a, b), "{case}: cost {a} vs ccusage {b}");
                // The same models, fallbacks marked alike.
                for (day, theirs_day) in ours["daily"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(theirs["daily"].as_array().unwrap())
                {
                    let models = |d: &Value| -> Vec<(String, Value)> {
                        d["models"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(m, v)| (m.clone(), v["isFallback"].clone()))
                            .collect()
                    };
                    assert_eq!(models(day), models(theirs_day), "{case}: models");
                }
            }
            documented => {
                // A known ccusage error: it still makes it, and tokenbridge
                // does not.
                let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(
                    tokens(&theirs["totals"]),
                    tokens(documented),
                    "{case}: ccusage changed"
                );
                assert_ne!(tokens(&theirs["totals"]), tokens(&ours["totals"]));
            }
        }
        cases += 1;
    }
    assert!(cases >= 9, "only {cases} fixtures");
}

#[test]
fn generated_home_equals_truth_and_ccusage() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("codex");
    let exp = codex::write_home(
        &home,
        &Spec {
            seed: 21,
            target_bytes: 6 << 20,
            traps: Traps::SharedWithCcusage,
            max_calls: 12,
        },
    )
    .unwrap();
    for trap in ["fork", "reemitted_event", "archived", "archived_copy_too"] {
        assert!(exp.traps.contains_key(trap), "no {trap}: {:?}", exp.traps);
    }
    let daily = scan(&home, "daily");
    assert_eq!(
        as_truth(&daily["daily"], "date"),
        without_counts(&exp.by_day)
    );
    assert_eq!(
        daily["totals"]["reasoningOutputTokens"],
        exp.reasoning_tokens
    );
    let sessions = scan(&home, "session");
    assert_eq!(
        as_truth(&sessions["sessions"], "sessionId"),
        without_counts(&exp.by_session)
    );
    for (kind, list, key) in [
        ("daily", "daily", "date"),
        ("monthly", "monthly", "month"),
        ("session", "sessions", "sessionId"),
    ] {
        let ours = scan(&home, kind);
        let theirs = run_json(&mut ccusage_cmd(&home, kind));
        assert_eq!(
            tokens(&ours["totals"]),
            tokens(&theirs["totals"]),
            "{kind} totals"
        );
        let rows = |v: &Value| -> BTreeMap<String, Value> {
            v[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r[key].as_str().unwrap().to_string(), r.clone()))
                .collect()
        };
        let (a, b) = (rows(&ours), rows(&theirs));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{kind} keys"
        );
        for (k, r) in &a {
            assert_eq!(tokens(r), tokens(&b[k]), "{kind} {k}");
            let (x, y) = (
                r["costUSD"].as_f64().unwrap(),
                b[k]["costUSD"].as_f64().unwrap(),
            );
            assert!(close(x, y), "{kind} {k}: cost {x} vs ccusage {y}");
        }
    }
}

#[test]
fn generated_home_with_every_trap_equals_truth() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("codex");
    let exp = codex::write_home(
        &home,
        &Spec {
            seed: 5,
            target_bytes: 4 << 20,
            traps: Traps::All,
            max_calls: 10,
        },
    )
    .unwrap();
    for trap in [
        "fork_copy_spans_seconds",
        "fork_turn_in_copy_second",
        "identical_twin_sessions",
        "six_digit_fractions",
    ] {
        assert!(exp.traps.contains_key(trap), "no {trap}: {:?}", exp.traps);
    }
    let daily = scan(&home, "daily");
    assert_eq!(
        as_truth(&daily["daily"], "date"),
        without_counts(&exp.by_day)
    );
    let sessions = scan(&home, "session");
    assert_eq!(
        as_truth(&sessions["sessions"], "sessionId"),
        without_counts(&exp.by_session)
    );
    let models = scan(&home, "model");
    assert_eq!(
        as_truth(&models["models"], "modelName"),
        without_counts(&exp.by_model)
    );
    // ccusage stops at the first six-digit timestamp.
    let out = ccusage_cmd(&home, "daily").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn mixed_claude_and_codex_backfill_survives_kill9_with_per_agent_truth() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let claude = work.path().join("claude");
    let claude_exp = generated_corpus(&claude, 41, 12 << 20);
    let home = work.path().join("codex");
    let codex_exp = codex::write_home(
        &home,
        &Spec {
            seed: 42,
            target_bytes: 12 << 20,
            traps: Traps::All,
            max_calls: 16,
        },
    )
    .unwrap();
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_mixed",
        &[&claude],
        &format!(
            "[batch]\nmax_rows = 50\nchannel_capacity = 2\n\n[agents.codex]\ndirs = [{:?}]\n",
            home.display().to_string()
        ),
    );
    let mut rng = Rng::new(7);
    let mut kills = 0;
    for _ in 0..10 {
        if backfill_killed_after(&cfg, Duration::from_millis(rng.range(40, 400))) {
            kills += 1;
        }
    }
    assert!(kills >= 5, "only {kills} kills landed mid-run");
    let done = backfill(&cfg, &[]);
    assert_eq!(done["complete"], true, "{done}");
    let by_agent = ch.totals_by("tb_mixed", "agent");
    assert_eq!(by_agent["claude"], claude_exp.totals, "claude");
    assert_eq!(by_agent["codex"], codex_exp.totals, "codex");
    assert_eq!(ch.duplicate_rows("tb_mixed"), 0, "a row was inserted twice");
    // The report from ClickHouse is the scan of the files.
    let reported = run_json(
        bin()
            .args(["report", "daily", "--agent", "codex", "--json", "--config"])
            .arg(&cfg),
    );
    let scanned = scan(&home, "daily");
    assert_eq!(
        as_truth(&reported["daily"], "date"),
        as_truth(&scanned["daily"], "date")
    );
    assert_eq!(
        as_truth(&reported["daily"], "date"),
        without_counts(&codex_exp.by_day)
    );
    let sessions = run_json(
        bin()
            .args([
                "report", "session", "--agent", "codex", "--json", "--config",
            ])
            .arg(&cfg),
    );
    assert_eq!(
        as_truth(&sessions["sessions"], "sessionId"),
        without_counts(&codex_exp.by_session)
    );
    // Without --agent: both agents, with per-agent rows.
    let all = run_json(
        bin()
            .args(["report", "daily", "--json", "--config"])
            .arg(&cfg),
    );
    let agents: BTreeMap<String, u64> = all["totals"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"].as_str().unwrap().to_string(),
                a["totalTokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(agents["claude"], claude_exp.totals.total_tokens);
    assert_eq!(agents["codex"], codex_exp.totals.total_tokens);
}

#[test]
fn daemon_tails_growing_rollouts_across_a_kill9_with_the_state_in_the_checkpoint() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    // The files to grow, generated aside, then written into the watched
    // home piece by piece (cut anywhere, lines included).
    let source = work.path().join("source");
    let exp = codex::write_home(
        &source,
        &Spec {
            seed: 77,
            target_bytes: 3 << 20,
            traps: Traps::All,
            max_calls: 10,
        },
    )
    .unwrap();
    let home = work.path().join("codex");
    std::fs::create_dir_all(home.join("sessions")).unwrap();
    let empty = work.path().join("claude");
    std::fs::create_dir_all(&empty).unwrap();
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_codex_live",
        &[&empty],
        &format!(
            "[batch]\nflush_interval_ms = 200\n\n[agents.codex]\ndirs = [{:?}]\n",
            home.display().to_string()
        ),
    );
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut stack = vec![source.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                let rel = p.strip_prefix(&source).unwrap().to_path_buf();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    let mut rng = Rng::new(3);
    let log = work.path().join("daemon.log");
    let mut daemon = Some(Daemon::start(&cfg, &log));
    let mut written: Vec<usize> = vec![0; files.len()];
    let mut step = 0;
    while written.iter().zip(&files).any(|(w, f)| *w < f.1.len()) {
        step += 1;
        let i = rng.range(0, files.len() as u64 - 1) as usize;
        let (rel, bytes) = &files[i];
        if written[i] == bytes.len() {
            continue;
        }
        let n = (rng.range(1, 40_000) as usize).min(bytes.len() - written[i]);
        let path = home.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        append(&path, &bytes[written[i]..written[i] + n]);
        written[i] += n;
        if step % 40 == 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        if step == 120 {
            // Mid-growth: the state of every half-read file must come back
            // from the checkpoint.
            daemon.take().unwrap().kill9();
            daemon = Some(Daemon::start(&cfg, &log));
        }
    }
    let want = exp.totals;
    let ok = wait_until(Duration::from_secs(120), || {
        ch.totals_by("tb_codex_live", "agent").get("codex") == Some(&want)
    });
    let got = ch.totals_by("tb_codex_live", "agent");
    assert!(ok, "codex totals {:?}, want {want:?}", got.get("codex"));
    assert_eq!(ch.duplicate_rows("tb_codex_live"), 0);
    assert_eq!(daemon.take().unwrap().stop().code(), Some(0));
}
