//! `tokenbridge-gen`: writes a deterministic Claude Code-shaped corpus and its
//! `expected.json` (see `tokenbridge::testkit::corpus`).
//!
//! Usage: `tokenbridge-gen OUT_DIR [--seed N] [--mb N] [--projects N] [--max-turns N]
//! [--no-huge-tool-results] [--missing-request-id-pct N]`
//!
//! Many small sessions, as a real `~/.claude` holds thousands of files:
//! `--max-turns 16 --no-huge-tool-results` (about 250 KB per file).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut spec = tokenbridge::testkit::corpus::Spec::default();
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
            "-h" | "--help" => {
                println!("usage: tokenbridge-gen OUT_DIR [--seed N] [--mb N] [--projects N] [--max-turns N] [--no-huge-tool-results] [--missing-request-id-pct N]");
                return;
            }
            _ if out.is_none() && !a.starts_with('-') => out = Some(PathBuf::from(a)),
            _ => die(&format!("unexpected argument {a}")),
        }
    }
    let out = out.unwrap_or_else(|| die("OUT_DIR is required"));
    match tokenbridge::testkit::corpus::write_corpus(&out, &spec) {
        Ok(e) => println!("{}", serde_json::to_string(&e.totals).expect("json")),
        Err(e) => die(&format!("{}: {e}", out.display())),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("tokenbridge-gen: {msg}");
    std::process::exit(2)
}
