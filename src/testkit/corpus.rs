//! A deterministic generator of Claude Code-shaped transcripts, and the
//! expected totals computed from the generator's own model of the messages,
//! not by parsing what it wrote.
//!
//! What it writes, per session: user prompts (some non-ASCII), assistant
//! responses as one line per content block sharing `message.id`/`requestId`
//! (earlier lines with a partial `output_tokens`, the last with the full
//! count), tool results (some hundreds of KB, a few MB), system,
//! file-history-snapshot, summary, queue-operation and progress lines,
//! subagent files under `<session>/subagents/agent-<id>.jsonl` whose messages
//! are also carried by `agent_progress` lines in the parent, resumed sessions
//! whose files start with a byte copy of an earlier session's lines, and a few
//! malformed lines. Some messages have no `requestId`.
//!
//! The truth for a message is its final usage, attributed to the session in
//! its lines' `sessionId` (copies keep the original's), its model, and the UTC
//! day of its final line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::timestamp::{format_rfc3339_ms, utc_date};

/// Models the generator uses (all priced in the LiteLLM table).
pub const MODELS: &[&str] = &[
    "claude-sonnet-4-20250514",
    "claude-opus-4-1-20250805",
    "claude-3-5-haiku-20241022",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
];

/// SplitMix64: tiny, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// An element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
    /// `n` base62 characters.
    pub fn ident(&mut self, n: usize) -> String {
        const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..n)
            .map(|_| A[(self.next_u64() % 62) as usize] as char)
            .collect()
    }
    /// A random UUID-shaped string.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// Token totals of one slice of the truth.
pub use crate::record::Totals as Tokens;

fn add_usage(t: &mut Tokens, u: &Usage) {
    t.add(u.input, u.output, u.cache_5m + u.cache_1h, u.cache_read);
}

/// The truth about a generated corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// Deduplicated totals.
    pub totals: Tokens,
    /// By model.
    pub by_model: BTreeMap<String, Tokens>,
    /// By session id.
    pub by_session: BTreeMap<String, Tokens>,
    /// By UTC day (`YYYY-MM-DD`).
    pub by_day: BTreeMap<String, Tokens>,
    /// What summing every usage line would give (no dedup).
    pub naive: Tokens,
    /// The same by the lines' `sessionId`.
    pub naive_by_session: BTreeMap<String, Tokens>,
    /// Lines written (excluding blank).
    pub lines: u64,
    /// Malformed lines written.
    pub malformed_lines: u64,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Resumed sessions and the session their first lines were copied from:
    /// `[resumed, source]`. Tools that attribute lines by file instead of by
    /// `sessionId` differ on exactly these sessions.
    pub resumed_sessions: Vec<[String; 2]>,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// PRNG seed; same seed, same bytes.
    pub seed: u64,
    /// Stop starting new sessions once this many bytes were generated.
    pub target_bytes: u64,
    /// Number of project folders.
    pub projects: usize,
    /// Assistant turns per session (upper bound; actual is random below it).
    pub max_turns: u64,
    /// Allow multi-MB tool results.
    pub huge_tool_results: bool,
    /// Share of responses written without `requestId` (keyed by message id
    /// alone). ccusage does not deduplicate those, so comparisons with it use 0.
    pub missing_request_id: f64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 1,
            target_bytes: 2 << 20,
            projects: 3,
            max_turns: 30,
            huge_tool_results: true,
            missing_request_id: 0.05,
        }
    }
}

/// One generated file: path relative to the corpus root, and its lines
/// (each ending in `\n`).
#[derive(Debug, Clone)]
pub struct GenFile {
    /// Relative path, e.g. `projects/-home-dev-app/<uuid>.jsonl`.
    pub rel_path: PathBuf,
    /// Lines with their newlines.
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    input: u64,
    output: u64,
    cache_5m: u64,
    cache_1h: u64,
    cache_read: u64,
    web_search: u64,
}

impl Usage {
    fn json(&self) -> serde_json::Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_5m + self.cache_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_5m, "ephemeral_1h_input_tokens": self.cache_1h},
            "output_tokens": self.output,
            "service_tier": "standard",
            "server_tool_use": {"web_search_requests": self.web_search, "web_fetch_requests": 0}
        })
    }
}

/// The generator's record of one logical message.
struct Truth {
    session: String,
    model: String,
    final_ts_ms: i64,
    usage: Usage,
}

struct Gen {
    resumed: Vec<[String; 2]>,
    rng: Rng,
    spec: Spec,
    truths: Vec<Truth>,
    naive: Tokens,
    naive_by_session: BTreeMap<String, Tokens>,
    malformed: u64,
    bytes: u64,
    files: Vec<GenFile>,
    clock_ms: i64,
}

const PROMPTS: &[&str] = &[
    "Refactor the parser so it handles streaming input",
    "Warum schlägt der Test fehl? Bitte prüfen — danke!",
    "日本語のコメントを英語に翻訳してください",
    "Add a retry with exponential backoff 🚀 and jitter",
    "Explain the difference between FINAL and argMax in ClickHouse",
    "¿Puedes optimizar esta función? Está muy lenta…",
];

impl Gen {
    fn usage(&mut self) -> Usage {
        let cache_total = if self.rng.chance(0.7) {
            self.rng.range(0, 30_000)
        } else {
            0
        };
        let one_hour = if self.rng.chance(0.2) {
            self.rng.range(0, cache_total)
        } else {
            0
        };
        Usage {
            input: self.rng.range(1, 60),
            output: self.rng.range(1, 4_000),
            cache_5m: cache_total - one_hour,
            cache_1h: one_hour,
            cache_read: if self.rng.chance(0.8) {
                self.rng.range(0, 180_000)
            } else {
                0
            },
            web_search: if self.rng.chance(0.05) {
                self.rng.range(1, 3)
            } else {
                0
            },
        }
    }

    fn text(&mut self, min: u64, max: u64) -> String {
        const WORDS: &[&str] = &[
            "the",
            "token",
            "bridge",
            "counts",
            "every",
            "line",
            "once",
            "déjà",
            "vu",
            "naïve",
            "ClickHouse",
            "merge",
            "tree",
            "fn",
            "main()",
            "{",
            "}",
            "\"quoted\"",
            "tab\there",
            "ünïcödé",
            "→",
            "✓",
            "日本",
        ];
        let target = self.rng.range(min, max) as usize;
        let mut s = String::with_capacity(target + 16);
        while s.len() < target {
            let w: &str = self.rng.pick::<&str>(WORDS);
            s.push_str(w);
            s.push(if self.rng.chance(0.1) { '\n' } else { ' ' });
        }
        s
    }

    fn tool_result_size(&mut self) -> (u64, u64) {
        if self.spec.huge_tool_results && self.rng.chance(0.004) {
            (1_000_000, 3_000_000)
        } else if self.rng.chance(0.1) {
            (20_000, 300_000)
        } else {
            (100, 8_000)
        }
    }

    fn tick(&mut self, max_ms: u64) -> i64 {
        self.clock_ms += self.rng.range(1, max_ms) as i64;
        self.clock_ms
    }

    fn push(&mut self, lines: &mut Vec<String>, v: serde_json::Value) {
        let mut s = serde_json::to_string(&v).expect("json");
        s.push('\n');
        self.bytes += s.len() as u64;
        lines.push(s);
    }

    fn push_raw(&mut self, lines: &mut Vec<String>, s: String) {
        self.bytes += s.len() as u64;
        lines.push(s);
    }

    /// Writes the lines of one assistant response (one per content block) and
    /// returns its message id, request id, final usage and final timestamp.
    #[allow(clippy::too_many_arguments)]
    fn response(
        &mut self,
        lines: &mut Vec<String>,
        session: &str,
        cwd: &str,
        model: &str,
        sidechain: Option<&str>,
        parent: &mut String,
    ) -> (String, Option<String>, Usage, i64, Vec<serde_json::Value>) {
        let msg_id = format!("msg_01{}", self.rng.ident(22));
        let req_id = (!self.rng.chance(self.spec.missing_request_id))
            .then(|| format!("req_011C{}", self.rng.ident(20)));
        let usage = self.usage();
        let blocks = self.rng.range(1, 4);
        let mut envelopes = Vec::new();
        let mut final_ts = 0;
        for b in 0..blocks {
            let last = b + 1 == blocks;
            let mut u = usage;
            if !last {
                u.output = self.rng.range(0, usage.output - 1);
            }
            // Real assistant lines are large too: long thinking, and Write/Edit
            // tool inputs that carry whole file contents.
            let content = match (b, last) {
                (0, false) if self.rng.chance(0.5) => {
                    json!([{"type":"thinking","thinking": self.text(200, 6_000),"signature": self.rng.ident(40)}])
                }
                (_, true) if self.rng.chance(0.5) => {
                    let input = if self.rng.chance(0.4) {
                        json!({"file_path": format!("/home/dev/src/{}.rs", self.rng.ident(8)), "content": self.text(500, 30_000)})
                    } else {
                        json!({"command": self.text(10, 120)})
                    };
                    json!([{"type":"tool_use","id": format!("toolu_{}", self.rng.ident(20)),"name":"Write","input": input}])
                }
                _ => json!([{"type":"text","text": self.text(20, 4_000)}]),
            };
            let ts = self.tick(900);
            final_ts = ts;
            let uuid = self.rng.uuid();
            let mut line = json!({
                "parentUuid": parent.clone(),
                "isSidechain": sidechain.is_some(),
                "userType": "external",
                "cwd": cwd,
                "sessionId": session,
                "version": "2.0.14",
                "gitBranch": "main",
                "message": {
                    "id": msg_id, "type": "message", "role": "assistant", "model": model,
                    "content": content, "stop_reason": if last { json!("end_turn") } else { json!(null) },
                    "stop_sequence": null, "usage": u.json()
                },
                "type": "assistant",
                "uuid": uuid,
                "timestamp": format_rfc3339_ms(ts),
            });
            if let Some(agent) = sidechain {
                line["agentId"] = json!(agent);
            }
            if let Some(r) = &req_id {
                line["requestId"] = json!(r);
            }
            self.add_naive(session, &u);
            *parent = uuid;
            envelopes.push(line.clone());
            self.push(lines, line);
        }
        (msg_id, req_id, usage, final_ts, envelopes)
    }

    fn session(&mut self, project: &str, resumed_from: Option<usize>) {
        let session = self.rng.uuid();
        let cwd = format!("/home/dev/{}", project.trim_start_matches("-home-dev-"));
        let rel = PathBuf::from(format!("projects/{project}/{session}.jsonl"));
        let mut lines = Vec::new();
        if let Some(src) = resumed_from {
            let source = self.files[src]
                .rel_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.resumed.push([session.clone(), source]);
            // A resumed session starts with a byte copy of an earlier one's lines.
            let take = self.files[src]
                .lines
                .len()
                .min(self.rng.range(3, 40) as usize);
            let copied: Vec<String> = self.files[src].lines[..take].to_vec();
            for l in copied {
                self.count_copy(&l);
                self.push_raw(&mut lines, l);
            }
        }
        let model = self.rng.pick(MODELS).to_string();
        let mut parent = String::new();
        let turns = self.rng.range(1, self.spec.max_turns);
        if self.rng.chance(0.5) {
            let v =
                json!({"type":"summary","summary": self.text(10, 80),"leafUuid": self.rng.uuid()});
            self.push(&mut lines, v);
        }
        for _ in 0..turns {
            let ts = self.tick(60_000);
            let uuid = self.rng.uuid();
            let prompt = self.rng.pick(PROMPTS).to_string();
            let v = json!({"parentUuid": parent,"isSidechain":false,"userType":"external","cwd":cwd,"sessionId":session,"version":"2.0.14","gitBranch":"main","type":"user","message":{"role":"user","content":prompt},"uuid":uuid,"timestamp":format_rfc3339_ms(ts)});
            parent = uuid;
            self.push(&mut lines, v);
            if self.rng.chance(0.3) {
                let v = json!({"type":"file-history-snapshot","messageId": self.rng.uuid(),"snapshot":{"trackedFileBackups":{},"timestamp":format_rfc3339_ms(ts)},"isSnapshotUpdate":false});
                self.push(&mut lines, v);
            }
            if self.rng.chance(0.1) {
                let v = json!({"type":"queue-operation","operation":"enqueue","timestamp":format_rfc3339_ms(ts),"content": self.text(5, 60),"sessionId":session});
                self.push(&mut lines, v);
            }
            let m = if self.rng.chance(0.15) {
                self.rng.pick(MODELS).to_string()
            } else {
                model.clone()
            };
            let (_, _, usage, final_ts, _) =
                self.response(&mut lines, &session, &cwd, &m, None, &mut parent);
            self.truths.push(Truth {
                session: session.clone(),
                model: m.clone(),
                final_ts_ms: final_ts,
                usage,
            });
            let (lo, hi) = self.tool_result_size();
            let v = json!({"parentUuid": parent,"isSidechain":false,"userType":"external","cwd":cwd,"sessionId":session,"version":"2.0.14","gitBranch":"main","type":"user","message":{"role":"user","content":[{"tool_use_id": format!("toolu_{}", self.rng.ident(20)),"type":"tool_result","content": self.text(lo, hi)}]},"uuid": self.rng.uuid(),"timestamp":format_rfc3339_ms(self.tick(2000))});
            self.push(&mut lines, v);
            if self.rng.chance(0.08) {
                self.subagent(&mut lines, project, &session, &cwd);
            }
            if self.rng.chance(0.1) {
                let v = json!({"type":"system","subtype":"informational","content": self.text(10, 200),"isMeta":false,"level":"info","sessionId":session,"timestamp":format_rfc3339_ms(self.tick(100)),"uuid": self.rng.uuid()});
                self.push(&mut lines, v);
            }
            if self.rng.chance(0.1) {
                let v = json!({"type":"progress","data":{"type":"bash_progress","output": self.text(10, 300)},"sessionId":session,"timestamp":format_rfc3339_ms(self.tick(100)),"uuid": self.rng.uuid()});
                self.push(&mut lines, v);
            }
            if self.rng.chance(0.004) {
                let bad = format!("{{\"type\":\"assistant\",\"sessionId\":\"{session}\",\"message\":{{\"id\":\"msg_trunc\n");
                self.malformed += 1;
                self.push_raw(&mut lines, bad);
            }
        }
        self.files.push(GenFile {
            rel_path: rel,
            lines,
        });
    }

    fn add_naive(&mut self, session: &str, u: &Usage) {
        add_usage(&mut self.naive, u);
        add_usage(
            self.naive_by_session
                .entry(session.to_string())
                .or_default(),
            u,
        );
    }

    /// Counts a copied line again: malformed stays malformed, usage adds to
    /// the naive sum (from either place a usage can sit).
    fn count_copy(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim_end()) else {
            self.malformed += 1;
            return;
        };
        let u = if v["message"]["usage"].is_object() {
            &v["message"]["usage"]
        } else if v["data"]["message"]["message"]["usage"].is_object() {
            &v["data"]["message"]["message"]["usage"]
        } else {
            return;
        };
        let g = |k: &str| u[k].as_u64().unwrap_or(0);
        let cc = &u["cache_creation"];
        let session = v["sessionId"].as_str().unwrap_or_default().to_string();
        self.add_naive(
            &session,
            &Usage {
                input: g("input_tokens"),
                output: g("output_tokens"),
                cache_5m: cc["ephemeral_5m_input_tokens"].as_u64().unwrap_or(0),
                cache_1h: cc["ephemeral_1h_input_tokens"].as_u64().unwrap_or(0),
                cache_read: g("cache_read_input_tokens"),
                web_search: 0,
            },
        );
    }

    /// A subagent: its own file of sidechain messages, each also carried by an
    /// `agent_progress` line in the parent (with the final or a partial usage).
    fn subagent(
        &mut self,
        parent_lines: &mut Vec<String>,
        project: &str,
        session: &str,
        cwd: &str,
    ) {
        let agent = self.rng.ident(8).to_lowercase();
        let rel = PathBuf::from(format!(
            "projects/{project}/{session}/subagents/agent-{agent}.jsonl"
        ));
        let mut lines = Vec::new();
        let model = self.rng.pick(MODELS).to_string();
        let mut parent = String::new();
        let tool_use_id = format!("toolu_{}", self.rng.ident(20));
        for _ in 0..self.rng.range(1, 6) {
            let ts = self.tick(5000);
            let v = json!({"parentUuid": parent,"isSidechain":true,"userType":"external","cwd":cwd,"sessionId":session,"version":"2.0.14","gitBranch":"main","agentId":agent,"type":"user","message":{"role":"user","content": self.text(20, 400)},"uuid": self.rng.uuid(),"timestamp":format_rfc3339_ms(ts)});
            self.push(&mut lines, v);
            let (_, _, usage, final_ts, envelopes) =
                self.response(&mut lines, session, cwd, &model, Some(&agent), &mut parent);
            self.truths.push(Truth {
                session: session.to_string(),
                model: model.clone(),
                final_ts_ms: final_ts,
                usage,
            });
            // The parent often sees the response as progress updates: always its
            // final line, sometimes partial ones too. Those copies are main-chain
            // entries and win over the subagent's own lines, so the final one
            // must be among them for the truth to stay the final usage.
            let with_progress = self.rng.chance(0.6);
            let n = envelopes.len();
            for (i, env) in envelopes.into_iter().enumerate() {
                if !with_progress || (i + 1 < n && self.rng.chance(0.5)) {
                    continue;
                }
                let u = &env["message"]["usage"];
                self.add_naive(
                    session,
                    &Usage {
                        input: u["input_tokens"].as_u64().unwrap_or(0),
                        output: u["output_tokens"].as_u64().unwrap_or(0),
                        cache_5m: u["cache_creation"]["ephemeral_5m_input_tokens"]
                            .as_u64()
                            .unwrap_or(0),
                        cache_1h: u["cache_creation"]["ephemeral_1h_input_tokens"]
                            .as_u64()
                            .unwrap_or(0),
                        cache_read: u["cache_read_input_tokens"].as_u64().unwrap_or(0),
                        web_search: 0,
                    },
                );
                let mut inner = json!({"type":"assistant","message": env["message"].clone(),"uuid": env["uuid"].clone(),"timestamp": env["timestamp"].clone()});
                if let Some(r) = env.get("requestId") {
                    inner["requestId"] = r.clone();
                }
                let v = json!({"parentUuid": null,"isSidechain":false,"userType":"external","cwd":cwd,"sessionId":session,"version":"2.0.14","gitBranch":"main","type":"progress","data":{"type":"agent_progress","agentId":agent,"message":inner,"prompt":""},"toolUseID": self.rng.ident(10),"parentToolUseID":tool_use_id,"uuid": self.rng.uuid(),"timestamp":format_rfc3339_ms(self.tick(50))});
                self.push(parent_lines, v);
            }
        }
        self.files.push(GenFile {
            rel_path: rel,
            lines,
        });
    }
}

/// Generates a corpus in memory.
pub fn generate(spec: &Spec) -> (Vec<GenFile>, Expected) {
    let mut g = Gen {
        resumed: Vec::new(),
        rng: Rng::new(spec.seed),
        spec: spec.clone(),
        truths: Vec::new(),
        naive: Tokens::default(),
        naive_by_session: BTreeMap::new(),
        malformed: 0,
        bytes: 0,
        files: Vec::new(),
        // 2025-09-01T00:00:00Z plus a little: sessions span several days.
        clock_ms: 1_756_684_800_000,
    };
    let projects: Vec<String> = (0..spec.projects.max(1))
        .map(|i| format!("-home-dev-project{i}"))
        .collect();
    while g.bytes < spec.target_bytes {
        let project = g.rng.pick(&projects).clone();
        let main_files: Vec<usize> = (0..g.files.len())
            .filter(|i| {
                !g.files[*i]
                    .rel_path
                    .to_string_lossy()
                    .contains("/subagents/")
            })
            .collect();
        let resumed =
            (!main_files.is_empty() && g.rng.chance(0.15)).then(|| *g.rng.pick(&main_files));
        g.session(&project, resumed);
        g.clock_ms += g.rng.range(0, 6 * 3_600_000) as i64;
    }
    let mut exp = Expected {
        naive: g.naive,
        naive_by_session: g.naive_by_session.clone(),
        malformed_lines: g.malformed,
        files: g.files.len() as u64,
        bytes: g.bytes,
        lines: g.files.iter().map(|f| f.lines.len() as u64).sum(),
        resumed_sessions: g.resumed.clone(),
        ..Expected::default()
    };
    for t in &g.truths {
        add_usage(&mut exp.totals, &t.usage);
        add_usage(exp.by_model.entry(t.model.clone()).or_default(), &t.usage);
        add_usage(
            exp.by_session.entry(t.session.clone()).or_default(),
            &t.usage,
        );
        add_usage(
            exp.by_day.entry(utc_date(t.final_ts_ms)).or_default(),
            &t.usage,
        );
    }
    (g.files, exp)
}

/// Generates a corpus under `root` and writes `root/expected.json`.
pub fn write_corpus(root: &Path, spec: &Spec) -> std::io::Result<Expected> {
    let (files, expected) = generate(spec);
    for f in &files {
        let path = root.join(&f.rel_path);
        std::fs::create_dir_all(path.parent().expect("parent"))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        for l in &f.lines {
            w.write_all(l.as_bytes())?;
        }
        w.flush()?;
    }
    std::fs::write(
        root.join("expected.json"),
        serde_json::to_vec_pretty(&expected).expect("json"),
    )?;
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_corpus() {
        let spec = Spec {
            target_bytes: 300_000,
            ..Spec::default()
        };
        let (a, ea) = generate(&spec);
        let (b, eb) = generate(&spec);
        assert_eq!(ea, eb);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.lines == y.lines));
        let (_, ec) = generate(&Spec { seed: 2, ..spec });
        assert_ne!(ea.totals, ec.totals);
    }

    #[test]
    fn naive_counting_overcounts() {
        let (_, e) = generate(&Spec {
            target_bytes: 500_000,
            ..Spec::default()
        });
        assert!(e.naive.total_tokens > e.totals.total_tokens);
        assert!(e.totals.messages > 10);
        assert_eq!(
            e.by_session.values().map(|t| t.total_tokens).sum::<u64>(),
            e.totals.total_tokens
        );
        assert_eq!(
            e.by_day.values().map(|t| t.messages).sum::<u64>(),
            e.totals.messages
        );
    }
}
