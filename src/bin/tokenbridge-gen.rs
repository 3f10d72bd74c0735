//! `tokenbridge-gen`: writes a deterministic Claude Code-shaped corpus and its
//! `expected.json` (see `tokenbridge::testkit::corpus`).
//!
//! Usage: `tokenbridge-gen OUT_DIR [--seed N] [--mb N] [--projects N] [--max-turns N]
//! [--no-huge-tool-results] [--missing-request-id-pct N]`
//!
//! `tokenbridge-gen OUT_DIR --agent codex [--seed N] [--mb N] [--traps shared|all]` writes
//! a Codex CLI home instead (`OUT_DIR/sessions/…`, see
//! `tokenbridge::testkit::codex`): `shared` holds the traps ccusage reads
//! right, `all` also those it does not.
//!
//! `tokenbridge-gen OUT_DIR --agent others [--seed N] [--mb N] [--traps shared|all]` writes
//! the homes of Gemini CLI, Copilot CLI, Qwen Code, Kimi, Grok Build, pi and
//! OpenClaw under `OUT_DIR/<agent>/` (`--mb` each; see
//! `tokenbridge::testkit::agents`), with `OUT_DIR/expected.json` by agent.
//!
//! Many small sessions, as a real `~/.claude` holds thousands of files:
//! `--max-turns 16 --no-huge-tool-results` (about 250 KB per file).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut spec = tokenbridge::testkit::corpus::Spec::default();
    let mut codex: Option<tokenbridge::testkit::codex::Traps> = None;
    let mut others = false;
    let mut traps = tokenbridge::testkit::codex::Traps::SharedWithCcusage;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| die(&format!("{name} needs a number")))
        };
        match a.as_str() {
            "--seed" => spec.seed = num("--seed"),
            "--mb" => spec.target_bytes = num("--mb") << 20,
            "--projects" => spec.projects = num("--projects") as usize,
            "--max-turns" => spec.max_turns = num("--max-turns").max(1),
            "--no-huge-tool-results" => spec.huge_tool_results = false,
            "--missing-request-id-pct" => {
                spec.missing_request_id = num("--missing-request-id-pct") as f64 / 100.0
            }
            "--agent" => match args.next().as_deref() {
                Some("claude") => codex = None,
                Some("codex") => codex = Some(traps),
                Some("others") => others = true,
                other => die(&format!("--agent claude|codex|others, not {other:?}")),
            },
            "--traps" => {
                traps = match args.next().as_deref() {
                    Some("shared") => tokenbridge::testkit::codex::Traps::SharedWithCcusage,
                    Some("all") => tokenbridge::testkit::codex::Traps::All,
                    other => die(&format!("--traps shared|all, not {other:?}")),
                };
                codex = codex.map(|_| traps);
            }
            "-h" | "--help" => {
                println!("usage: tokenbridge-gen OUT_DIR [--seed N] [--mb N] [--projects N] [--max-turns N] [--no-huge-tool-results] [--missing-request-id-pct N]");
                println!("       tokenbridge-gen OUT_DIR --agent codex|others [--seed N] [--mb N] [--traps shared|all]");
                return;
            }
            _ if out.is_none() && !a.starts_with('-') => out = Some(PathBuf::from(a)),
            _ => die(&format!("unexpected argument {a}")),
        }
    }
    let out = out.unwrap_or_else(|| die("OUT_DIR is required"));
    if others {
        use tokenbridge::testkit::agents;
        let spec = agents::Spec {
            seed: spec.seed,
            target_bytes: spec.target_bytes,
            traps: match traps {
                tokenbridge::testkit::codex::Traps::All => agents::Traps::All,
                tokenbridge::testkit::codex::Traps::SharedWithCcusage => {
                    agents::Traps::SharedWithCcusage
                }
            },
            ..agents::Spec::default()
        };
        match agents::write_homes(&out, &spec) {
            Ok(e) => {
                let totals: std::collections::BTreeMap<&String, _> =
                    e.iter().map(|(a, t)| (a, &t.totals)).collect();
                println!("{}", serde_json::to_string(&totals).expect("json"))
            }
            Err(e) => die(&format!("{}: {e}", out.display())),
        }
        return;
    }
    if let Some(traps) = codex {
        let spec = tokenbridge::testkit::codex::Spec {
            seed: spec.seed,
            target_bytes: spec.target_bytes,
            traps,
            ..tokenbridge::testkit::codex::Spec::default()
        };
        match tokenbridge::testkit::codex::write_home(&out, &spec) {
            Ok(e) => println!("{}", serde_json::to_string(&e.totals).expect("json")),
            Err(e) => die(&format!("{}: {e}", out.display())),
        }
        return;
    }
    match tokenbridge::testkit::corpus::write_corpus(&out, &spec) {
        Ok(e) => println!("{}", serde_json::to_string(&e.totals).expect("json")),
        Err(e) => die(&format!("{}: {e}", out.display())),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("tokenbridge-gen: {msg}");
    std::process::exit(2)
}
