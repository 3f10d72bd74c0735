//! The agents beyond Claude Code and Codex (pi, OpenClaw, Qwen Code, Grok
//! Build, Kimi, Copilot CLI, Gemini CLI): the
//! hand-written fixtures under
//! `fixtures/<agent>/` give their documented totals in tokenbridge's `scan`
//! and in ccusage 20.0.24 (`ccusage <agent> daily --json --offline`, in the
//! `auto` and `calculate` cost modes), and the same folders backfilled into
//! a real ClickHouse, then grown while the daemon runs across a kill -9,
//! report what `scan` reports. Generated homes of every agent (the repo's
//! generator, with their traps) equal the generator's truth in `scan`, in
//! ccusage, and in ClickHouse after a backfill killed on the way.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokenbridge::testkit::corpus::Tokens;

/// The token fields of the common report shape.
const FIELDS: [&str; 5] = [
    "inputTokens",
    "outputTokens",
    "cacheCreationTokens",
    "cacheReadTokens",
    "totalTokens",
];

/// The agents with fixtures here, and the variable ccusage reads their
/// folder from.
const AGENTS: [(&str, &str); 7] = [
    ("pi", "PI_AGENT_DIR"),
    ("openclaw", "OPENCLAW_DIR"),
    ("qwen", "QWEN_DATA_DIR"),
    ("grok", "GROK_HOME"),
    ("kimi", "KIMI_DATA_DIR"),
    ("copilot", "COPILOT_HOME"),
    ("gemini", "GEMINI_DATA_DIR"),
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

fn ccusage(agent: &str, var: &str, dir: &Path, mode: &str) -> Value {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/ccusage/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage");
    assert!(
        bin.exists(),
        "ccusage is not installed: run scripts/setup.sh"
    );
    run_json(
        Command::new(bin)
            .args([agent, "daily", "--json", "--offline", "--mode", mode])
            .env(var, dir)
            .env("TZ", "UTC"),
    )
}

fn scan(agent: &str, dir: &Path, kind: &str, mode: &str) -> Value {
    run_json(
        bin()
            .args(["scan", "--agent", agent])
            .arg(dir)
            .args([kind, "--json", "--mode", mode]),
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

fn models(report: &Value) -> Vec<String> {
    let mut m: Vec<String> = report["daily"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["modelsUsed"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    m.sort();
    m.dedup();
    m
}

/// `expected` (`totals`, `totalCost` per mode, `models`) against a report
/// per mode.
fn check(case: &str, who: &str, expected: &Value, reports: &BTreeMap<&str, Value>) {
    assert_eq!(
        tokens(&reports["auto"]["totals"]),
        tokens(&expected["totals"]),
        "{case}: {who} totals"
    );
    for (mode, report) in reports {
        let (got, want) = (
            report["totals"]["totalCost"].as_f64().unwrap(),
            expected["totalCost"][*mode].as_f64().unwrap(),
        );
        assert!(
            close(got, want),
            "{case}: {who} {mode} cost {got} vs {want}"
        );
    }
    let want: Vec<String> = serde_json::from_value(expected["models"].clone()).unwrap();
    assert_eq!(models(&reports["auto"]), want, "{case}: {who} models");
}

#[test]
fn fixtures_give_their_documented_totals_in_both_tools() {
    let mut cases = 0;
    for (agent, var) in AGENTS {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(agent);
        for entry in std::fs::read_dir(&root).unwrap() {
            let dir = entry.unwrap().path();
            let case = format!("{agent}/{}", dir.file_name().unwrap().to_string_lossy());
            let exp: Value =
                serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
            let modes = ["auto", "calculate"];
            let ours: BTreeMap<&str, Value> = modes
                .iter()
                .map(|m| (*m, scan(agent, &dir, "daily", m)))
                .collect();
            check(&case, "tokenbridge", &exp["tokenbridge"], &ours);
            let theirs: BTreeMap<&str, Value> = modes
                .iter()
                .map(|m| (*m, ccusage(agent, var, &dir, m)))
                .collect();
            match &exp["ccusage"] {
                Value::String(s) if s == "same" => {
                    check(&case, "ccusage", &exp["tokenbridge"], &theirs);
                    // Day by day too, not only the sums.
                    for day in ours["auto"]["daily"].as_array().unwrap() {
                        let date = &day["date"];
                        let other = theirs["auto"]["daily"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|d| d["date"] == *date)
                            .unwrap_or_else(|| panic!("{case}: ccusage has no {date}"));
                        assert_eq!(tokens(day), tokens(other), "{case} {date}");
                    }
                }
                differs => {
                    check(&case, "ccusage", differs, &theirs);
                    assert_ne!(
                        differs, &exp["tokenbridge"],
                        "{case}: listed as a difference but the tools agree"
                    );
                }
            }
            cases += 1;
        }
    }
    assert!(cases >= 16, "only {cases} fixtures");
}

/// Copies every fixture of `agent` into one folder of that agent's layout.
fn merged_fixtures(agent: &str, to: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(agent);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(&root).unwrap() {
        copy_tree(&entry.unwrap().path(), to);
    }
    let _ = std::fs::remove_file(to.join("expected.json"));
    to.to_path_buf()
}

/// A pi response line (as pi writes it) for the live part.
fn pi_line(id: &str, ts: &str, input: u64, output: u64) -> String {
    format!(
        r#"{{"type":"message","id":"{id}","parentId":null,"timestamp":"{ts}","message":{{"role":"assistant","content":[],"provider":"anthropic","model":"claude-sonnet-4-5","usage":{{"input":{input},"output":{output},"cacheRead":0,"cacheWrite":0,"totalTokens":{}}},"stopReason":"stop"}}}}"#,
        input + output
    ) + "\n"
}

/// Writes a Gemini session document with `n` responses of 1,000 input and
/// 10 output tokens (the first one's output raised by `extra`), the way
/// Gemini CLI rewrites it: truncate, then write.
fn write_gemini_doc(path: &Path, n: u64, extra: u64) {
    let messages: Vec<Value> = (1..=n)
        .map(|i| {
            let out = 10 + if i == 1 { extra } else { 0 };
            serde_json::json!({
                "id": format!("r{i}"),
                "timestamp": format!("2026-11-27T10:00:{i:02}.000Z"),
                "type": "gemini",
                "model": "gemini-2.5-flash",
                "tokens": {"input": 1000, "output": out, "cached": 0, "thoughts": 0, "tool": 0, "total": 1000 + out},
            })
        })
        .collect();
    let doc = serde_json::json!({
        "sessionId": "live-gemini",
        "startTime": "2026-11-27T10:00:00.000Z",
        "lastUpdated": format!("2026-11-27T10:00:{n:02}.000Z"),
        "messages": messages,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

fn report(cfg: &Path, agent: &str) -> Value {
    run_json(
        bin()
            .args(["report", "daily", "--agent", agent, "--json", "--config"])
            .arg(cfg),
    )
}

#[test]
fn backfilled_and_live_agents_report_what_scan_reads() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let pi = merged_fixtures("pi", &work.path().join("pi"));
    let claw = merged_fixtures("openclaw", &work.path().join("openclaw"));
    let qwen = merged_fixtures("qwen", &work.path().join("qwen"));
    let grok = merged_fixtures("grok", &work.path().join("grok"));
    let kimi = merged_fixtures("kimi", &work.path().join("kimi"));
    let copilot = merged_fixtures("copilot", &work.path().join("copilot"));
    let gemini = merged_fixtures("gemini", &work.path().join("gemini"));
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_agents",
        &[],
        &format!(
            "[agents.pi]\ndirs = [{:?}]\n\n[agents.openclaw]\ndirs = [{:?}]\n\n[agents.qwen]\ndirs = [{:?}]\n\n[agents.grok]\ndirs = [{:?}]\n\n[agents.kimi]\ndirs = [{:?}]\n\n[agents.copilot]\ndirs = [{:?}]\n\n[agents.gemini]\ndirs = [{:?}]\n",
            pi.display().to_string(),
            claw.display().to_string(),
            qwen.display().to_string(),
            grok.display().to_string(),
            kimi.display().to_string(),
            copilot.display().to_string(),
            gemini.display().to_string()
        ),
    );
    let done = backfill(&cfg, &[]);
    assert_eq!(done["complete"], true, "{done}");
    for (agent, dir) in [
        ("pi", &pi),
        ("openclaw", &claw),
        ("qwen", &qwen),
        ("grok", &grok),
        ("kimi", &kimi),
        ("copilot", &copilot),
        ("gemini", &gemini),
    ] {
        let reported = report(&cfg, agent);
        let scanned = scan(agent, dir, "daily", "auto");
        assert_eq!(reported["daily"], scanned["daily"], "{agent}");
        assert_eq!(
            reported["totals"]["totalCost"],
            scanned["totals"]["totalCost"]
        );
    }
    assert_eq!(ch.duplicate_rows("tb_agents"), 0);

    // Live: a new pi session grows while the daemon runs; a kill -9 in the
    // middle; an OpenClaw session is reset (renamed to a .reset copy) and
    // a new one started. The database converges to the files' scan.
    let log = work.path().join("daemon.log");
    let daemon = Daemon::start(&cfg, &log);
    let session = pi.join(
        "sessions/--live--/2026-11-26T08-00-00-000Z_7e8f9a0b-5555-4666-8777-888899990000.jsonl",
    );
    std::fs::create_dir_all(session.parent().unwrap()).unwrap();
    append(
        &session,
        r#"{"type":"session","version":3,"id":"7e8f9a0b-5555-4666-8777-888899990000","timestamp":"2026-11-26T08:00:00.000Z","cwd":"/live"}"#
            .to_string()
            + "\n",
    );
    for i in 0..20 {
        append(
            &session,
            pi_line(
                &format!("l{i:07}"),
                &format!("2026-11-26T08:00:{i:02}.000Z"),
                100 + i,
                10,
            ),
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let want_live = |cfg: &Path| {
        let r = report(cfg, "pi");
        r["totals"] == scan("pi", &pi, "daily", "auto")["totals"]
    };
    assert!(
        wait_until(Duration::from_secs(60), || want_live(&cfg)),
        "the daemon did not catch up: {}",
        daemon.log_text()
    );
    daemon.kill9();
    for i in 20..40 {
        append(
            &session,
            pi_line(
                &format!("l{i:07}"),
                &format!("2026-11-26T08:00:{i:02}.000Z"),
                100 + i,
                10,
            ),
        );
    }
    // A Gemini session document rewritten whole, message by message; the
    // last rewrite also raises an earlier message's counts.
    let doc = gemini.join("tmp/live0001/chats/session-live.json");
    std::fs::create_dir_all(doc.parent().unwrap()).unwrap();
    for n in 1..=6u64 {
        write_gemini_doc(&doc, n, if n == 6 { 900 } else { 0 });
    }
    let live = claw.join("agents/main/sessions/5f0c6a2e-2222-4333-8444-555566667777.jsonl");
    std::fs::rename(
        &live,
        live.with_extension("jsonl.reset.2026-11-26T09-00-00.000Z"),
    )
    .unwrap();
    let daemon = Daemon::start(&cfg, &log);
    // More rewrites while it runs.
    for n in 7..=9u64 {
        write_gemini_doc(&doc, n, 900);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wait_until(Duration::from_secs(60), || want_live(&cfg)
            && report(&cfg, "openclaw")["totals"]
                == scan("openclaw", &claw, "daily", "auto")["totals"]
            && report(&cfg, "gemini")["totals"]
                == scan("gemini", &gemini, "daily", "auto")["totals"]),
        "not converged after the restart: {}",
        daemon.log_text()
    );
    daemon.stop();
    assert_eq!(
        ch.duplicate_rows("tb_agents"),
        0,
        "a row was inserted twice"
    );
    // The 40 live responses: 100..140 input, 10 output each.
    let r = report(&cfg, "pi");
    let day = r["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == "2026-11-26")
        .expect("the live day");
    assert_eq!(day["inputTokens"], (100..140).sum::<u64>());
    assert_eq!(day["outputTokens"], 400);
    // Nine responses, the first with its raised count, each once.
    let g = report(&cfg, "gemini");
    let day = g["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == "2026-11-27")
        .expect("the rewritten document's day");
    assert_eq!(day["inputTokens"], 9000);
    assert_eq!(day["outputTokens"], 90 + 900);
}

fn truth_tokens(t: &Tokens) -> Tokens {
    Tokens { messages: 0, ..*t }
}

fn report_tokens(v: &Value) -> Tokens {
    let n = |f: &str| v[f].as_u64().unwrap_or_else(|| panic!("no {f} in {v}"));
    Tokens {
        input_tokens: n("inputTokens"),
        output_tokens: n("outputTokens"),
        cache_creation_tokens: n("cacheCreationTokens"),
        cache_read_tokens: n("cacheReadTokens"),
        total_tokens: n("inputTokens")
            + n("outputTokens")
            + n("cacheCreationTokens")
            + n("cacheReadTokens"),
        messages: 0,
    }
}

fn by_day(report: &Value) -> BTreeMap<String, Tokens> {
    report["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["date"].as_str().unwrap().to_string(), report_tokens(d)))
        .collect()
}

/// Generated homes of every agent: `scan` equals the generator's truth day
/// by day; with the traps ccusage reads right, ccusage's token totals equal
/// it too and its cost agrees within 0.1 % (except Grok, priced from another
/// table, and Copilot, whose summed requests ccusage prices at the
/// beyond-200k rates: README's table); with all traps, `scan` still equals
/// the truth.
#[test]
fn generated_homes_equal_the_truth_in_both_tools() {
    use tokenbridge::testkit::agents::{self, Spec, Traps};
    let work = tempfile::tempdir().unwrap();
    for (traps, seed) in [(Traps::SharedWithCcusage, 11), (Traps::All, 12)] {
        let root = work.path().join(format!("{traps:?}"));
        let expected = agents::write_homes(
            &root,
            &Spec {
                seed,
                traps,
                target_bytes: 400 << 10,
                ..Spec::default()
            },
        )
        .unwrap();
        for (agent, truth) in &expected {
            let home = root.join(agent);
            let ours = scan(agent, &home, "daily", "auto");
            assert_eq!(
                report_tokens(&ours["totals"]),
                truth_tokens(&truth.totals),
                "{agent} {traps:?}: scan"
            );
            let want: BTreeMap<String, Tokens> = truth
                .by_day
                .iter()
                .map(|(d, t)| (d.clone(), truth_tokens(t)))
                .collect();
            assert_eq!(by_day(&ours), want, "{agent} {traps:?}: by day");
            if traps == Traps::All {
                continue;
            }
            let var = AGENTS.iter().find(|(a, _)| a == agent).unwrap().1;
            let theirs = ccusage(agent, var, &home, "auto");
            assert_eq!(
                report_tokens(&theirs["totals"]),
                truth_tokens(&truth.totals),
                "{agent}: ccusage"
            );
            if !["grok", "copilot"].contains(&agent.as_str()) {
                let (a, b) = (
                    ours["totals"]["totalCost"].as_f64().unwrap(),
                    theirs["totals"]["totalCost"].as_f64().unwrap(),
                );
                assert!(close(a, b), "{agent}: cost {a} vs ccusage {b}");
            }
        }
    }
}

/// Claude Code, Codex and every other agent's generated home in one
/// backfill into a real ClickHouse, killed with SIGKILL several times on the
/// way: per-agent totals equal each generator's truth, no row twice.
#[test]
fn mixed_backfill_of_every_agent_survives_kill9_with_per_agent_truth() {
    use tokenbridge::testkit::{agents, codex, corpus::Rng};
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let claude = work.path().join("claude");
    let claude_truth = generated_corpus(&claude, 51, 4 << 20);
    let codex_home = work.path().join("codex");
    let codex_truth = codex::write_home(
        &codex_home,
        &codex::Spec {
            seed: 52,
            target_bytes: 3 << 20,
            traps: codex::Traps::All,
            max_calls: 16,
        },
    )
    .unwrap();
    let others = work.path().join("others");
    let truth = agents::write_homes(
        &others,
        &agents::Spec {
            seed: 53,
            traps: agents::Traps::All,
            target_bytes: 1 << 20,
            ..agents::Spec::default()
        },
    )
    .unwrap();
    let mut extra = format!(
        "[batch]\nmax_rows = 200\nchannel_capacity = 2\n\n[agents.codex]\ndirs = [{:?}]\n",
        codex_home.display().to_string()
    );
    for agent in truth.keys() {
        extra.push_str(&format!(
            "\n[agents.{agent}]\ndirs = [{:?}]\n",
            others.join(agent).display().to_string()
        ));
    }
    let cfg = write_config(work.path(), &ch, "tb_all_agents", &[&claude], &extra);
    let mut rng = Rng::new(9);
    let mut kills = 0;
    for _ in 0..8 {
        if backfill_killed_after(&cfg, Duration::from_millis(rng.range(60, 600))) {
            kills += 1;
        }
    }
    assert!(kills >= 4, "only {kills} kills landed mid-run");
    let done = backfill(&cfg, &[]);
    assert_eq!(done["complete"], true, "{done}");
    let by_agent = ch.totals_by("tb_all_agents", "agent");
    assert_eq!(by_agent["claude"], claude_truth.totals, "claude");
    assert_eq!(by_agent["codex"], codex_truth.totals, "codex");
    for (agent, t) in &truth {
        assert_eq!(
            truth_tokens(&by_agent[agent.as_str()]),
            truth_tokens(&t.totals),
            "{agent}"
        );
    }
    assert_eq!(
        ch.duplicate_rows("tb_all_agents"),
        0,
        "a row was inserted twice"
    );
}

/// Writes `files` under `home` up to `fraction` of each file's lines (a
/// whole-file Gemini document: a valid document with that share of its
/// messages, rewritten as Gemini CLI does).
fn write_share(home: &Path, files: &[tokenbridge::testkit::corpus::GenFile], fraction: f64) {
    for f in files {
        let path = home.join(&f.rel_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let whole_doc = path.extension().is_some_and(|e| e == "json");
        if whole_doc && f.rel_path.starts_with("tmp") {
            let mut doc: Value = serde_json::from_str(&f.lines.concat()).unwrap();
            let messages = doc["messages"].as_array().unwrap().clone();
            let keep = ((messages.len() as f64 * fraction).ceil() as usize).min(messages.len());
            doc["messages"] = Value::Array(messages[..keep].to_vec());
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        } else if whole_doc {
            // Grok's summary.json: written once.
            std::fs::write(&path, f.lines.concat()).unwrap();
        } else {
            let keep = ((f.lines.len() as f64 * fraction).ceil() as usize).min(f.lines.len());
            std::fs::write(&path, f.lines[..keep].concat()).unwrap();
        }
    }
}

/// Every other agent's generated files grow (Gemini's documents are
/// rewritten) while the daemon runs, with a kill -9 and more growth while it
/// is down: each agent's totals in ClickHouse converge to the generator's
/// truth, no row twice.
#[test]
fn every_agent_grows_across_kill9_and_converges_to_the_truth() {
    use tokenbridge::testkit::agents::{self, Spec, Traps};
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let spec = Spec {
        seed: 81,
        traps: Traps::All,
        target_bytes: 192 << 10,
        ..Spec::default()
    };
    let generated: Vec<(String, Vec<tokenbridge::testkit::corpus::GenFile>, Tokens)> =
        agents::AGENTS
            .iter()
            .map(|a| {
                let (files, truth) = agents::generate(*a, &spec);
                (a.name().to_string(), files, truth_tokens(&truth.totals))
            })
            .collect();
    let mut extra = String::new();
    for (agent, _, _) in &generated {
        let home = work.path().join("homes").join(agent);
        std::fs::create_dir_all(&home).unwrap();
        extra += &format!(
            "[agents.{agent}]\ndirs = [{:?}]\n",
            home.display().to_string()
        );
    }
    let cfg = write_config(work.path(), &ch, "tb_grow", &[], &extra);
    let home = |agent: &str| work.path().join("homes").join(agent);
    let reported = |agent: &str| report_tokens(&report(&cfg, agent)["totals"]);
    let scanned =
        |agent: &str| report_tokens(&scan(agent, &home(agent), "daily", "auto")["totals"]);
    for (agent, files, _) in &generated {
        write_share(&home(agent), files, 0.4);
    }
    let log = work.path().join("grow.log");
    let daemon = Daemon::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(90), || generated
            .iter()
            .all(|(a, _, _)| reported(a) == scanned(a))),
        "first share not ingested: {}",
        daemon.log_text()
    );
    daemon.kill9();
    for (agent, files, _) in &generated {
        write_share(&home(agent), files, 0.7);
    }
    let daemon = Daemon::start(&cfg, &log);
    for (agent, files, _) in &generated {
        write_share(&home(agent), files, 1.0);
    }
    let converged = wait_until(Duration::from_secs(90), || {
        generated.iter().all(|(a, _, truth)| reported(a) == *truth)
    });
    let state: Vec<String> = generated
        .iter()
        .map(|(a, _, truth)| format!("{a}: {:?} vs truth {truth:?}", reported(a)))
        .collect();
    assert!(
        converged,
        "not converged: {state:#?}\n{}",
        daemon.log_text()
    );
    daemon.stop();
    assert_eq!(ch.duplicate_rows("tb_grow"), 0, "a row was inserted twice");
}
