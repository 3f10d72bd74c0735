//! A deterministic generator of Codex CLI homes (`sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl`
//! and `archived_sessions/`), and the truth computed from the generator's own
//! model of each model call, not by parsing what it wrote.
//!
//! What it writes, per session: a `session_meta`, turns of `task_started`,
//! `turn_context` (the model; sometimes it changes mid-session),
//! `user_message`, reasoning, function calls with outputs (some hundreds of
//! KB), assistant messages and `task_complete`, and one `token_count` after
//! every model call carrying the cumulative `total_token_usage` and the
//! call's `last_token_usage`. Three CLI generations: [`Style::Legacy`]
//! (totals only, no turn markers), [`Style::Modern`] (`last_token_usage`,
//! `task_started` without `started_at`) and [`Style::Current`] (with
//! `started_at`).
//!
//! The traps Codex files hold: identical `token_count`s re-emitted after a
//! turn, rate-limit-only events (`info: null`), totals that regress (with
//! `last_token_usage` present), sessions that never name a model (priced as
//! `gpt-5`, marked a fallback), forked and subagent rollouts that open with
//! their parent's history re-stamped at the fork, sessions moved to
//! `archived_sessions/` and copies left in both folders, and truncated
//! lines. With [`Traps::All`] also the cases where ccusage 20.0.24 is wrong
//! (see `docs/design/counting.md`): a copy that spans several seconds, a
//! fork's own turn in the copy's second, two sessions with identical events
//! (value-tuple merging), and six-digit fractional timestamps.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::corpus::{GenFile, Rng, Tokens};
use crate::timestamp::{civil_from_days, utc_date};

/// Models the generator uses (all priced in the LiteLLM table).
pub const MODELS: &[&str] = &["gpt-5-codex", "gpt-5", "gpt-5.1-codex", "gpt-5-mini"];

/// Which traps a corpus holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traps {
    /// Those ccusage 20.0.24 reads right: its totals must equal the truth.
    SharedWithCcusage,
    /// All of them, the cases ccusage gets wrong included.
    All,
}

/// A Codex CLI generation, by what its rollouts carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Cumulative totals only; no turn markers.
    Legacy,
    /// `last_token_usage`; `task_started` without `started_at`.
    Modern,
    /// `last_token_usage`; `task_started` with `started_at`.
    Current,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// PRNG seed; same seed, same bytes.
    pub seed: u64,
    /// Stop starting new sessions once this many bytes were generated.
    pub target_bytes: u64,
    /// Which traps to write.
    pub traps: Traps,
    /// Model calls per session (upper bound).
    pub max_calls: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 1,
            target_bytes: 2 << 20,
            traps: Traps::SharedWithCcusage,
            max_calls: 24,
        }
    }
}

/// The truth about a generated Codex home. Token slices are [`Tokens`]
/// with `input_tokens` the non-cached input, `cache_read_tokens` the cached
/// input and `output_tokens` the output (reasoning included), as tokenbridge
/// stores them; `messages` counts model calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// All model calls.
    pub totals: Tokens,
    /// Reasoning tokens (inside output).
    pub reasoning_tokens: u64,
    /// By model.
    pub by_model: BTreeMap<String, Tokens>,
    /// By session id (the path under `sessions/` or `archived_sessions/`
    /// without `.jsonl`).
    pub by_session: BTreeMap<String, Tokens>,
    /// By UTC day.
    pub by_day: BTreeMap<String, Tokens>,
    /// Models that are a fallback (the session named none).
    pub fallback_models: Vec<String>,
    /// How many of each trap were written.
    pub traps: BTreeMap<String, u64>,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Lines written.
    pub lines: u64,
    /// Truncated (malformed) lines written.
    pub malformed_lines: u64,
}

/// Token counts as Codex reports them: cached inside input, reasoning
/// inside output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Use {
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
}

impl Use {
    fn plus(self, b: Use) -> Use {
        Use {
            input: self.input + b.input,
            cached: self.cached + b.cached,
            output: self.output + b.output,
            reasoning: self.reasoning + b.reasoning,
        }
    }

    fn json(self, numeric_strings: bool) -> Value {
        let n = |v: u64| {
            if numeric_strings {
                json!(v.to_string())
            } else {
                json!(v)
            }
        };
        json!({
            "input_tokens": n(self.input),
            "cached_input_tokens": n(self.cached),
            "output_tokens": n(self.output),
            "reasoning_output_tokens": n(self.reasoning),
            "total_tokens": n(self.input + self.output),
        })
    }
}

/// One model call the truth counts.
struct Truth {
    session: String,
    model: String,
    day: String,
    usage: Use,
    fallback: bool,
}

/// A session as written, kept so forks can copy it.
struct Written {
    uuid: String,
    /// Lines after the `session_meta`, with their times.
    lines: Vec<(i64, Value)>,
    /// The cumulative total after each line (None before the first event).
    totals: Vec<Option<Use>>,
    style: Style,
    cwd: String,
    model: Option<String>,
}

/// How a session begins.
enum Origin<'a> {
    /// A new conversation.
    Fresh,
    /// A fork (or a spawned subagent) of `parent`, copying its first `upto`
    /// lines.
    Fork {
        parent: &'a Written,
        upto: usize,
        subagent: bool,
    },
}

/// How a fork's copy is stamped, relative to the fork instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyTiming {
    /// The copy within one second, the fork's own turn seconds later.
    Quick,
    /// A copy spanning several seconds (ccusage counts it in full).
    Multisecond,
    /// The fork's own first turn in the copy's second (ccusage drops it).
    SameSecondTurn,
}

struct Gen {
    rng: Rng,
    spec: Spec,
    clock_ms: i64,
    files: Vec<GenFile>,
    truths: Vec<Truth>,
    written: Vec<Written>,
    traps: BTreeMap<String, u64>,
    malformed: u64,
    bytes: u64,
    micro_timestamps: bool,
}

/// `2026-11-01T10:00:00.123Z` (or six fraction digits).
fn stamp(ms: i64, micro: bool, rng: &mut Rng) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let rem = ms.rem_euclid(86_400_000);
    let (h, mi, s, frac) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    if micro {
        let extra = rng.range(0, 999);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}{extra:03}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
    }
}

fn file_time(ms: i64) -> (String, String) {
    let days = ms.div_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let rem = ms.rem_euclid(86_400_000);
    (
        format!("{y:04}/{mo:02}/{d:02}"),
        format!(
            "{y:04}-{mo:02}-{d:02}T{:02}-{:02}-{:02}",
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60
        ),
    )
}

impl Gen {
    fn bump(&mut self, trap: &str) {
        *self.traps.entry(trap.to_string()).or_default() += 1;
    }

    fn event(ms: i64, payload: Value) -> (i64, Value) {
        (ms, json!({"type": "event_msg", "payload": payload}))
    }

    fn item(ms: i64, payload: Value) -> (i64, Value) {
        (ms, json!({"type": "response_item", "payload": payload}))
    }

    fn filler(&mut self, lo: u64, hi: u64) -> String {
        let n = self.rng.range(lo, hi) as usize;
        let words: [&str; 9] = [
            "fn",
            "let",
            "cargo",
            "test",
            "ok",
            "src/lib.rs",
            "édition",
            "状态",
            "\"q\"",
        ];
        let mut s = String::with_capacity(n + 16);
        while s.len() < n {
            let w: &&str = self.rng.pick(&words[..]);
            s.push_str(w);
            s.push(' ');
        }
        s
    }

    /// One session; returns its index in `written`.
    fn session(&mut self, origin: Origin<'_>, copy: CopyTiming) -> usize {
        let uuid = self.rng.uuid();
        let start = self.clock_ms;
        let micro = self.micro_timestamps;
        let (style, cwd, mut model, mut total, mut lines, mut totals, fork_meta) = match &origin {
            Origin::Fresh => {
                let style =
                    *self
                        .rng
                        .pick(&[Style::Legacy, Style::Modern, Style::Current, Style::Current]);
                let cwd = format!("/home/dev/repo{}", self.rng.range(0, 4));
                // Some `codex exec` sessions never name a model.
                let model = (!self.rng.chance(0.04)).then(|| self.rng.pick(MODELS).to_string());
                (style, cwd, model, None, Vec::new(), Vec::new(), None)
            }
            Origin::Fork {
                parent,
                upto,
                subagent,
            } => {
                // The parent's history up to the fork, re-stamped: written
                // one line after another from the fork instant on.
                let step_ms = match copy {
                    CopyTiming::Multisecond => (2_500 / *upto as i64).max(40),
                    CopyTiming::Quick | CopyTiming::SameSecondTurn => 0,
                };
                let copied: Vec<(i64, Value)> = parent.lines[..*upto]
                    .iter()
                    .enumerate()
                    .map(|(i, (_, v))| {
                        let i = i as i64;
                        (
                            start + 1 + if step_ms > 0 { i * step_ms } else { i.min(400) },
                            v.clone(),
                        )
                    })
                    .collect();
                let totals = parent.totals[..*upto].to_vec();
                let total = totals.iter().rev().find_map(|t| *t);
                let parent_meta = json!({"type": "session_meta", "payload": {
                    "id": parent.uuid, "timestamp": stamp(start, false, &mut self.rng),
                    "cwd": parent.cwd, "originator": "codex_cli_rs", "cli_version": "0.80.0", "source": "cli"}});
                let mut lines = vec![(start, parent_meta)];
                let mut t = vec![None];
                lines.extend(copied);
                t.extend(totals);
                let meta_extra = if *subagent {
                    json!({"source": {"subagent": {"thread_spawn": {"parent_thread_id": parent.uuid, "depth": 1}}}})
                } else {
                    json!({"forked_from_id": parent.uuid, "source": "cli"})
                };
                (
                    parent.style,
                    parent.cwd.clone(),
                    parent.model.clone(),
                    total,
                    lines,
                    t,
                    Some(meta_extra),
                )
            }
        };
        let cli = match style {
            Style::Legacy => "0.36.0",
            Style::Modern => "0.58.0",
            Style::Current => "0.80.0",
        };
        let mut meta = json!({"id": uuid, "timestamp": stamp(start, false, &mut self.rng), "cwd": cwd,
            "originator": "codex_cli_rs", "cli_version": cli, "instructions": null,
            "model_provider": "openai", "git": {"branch": "main", "commit_hash": self.rng.ident(40)}});
        match &fork_meta {
            Some(extra) => {
                for (k, v) in extra.as_object().expect("object") {
                    meta[k] = v.clone();
                }
            }
            None => meta["source"] = json!(*self.rng.pick(&["cli", "vscode", "exec"])),
        }
        let mut now = match copy {
            // The copy's last line, then the fork's own first turn in the
            // same second.
            CopyTiming::SameSecondTurn => lines.last().map_or(start, |l| l.0) + 5,
            _ => lines.last().map_or(start, |l| l.0) + self.rng.range(4_000, 90_000) as i64,
        };
        let session_id_hint = uuid.clone();
        let mut own = Vec::new();
        let calls_total = self.rng.range(1, self.spec.max_calls);
        let mut calls = 0;
        let mut turn = 0;
        while calls < calls_total {
            turn += 1;
            let turn_id = format!("{session_id_hint}-t{turn}");
            if style != Style::Legacy {
                let mut p = json!({"type": "task_started", "turn_id": turn_id, "model_context_window": 272_000});
                if style == Style::Current {
                    p["started_at"] = json!(now.div_euclid(1000));
                }
                own.push(Self::event(now, p));
            }
            if model.is_some() && turn > 1 && self.rng.chance(0.1) {
                model = Some(self.rng.pick(MODELS).to_string());
                self.bump("model_switch");
            }
            if let Some(m) = &model {
                own.push((
                    now,
                    json!({"type": "turn_context", "payload": {"turn_id": turn_id, "cwd": cwd,
                    "approval_policy": "on-request", "sandbox_policy": {"mode": "workspace-write"},
                    "model": m, "effort": "medium", "summary": "auto"}}),
                ));
            }
            let prompt = self.filler(20, 400);
            own.push(Self::event(
                now + 1,
                json!({"type": "user_message", "message": prompt, "images": []}),
            ));
            own.push(Self::item(
                now + 1,
                json!({"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": prompt}]}),
            ));
            let steps = self.rng.range(1, 6).min(calls_total - calls);
            for step in 0..steps {
                now += if copy == CopyTiming::SameSecondTurn && calls == 0 {
                    // The fork's first call answered within the copy's second.
                    100
                } else {
                    self.rng.range(800, 40_000) as i64
                };
                let context = total.map_or(9_000, |t: Use| t.input / (calls + 1).max(1))
                    + self.rng.range(500, 30_000);
                let input = context.min(400_000);
                let cached = if self.rng.chance(0.15) {
                    0
                } else {
                    input * self.rng.range(20, 95) / 100
                };
                let output = self.rng.range(20, 4_000);
                let reasoning = if self.rng.chance(0.3) {
                    0
                } else {
                    output * self.rng.range(5, 80) / 100
                };
                let last = Use {
                    input,
                    cached,
                    output,
                    reasoning,
                };
                let blob_len = self.rng.range(200, 3_000) as usize;
                own.push(Self::item(
                    now,
                    json!({"type": "reasoning", "summary": [],
                    "encrypted_content": self.rng.ident(blob_len)}),
                ));
                if step + 1 < steps {
                    let call_id = format!("call_{}", self.rng.ident(24));
                    own.push(Self::item(now, json!({"type": "function_call", "name": "shell",
                        "arguments": json!({"command": ["bash", "-lc", "cargo test"]}).to_string(), "call_id": call_id})));
                    let size = if self.rng.chance(0.02) {
                        (100_000, 400_000)
                    } else {
                        (50, 6_000)
                    };
                    let out = self.filler(size.0, size.1);
                    own.push(Self::item(now + 5, json!({"type": "function_call_output", "call_id": call_id,
                        "output": json!({"output": out, "metadata": {"exit_code": 0}}).to_string()})));
                } else {
                    let text = self.filler(20, 800);
                    own.push(Self::event(
                        now,
                        json!({"type": "agent_message", "message": text}),
                    ));
                    own.push(Self::item(
                        now,
                        json!({"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}),
                    ));
                }
                // A total that goes backwards (with the call's own usage
                // present, so the call still counts exactly).
                let regress = style != Style::Legacy && total.is_some() && self.rng.chance(0.02);
                let new_total = if regress {
                    self.bump("total_regresses");
                    last
                } else {
                    total.unwrap_or_default().plus(last)
                };
                total = Some(new_total);
                let mut info = json!({"total_token_usage": new_total.json(false), "model_context_window": 272_000});
                if style != Style::Legacy {
                    info["last_token_usage"] = last.json(false);
                } else if self.rng.chance(0.05) {
                    info["total_token_usage"] = new_total.json(true);
                    self.bump("numeric_strings");
                }
                let rate = json!({"primary": {"used_percent": 12.0, "window_minutes": 300, "resets_in_seconds": 9000}});
                own.push(Self::event(
                    now + 10,
                    json!({"type": "token_count", "info": info, "rate_limits": rate}),
                ));
                own_truth(&mut self.truths, &uuid, &model, now + 10, last);
                // A fork's first own call followed by another token_count in
                // the same second makes ccusage 20.0.24 take both for the
                // copied history and drop the call: that combination only
                // with all traps.
                let lone_first = calls == 0
                    && matches!(origin, Origin::Fork { .. })
                    && self.spec.traps == Traps::SharedWithCcusage;
                if !lone_first && self.rng.chance(0.3) {
                    // The same event again after the turn: counts once.
                    own.push(Self::event(
                        now + 12,
                        json!({"type": "token_count", "info": info, "rate_limits": rate}),
                    ));
                    self.bump("reemitted_event");
                }
                if !lone_first && self.rng.chance(0.1) {
                    own.push(Self::event(
                        now + 15,
                        json!({"type": "token_count", "info": null, "rate_limits": rate}),
                    ));
                    self.bump("rate_limit_only");
                }
                calls += 1;
            }
            if style != Style::Legacy {
                own.push(Self::event(now + 20, json!({"type": "task_complete", "turn_id": turn_id, "last_agent_message": "done"})));
            }
            now += self.rng.range(2_000, 600_000) as i64;
        }
        self.clock_ms = self.clock_ms.max(now);
        // The totals after each own line, for forks of this session.
        let mut running = total_before(&totals);
        for (_, v) in &own {
            if v["payload"]["type"] == "token_count" {
                if let Some(t) = v["payload"]["info"].get("total_token_usage") {
                    running = Some(use_of(t));
                }
            }
            totals.push(running);
        }
        lines.extend(own);
        let written = Written {
            uuid: uuid.clone(),
            lines,
            totals,
            style,
            cwd,
            model,
        };
        let mut text: Vec<String> = Vec::with_capacity(written.lines.len() + 1);
        let mut meta_line = json!({"timestamp": stamp(start, micro, &mut self.rng), "type": "session_meta", "payload": meta});
        text.push(format!("{meta_line}\n"));
        meta_line.take();
        for (ms, v) in &written.lines {
            let mut v = v.clone();
            let obj = v.as_object_mut().expect("object");
            let mut line = serde_json::Map::new();
            line.insert("timestamp".into(), json!(stamp(*ms, micro, &mut self.rng)));
            for (k, val) in std::mem::take(obj) {
                line.insert(k, val);
            }
            text.push(format!("{}\n", Value::Object(line)));
        }
        if self.rng.chance(0.03) && text.len() > 3 {
            // A line cut short (a crash mid-write), then the file goes on.
            let at = self.rng.range(2, text.len() as u64 - 1) as usize;
            let cut: String = text[at]
                .chars()
                .take(text[at].chars().count() / 2)
                .collect();
            text.insert(at, format!("{cut}\n"));
            self.malformed += 1;
            self.bump("truncated_line");
        }
        let (dir, time) = file_time(start);
        let name = format!("rollout-{time}-{uuid}.jsonl");
        let session_rel = format!("{dir}/rollout-{time}-{uuid}");
        // Where it lives: most in sessions/, some moved to archived_sessions/,
        // some in both (the sessions/ copy wins).
        let roll = self.rng.range(0, 99);
        let (primary, archived_copy) = if roll < 8 {
            self.bump("archived");
            (PathBuf::from("archived_sessions").join(&name), None)
        } else if roll < 13 {
            self.bump("archived_copy_too");
            let keep = self.rng.range(1, text.len() as u64) as usize;
            (
                PathBuf::from("sessions").join(&dir).join(&name),
                Some((
                    PathBuf::from("archived_sessions").join(&dir).join(&name),
                    keep,
                )),
            )
        } else {
            (PathBuf::from("sessions").join(&dir).join(&name), None)
        };
        let session = if primary.starts_with("archived_sessions") {
            name.trim_end_matches(".jsonl").to_string()
        } else {
            session_rel
        };
        for t in self.truths.iter_mut().filter(|t| t.session == uuid) {
            t.session = session.clone();
        }
        if let Some((path, keep)) = archived_copy {
            self.push_file(path, text[..keep].to_vec());
        }
        self.push_file(primary, text);
        self.written.push(written);
        self.written.len() - 1
    }

    fn push_file(&mut self, rel_path: PathBuf, lines: Vec<String>) {
        self.bytes += lines.iter().map(|l| l.len() as u64).sum::<u64>();
        self.files.push(GenFile { rel_path, lines });
    }

    /// Two sessions whose events are identical, timestamps included (two
    /// scripted `codex exec` runs): both count.
    fn twin(&mut self) {
        let src = match self.files.last() {
            Some(f) if f.rel_path.starts_with("sessions") => f.clone(),
            _ => return,
        };
        let name = src
            .rel_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let old_uuid = &name[name.len() - 6 - 36..name.len() - 6];
        let new_uuid = self.rng.uuid();
        let rel = PathBuf::from(src.rel_path.to_string_lossy().replace(old_uuid, &new_uuid));
        let lines: Vec<String> = src
            .lines
            .iter()
            .map(|l| l.replace(old_uuid, &new_uuid))
            .collect();
        let old_session = src
            .rel_path
            .strip_prefix("sessions")
            .unwrap()
            .with_extension("");
        let new_session = rel.strip_prefix("sessions").unwrap().with_extension("");
        let copies: Vec<Truth> = self
            .truths
            .iter()
            .filter(|t| Path::new(&t.session) == old_session)
            .map(|t| Truth {
                session: new_session.to_string_lossy().into_owned(),
                model: t.model.clone(),
                day: t.day.clone(),
                usage: t.usage,
                fallback: t.fallback,
            })
            .collect();
        if copies.is_empty() {
            return;
        }
        self.truths.extend(copies);
        self.bump("identical_twin_sessions");
        self.push_file(rel, lines);
    }
}

fn total_before(totals: &[Option<Use>]) -> Option<Use> {
    totals.iter().rev().find_map(|t| *t)
}

fn use_of(v: &Value) -> Use {
    let n = |k: &str| match &v[k] {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    };
    Use {
        input: n("input_tokens"),
        cached: n("cached_input_tokens"),
        output: n("output_tokens"),
        reasoning: n("reasoning_output_tokens"),
    }
}

fn own_truth(truths: &mut Vec<Truth>, uuid: &str, model: &Option<String>, ms: i64, u: Use) {
    truths.push(Truth {
        session: uuid.to_string(),
        model: model
            .clone()
            .unwrap_or_else(|| crate::format::codex::FALLBACK_MODEL.to_string()),
        day: utc_date(ms),
        usage: u,
        fallback: model.is_none(),
    });
}

fn add(t: &mut Tokens, u: Use) {
    t.add(u.input - u.cached, u.output, 0, u.cached);
}

/// Generates a Codex home in memory.
pub fn generate(spec: &Spec) -> (Vec<GenFile>, Expected) {
    let mut g = Gen {
        rng: Rng::new(spec.seed),
        spec: spec.clone(),
        // 2026-10-20T00:00:00Z: sessions span several days.
        clock_ms: 1_792_454_400_000,
        files: Vec::new(),
        truths: Vec::new(),
        written: Vec::new(),
        traps: BTreeMap::new(),
        malformed: 0,
        bytes: 0,
        micro_timestamps: false,
    };
    let all = spec.traps == Traps::All;
    while g.bytes < spec.target_bytes {
        let forkable: Vec<usize> = (0..g.written.len())
            .filter(|&i| g.written[i].style == Style::Current && g.written[i].lines.len() > 4)
            .collect();
        if !forkable.is_empty() && g.rng.chance(0.2) {
            let i = *g.rng.pick(&forkable);
            let upto = g.rng.range(2, g.written[i].lines.len() as u64) as usize;
            let subagent = g.rng.chance(0.4);
            let copy = if all && g.rng.chance(0.4) {
                *g.rng
                    .pick(&[CopyTiming::Multisecond, CopyTiming::SameSecondTurn])
            } else {
                CopyTiming::Quick
            };
            g.bump(if subagent { "subagent" } else { "fork" });
            if copy != CopyTiming::Quick {
                g.bump(match copy {
                    CopyTiming::Multisecond => "fork_copy_spans_seconds",
                    _ => "fork_turn_in_copy_second",
                });
            }
            // The fork is made while its parent is open: right after the copied line.
            let parent = std::mem::replace(
                &mut g.written[i],
                Written {
                    uuid: String::new(),
                    lines: Vec::new(),
                    totals: Vec::new(),
                    style: Style::Legacy,
                    cwd: String::new(),
                    model: None,
                },
            );
            let saved_clock = g.clock_ms;
            // Whole seconds, so that a copy "within the second" is.
            let at = parent.lines[upto - 1].0 + g.rng.range(1_000, 30_000) as i64;
            g.clock_ms = at - at.rem_euclid(1000);
            g.session(
                Origin::Fork {
                    parent: &parent,
                    upto,
                    subagent,
                },
                copy,
            );
            g.clock_ms = g.clock_ms.max(saved_clock);
            g.written[i] = parent;
        } else {
            g.micro_timestamps = all && g.rng.chance(0.1);
            if g.micro_timestamps {
                g.bump("six_digit_fractions");
            }
            g.session(Origin::Fresh, CopyTiming::Quick);
            g.micro_timestamps = false;
            if all && g.rng.chance(0.05) {
                g.twin();
            }
        }
        g.clock_ms += g.rng.range(0, 5 * 3_600_000) as i64;
    }
    let mut exp = Expected {
        traps: g.traps.clone(),
        files: g.files.len() as u64,
        bytes: g.bytes,
        lines: g.files.iter().map(|f| f.lines.len() as u64).sum(),
        malformed_lines: g.malformed,
        ..Expected::default()
    };
    for t in &g.truths {
        add(&mut exp.totals, t.usage);
        exp.reasoning_tokens += t.usage.reasoning;
        add(exp.by_model.entry(t.model.clone()).or_default(), t.usage);
        add(
            exp.by_session.entry(t.session.clone()).or_default(),
            t.usage,
        );
        add(exp.by_day.entry(t.day.clone()).or_default(), t.usage);
        if t.fallback && !exp.fallback_models.contains(&t.model) {
            exp.fallback_models.push(t.model.clone());
        }
    }
    (g.files, exp)
}

/// Generates a Codex home under `root` and writes `root/expected.json`.
pub fn write_home(root: &Path, spec: &Spec) -> std::io::Result<Expected> {
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
    fn same_seed_same_home_and_every_trap_is_written() {
        let spec = Spec {
            target_bytes: 3 << 20,
            traps: Traps::All,
            max_calls: 10,
            ..Spec::default()
        };
        let (a, ea) = generate(&spec);
        let (b, eb) = generate(&spec);
        assert_eq!(ea, eb);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.lines == y.lines && x.rel_path == y.rel_path));
        for trap in [
            "reemitted_event",
            "rate_limit_only",
            "fork",
            "subagent",
            "archived",
            "archived_copy_too",
            "fork_copy_spans_seconds",
            "fork_turn_in_copy_second",
            "six_digit_fractions",
        ] {
            assert!(
                ea.traps.get(trap).copied().unwrap_or(0) > 0,
                "no {trap}: {:?}",
                ea.traps
            );
        }
        assert_eq!(
            ea.by_session.values().map(|t| t.total_tokens).sum::<u64>(),
            ea.totals.total_tokens
        );
    }
}
