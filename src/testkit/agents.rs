//! A deterministic generator of the other agents' homes (Gemini CLI, GitHub
//! Copilot CLI, Qwen Code, Kimi, Grok Build, pi, OpenClaw), each in its own
//! layout, and the truth computed from the generator's own model of each
//! model call, not by parsing what it wrote.
//!
//! Per agent, sessions of model calls with user prompts, tool output and
//! other records between them (padding toward a size), and the traps its
//! format holds. [`Traps::SharedWithCcusage`]: those ccusage 20.0.24 reads
//! right (its token totals must equal the truth): pi lines written twice,
//! OpenClaw reset copies, Qwen and Gemini JSONL lines rewritten, Grok turns
//! logged twice, Kimi calls logged twice and session-scope totals, Copilot
//! sessions resumed (running totals), Gemini documents rewritten whole.
//! [`Traps::All`] adds those it reads wrong (see the README's table):
//! branched pi sessions, Qwen and Gemini cached and thought tokens, Copilot
//! totals that start again, Gemini responses without a model.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::corpus::{GenFile, Rng, Tokens};
use crate::format::agent::Agent;
use crate::timestamp::{format_rfc3339_ms, utc_date};

/// The agents this generator writes.
pub const AGENTS: [Agent; 7] = [
    Agent::Gemini,
    Agent::Copilot,
    Agent::Qwen,
    Agent::Kimi,
    Agent::Grok,
    Agent::Pi,
    Agent::OpenClaw,
];

/// Which traps the homes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traps {
    /// Those ccusage 20.0.24 reads right.
    SharedWithCcusage,
    /// All of them.
    All,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// PRNG seed; same seed, same bytes.
    pub seed: u64,
    /// Per agent: stop starting sessions once this many bytes were written.
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
            target_bytes: 256 << 10,
            traps: Traps::SharedWithCcusage,
            max_calls: 12,
        }
    }
}

/// The truth about one agent's generated home, as tokenbridge stores it:
/// input without cached tokens, output with thoughts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Truth {
    /// All model calls.
    pub totals: Tokens,
    /// By UTC day.
    pub by_day: BTreeMap<String, Tokens>,
    /// By session id.
    pub by_session: BTreeMap<String, Tokens>,
    /// By model.
    pub by_model: BTreeMap<String, Tokens>,
    /// How many of each trap were written.
    pub traps: BTreeMap<String, u64>,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The truth of every agent, by name.
pub type Expected = BTreeMap<String, Truth>;

/// One model call, as the generator decided it.
#[derive(Debug, Clone)]
struct Call {
    model: String,
    ts_ms: i64,
    /// Input without cached tokens.
    fresh: u64,
    /// Output, thoughts included.
    output: u64,
    thoughts: u64,
    cache_read: u64,
    cache_write: u64,
}

impl Call {
    fn count(&self, truth: &mut Truth, session: &str) {
        let add =
            |t: &mut Tokens| t.add(self.fresh, self.output, self.cache_write, self.cache_read);
        add(&mut truth.totals);
        add(truth.by_day.entry(utc_date(self.ts_ms)).or_default());
        add(truth.by_session.entry(session.to_string()).or_default());
        add(truth.by_model.entry(self.model.clone()).or_default());
    }
}

/// What a format can carry, so calls are drawn that it can write.
#[derive(Debug, Clone, Copy)]
struct Shape {
    cache_read: bool,
    cache_write: bool,
    thoughts: bool,
}

/// State shared by one agent's writer.
struct Gen<'a> {
    rng: Rng,
    spec: &'a Spec,
    files: Vec<GenFile>,
    truth: Truth,
    bytes: u64,
    clock_ms: i64,
}

/// 2026-11-01T00:00:00Z.
const START_MS: i64 = 1_793_491_200_000;

impl Gen<'_> {
    fn all(&self) -> bool {
        self.spec.traps == Traps::All
    }

    fn trap(&mut self, name: &str) {
        *self.truth.traps.entry(name.to_string()).or_default() += 1;
    }

    fn more(&self) -> bool {
        self.bytes < self.spec.target_bytes
    }

    /// A session's start: a few hours to a day after the previous one.
    fn session_start(&mut self) -> i64 {
        self.clock_ms += self.rng.range(3_600_000, 30 * 3_600_000) as i64;
        self.clock_ms
    }

    fn call(&mut self, model: &str, ts_ms: i64, shape: Shape) -> Call {
        // OpenAI's APIs report no cache writes.
        let writes = shape.cache_write && !model.starts_with("gpt-");
        let r = &mut self.rng;
        let thoughts = if shape.thoughts { r.range(0, 800) } else { 0 };
        Call {
            model: model.to_string(),
            ts_ms,
            fresh: r.range(1, 20_000),
            output: r.range(1, 2_000) + thoughts,
            thoughts,
            cache_read: if shape.cache_read {
                r.range(0, 60_000)
            } else {
                0
            },
            cache_write: if writes { r.range(0, 6_000) } else { 0 },
        }
    }

    fn filler(&mut self) -> String {
        let n = self.rng.range(40, 3_000) as usize;
        let words = ["parse", "the", "config", "файл", "then", "retry", "ok", "→"];
        let mut s = String::with_capacity(n + 16);
        while s.len() < n {
            let w = self.rng.pick(&words[..]);
            s.push_str(w);
            s.push(' ');
        }
        s
    }

    fn push(&mut self, rel: String, lines: Vec<String>) {
        self.bytes += lines.iter().map(|l| l.len() as u64).sum::<u64>();
        self.truth.files += 1;
        self.files.push(GenFile {
            rel_path: rel.into(),
            lines,
        });
    }
}

fn line(v: Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

fn iso(ms: i64) -> String {
    format_rfc3339_ms(ms)
}

/// Generates `agent`'s home (paths relative to it) and its truth.
pub fn generate(agent: Agent, spec: &Spec) -> (Vec<GenFile>, Truth) {
    let mut g = Gen {
        rng: Rng::new(spec.seed ^ (agent as u64).wrapping_mul(0x9e37_79b9)),
        spec,
        files: Vec::new(),
        truth: Truth::default(),
        bytes: 0,
        clock_ms: START_MS,
    };
    while g.more() {
        match agent {
            Agent::Gemini => gemini(&mut g),
            Agent::Copilot => copilot(&mut g),
            Agent::Qwen => qwen(&mut g),
            Agent::Kimi => kimi(&mut g),
            Agent::Grok => grok(&mut g),
            Agent::Pi | Agent::OpenClaw => pi(&mut g, agent),
            Agent::Claude | Agent::Codex => panic!("see testkit::corpus and testkit::codex"),
        }
    }
    g.truth.bytes = g.bytes;
    (g.files, g.truth)
}

fn pi(g: &mut Gen<'_>, agent: Agent) {
    const MODELS: &[&str] = &["claude-sonnet-4-5", "gpt-5.1-codex", "claude-haiku-4-5"];
    let shape = Shape {
        cache_read: true,
        cache_write: true,
        thoughts: false,
    };
    let id = g.rng.uuid();
    let start = g.session_start();
    let cwd = format!("/work/{}", g.rng.ident(6));
    let mut lines = vec![line(json!({
        "type": "session", "version": 3, "id": id, "timestamp": iso(start), "cwd": cwd
    }))];
    let mut model = g.rng.pick(MODELS).to_string();
    let first = g.rng.ident(8);
    lines.push(line(
        json!({"type": "model_change", "id": first, "parentId": null, "timestamp": iso(start),
        "provider": "anthropic", "modelId": model}),
    ));
    let mut parent = json!(first);
    let mut ts = start;
    // Entries a branch may copy: (line, call) pairs in order.
    let mut entries: Vec<(String, Option<Call>)> = Vec::new();
    let calls = g.rng.range(1, g.spec.max_calls);
    for _ in 0..calls {
        if g.rng.chance(0.3) {
            model = g.rng.pick(MODELS).to_string();
            let e = g.rng.ident(8);
            let l = line(
                json!({"type": "model_change", "id": e, "parentId": parent, "timestamp": iso(ts),
                "provider": "anthropic", "modelId": model}),
            );
            parent = json!(e);
            lines.push(l.clone());
            entries.push((l, None));
        }
        ts += g.rng.range(1_000, 90_000) as i64;
        let u = g.rng.ident(8);
        let text = g.filler();
        let l = line(
            json!({"type": "message", "id": u, "parentId": parent, "timestamp": iso(ts),
            "message": {"role": "user", "content": [{"type": "text", "text": text}], "timestamp": ts}}),
        );
        parent = json!(u);
        lines.push(l.clone());
        entries.push((l, None));
        ts += g.rng.range(500, 60_000) as i64;
        let c = g.call(&model, ts, shape);
        let a = g.rng.ident(8);
        let mut usage = json!({"input": c.fresh, "output": c.output, "cacheRead": c.cache_read,
            "cacheWrite": c.cache_write, "totalTokens": c.fresh + c.output + c.cache_read + c.cache_write});
        if g.rng.chance(0.5) {
            usage["cost"] = json!({"total": g.rng.range(0, 50_000) as f64 / 1e6});
        }
        // OpenClaw stamps the message with Unix ms; pi's own timestamp is the entry's.
        let mut msg = json!({"role": "assistant", "content": [{"type": "text", "text": "done"}],
            "provider": "anthropic", "usage": usage, "stopReason": "stop", "timestamp": ts});
        if agent == Agent::Pi || g.rng.chance(0.7) {
            msg["model"] = json!(model);
        }
        let l = line(
            json!({"type": "message", "id": a, "parentId": parent, "timestamp": iso(ts), "message": msg}),
        );
        parent = json!(a);
        lines.push(l.clone());
        entries.push((l.clone(), Some(c.clone())));
        c.count(&mut g.truth, &id);
        if g.rng.chance(0.1) {
            lines.push(l);
            g.trap("line_written_twice");
        }
    }
    let (rel, session_of) = match agent {
        Agent::Pi => {
            let project = format!("--work-{}--", g.rng.ident(4));
            (
                format!(
                    "sessions/{project}/{}_{id}.jsonl",
                    iso(start).replace(':', "-")
                ),
                project,
            )
        }
        _ => {
            let name = *g.rng.pick(&["main", "ops", "research"]);
            (
                format!("agents/{name}/sessions/{id}.jsonl"),
                name.to_string(),
            )
        }
    };
    if agent == Agent::OpenClaw && lines.len() > 3 && g.rng.chance(0.3) {
        // `/reset` leaves a copy of the session so far.
        let cut = g.rng.range(2, lines.len() as u64 - 1) as usize;
        let copy: Vec<String> = lines[..cut].to_vec();
        g.push(format!("{rel}.reset.{}", iso(ts).replace(':', "-")), copy);
        g.trap("reset_copy");
    }
    if agent == Agent::Pi && g.all() && entries.len() > 2 && g.rng.chance(0.6) {
        // A branch: a new session that starts with copies of this one's
        // entries up to the branch point, then its own calls.
        let cut = g.rng.range(1, entries.len() as u64 - 1) as usize;
        let child = g.rng.uuid();
        let mut child_lines = vec![line(json!({"type": "session", "version": 3, "id": child,
            "timestamp": iso(ts), "cwd": cwd, "parentSession": format!("/h/.pi/agent/{rel}")}))];
        child_lines.extend(entries[..cut].iter().map(|(l, _)| l.clone()));
        let mut t = ts;
        for _ in 0..g.rng.range(1, 3) {
            t += g.rng.range(1_000, 60_000) as i64;
            let c = g.call(MODELS[0], t, shape);
            let a = g.rng.ident(8);
            child_lines.push(line(
                json!({"type": "message", "id": a, "timestamp": iso(t),
                "message": {"role": "assistant", "model": MODELS[0], "usage": {"input": c.fresh,
                "output": c.output, "cacheRead": c.cache_read, "cacheWrite": c.cache_write}}}),
            ));
            c.count(&mut g.truth, &child);
        }
        g.push(
            format!(
                "sessions/{session_of}/{}_{child}.jsonl",
                iso(t).replace(':', "-")
            ),
            child_lines,
        );
        g.trap("branched_session");
    }
    g.push(rel, lines);
}

fn qwen(g: &mut Gen<'_>) {
    const MODELS: &[&str] = &["qwen-plus", "qwen3.8-max", "glm-5.2"];
    let all = g.all();
    let shape = Shape {
        cache_read: all,
        cache_write: false,
        thoughts: all,
    };
    let session = g.rng.uuid();
    let project = format!("-work-{}", g.rng.ident(5));
    let mut ts = g.session_start();
    let mut lines = Vec::new();
    let mut parent = Value::Null;
    let base = |uuid: &str, parent: &Value, ts: i64, kind: &str| {
        json!({"uuid": uuid, "parentUuid": parent, "sessionId": session, "timestamp": iso(ts),
            "type": kind, "cwd": "/work/app", "version": "0.2.1", "gitBranch": "main"})
    };
    for _ in 0..g.rng.range(1, g.spec.max_calls) {
        let u = g.rng.uuid();
        let mut l = base(&u, &parent, ts, "user");
        l["message"] = json!({"role": "user", "parts": [{"text": g.filler()}]});
        lines.push(line(l));
        parent = json!(u);
        ts += g.rng.range(500, 60_000) as i64;
        let model = g.rng.pick(MODELS).to_string();
        let c = g.call(&model, ts, shape);
        let a = g.rng.uuid();
        let mut l = base(&a, &parent, ts, "assistant");
        l["model"] = json!(model);
        l["message"] = json!({"role": "model", "parts": [{"text": "ok"}]});
        let mut meta = json!({"promptTokenCount": c.fresh + c.cache_read,
            "candidatesTokenCount": c.output - c.thoughts,
            "totalTokenCount": c.fresh + c.cache_read + c.output});
        if c.thoughts > 0 {
            meta["thoughtsTokenCount"] = json!(c.thoughts);
            g.trap("thoughts");
        }
        if c.cache_read > 0 {
            meta["cachedContentTokenCount"] = json!(c.cache_read);
            g.trap("cached_prompt");
        }
        l["usageMetadata"] = meta;
        let text = line(l);
        lines.push(text.clone());
        if g.rng.chance(0.1) {
            lines.push(text);
            g.trap("line_written_twice");
        }
        c.count(&mut g.truth, &session);
        parent = json!(a);
        ts += g.rng.range(1_000, 90_000) as i64;
    }
    g.push(format!("projects/{project}/chats/{session}.jsonl"), lines);
}

fn grok(g: &mut Gen<'_>) {
    const MODELS: &[&str] = &["grok-code-fast-1", "grok-4"];
    let shape = Shape {
        cache_read: true,
        cache_write: true,
        thoughts: false,
    };
    let session = g.rng.uuid();
    let cwd = format!("/work/{}", g.rng.ident(6));
    let dir = format!("sessions/{}/{session}", cwd.replace('/', "%2F"));
    let summary_model = *g.rng.pick(MODELS);
    let mut ts = g.session_start();
    let mut lines = Vec::new();
    for _ in 0..g.rng.range(1, g.spec.max_calls) {
        lines.push(line(json!({"timestamp": ts / 1000, "method": "session/update", "params": {"sessionId": session,
            "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": g.filler()}}}})));
        ts += g.rng.range(1_000, 90_000) as i64;
        let event = g.rng.uuid();
        // Newer CLIs split a turn by model; older ones name none (summary.json does).
        let per_model = g.rng.chance(0.7);
        let models: Vec<&str> = if per_model {
            if g.rng.chance(0.3) {
                MODELS.to_vec()
            } else {
                vec![*g.rng.pick(MODELS)]
            }
        } else {
            vec![summary_model]
        };
        let mut model_usage = serde_json::Map::new();
        let mut sum = [0u64; 4];
        for m in &models {
            let c = g.call(m, ts, shape);
            let u = json!({"inputTokens": c.fresh + c.cache_read + c.cache_write, "outputTokens": c.output,
                "cachedReadTokens": c.cache_read, "cacheCreationTokens": c.cache_write, "reasoningTokens": 0});
            sum[0] += c.fresh + c.cache_read + c.cache_write;
            sum[1] += c.output;
            sum[2] += c.cache_read;
            sum[3] += c.cache_write;
            model_usage.insert(m.to_string(), u);
            c.count(&mut g.truth, &session);
        }
        let mut usage = json!({"inputTokens": sum[0], "outputTokens": sum[1], "cachedReadTokens": sum[2],
            "cacheCreationTokens": sum[3]});
        if per_model {
            usage["modelUsage"] = Value::Object(model_usage);
        }
        let text = line(
            json!({"jsonrpc": "2.0", "method": "_x.ai/session/update", "params": {"sessionId": session,
            "_meta": {"eventId": event, "agentTimestampMs": ts},
            "update": {"sessionUpdate": "turn_completed", "prompt_id": g.rng.uuid(), "stop_reason": "end_turn", "usage": usage}}}),
        );
        lines.push(text.clone());
        if g.rng.chance(0.1) {
            lines.push(text);
            g.trap("turn_logged_twice");
        }
    }
    let summary = json!({"info": {"id": session, "cwd": cwd}, "current_model_id": summary_model});
    g.push(format!("{dir}/summary.json"), vec![summary.to_string()]);
    g.truth.files -= 1;
    g.push(format!("{dir}/updates.jsonl"), lines);
}

fn kimi(g: &mut Gen<'_>) {
    let shape = Shape {
        cache_read: true,
        cache_write: true,
        thoughts: false,
    };
    let session = g.rng.uuid();
    let group = g.rng.ident(6).to_lowercase();
    let mut ts = g.session_start();
    let mut lines = Vec::new();
    let code = g.rng.chance(0.5);
    let mut running = [0u64; 4];
    for _ in 0..g.rng.range(1, g.spec.max_calls) {
        ts += g.rng.range(1_000, 90_000) as i64;
        if code {
            let model = *g.rng.pick(&["kimi-for-coding", "kimi-k2.6"]);
            let c = g.call(model, ts, shape);
            let u = json!({"inputOther": c.fresh, "output": c.output, "inputCacheRead": c.cache_read,
                "inputCacheCreation": c.cache_write});
            lines.push(line(
                json!({"type": "usage.record", "model": format!("kimi-code/{model}"),
                "usage": u, "usageScope": "turn", "time": ts}),
            ));
            running[0] += c.fresh;
            running[1] += c.output;
            running[2] += c.cache_read;
            running[3] += c.cache_write;
            lines.push(line(json!({"type": "usage.record", "model": format!("kimi-code/{model}"),
                "usage": {"inputOther": running[0], "output": running[1], "inputCacheRead": running[2],
                "inputCacheCreation": running[3]}, "usageScope": "session", "time": ts + 1})));
            g.trap("session_scope_total");
            c.count(&mut g.truth, &session);
        } else {
            lines.push(line(json!({"timestamp": (ts - 500) as f64 / 1000.0,
                "message": {"type": "TurnBegin", "payload": {"user_input": g.filler()}}})));
            let c = g.call(crate::format::kimi::DEFAULT_MODEL, ts, shape);
            let text = line(
                json!({"timestamp": ts as f64 / 1000.0, "message": {"type": "StatusUpdate",
                "payload": {"token_usage": {"input_other": c.fresh, "output": c.output,
                "input_cache_read": c.cache_read, "input_cache_creation": c.cache_write},
                "message_id": format!("chatcmpl-{}", g.rng.ident(12))}}}),
            );
            lines.push(text.clone());
            if g.rng.chance(0.15) {
                lines.push(text);
                g.trap("call_logged_twice");
            }
            c.count(&mut g.truth, &session);
        }
    }
    let rel = if code {
        format!("sessions/{group}/{session}/agents/main/wire.jsonl")
    } else {
        format!("sessions/{group}/{session}/wire.jsonl")
    };
    g.push(rel, lines);
}

fn copilot(g: &mut Gen<'_>) {
    const MODELS: &[&str] = &["claude-sonnet-4.5", "gpt-5.1"];
    let shape = Shape {
        cache_read: true,
        cache_write: true,
        thoughts: false,
    };
    let session = g.rng.uuid();
    let mut ts = g.session_start();
    let mut n = 0;
    let next_id = |n: &mut u64| {
        *n += 1;
        format!("e{n}")
    };
    let mut lines = vec![line(
        json!({"type": "session.start", "data": {"sessionId": session,
        "context": {"cwd": "/work/app"}}, "id": next_id(&mut n), "timestamp": iso(ts), "parentId": null}),
    )];
    // Running totals per model, as Copilot reports them.
    let mut totals: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    let mut pending: Vec<Call> = Vec::new();
    let runs = g.rng.range(1, 3);
    let mut restarted = false;
    for run in 0..runs {
        // Never twice in a row: two equal restarted totals would read as
        // one snapshot written twice.
        let fresh_start = run > 0 && !restarted && g.all() && g.rng.chance(0.5);
        restarted = fresh_start;
        if fresh_start {
            // A log that restarts its totals with each run.
            totals.clear();
            g.trap("totals_start_again");
        }
        // A restarted total is one small call, below the previous total.
        let calls = if fresh_start {
            1
        } else {
            g.rng.range(1, g.spec.max_calls)
        };
        for _ in 0..calls {
            ts += g.rng.range(1_000, 90_000) as i64;
            lines.push(line(
                json!({"type": "user.message", "data": {"content": g.filler()},
                "id": next_id(&mut n), "timestamp": iso(ts)}),
            ));
            let model = *g.rng.pick(MODELS);
            let mut c = g.call(model, ts, shape);
            if fresh_start {
                (c.fresh, c.output, c.cache_read, c.cache_write) = (1, 1, 0, 0);
            }
            let t = totals.entry(model.to_string()).or_default();
            t[0] += c.fresh + c.cache_read + c.cache_write;
            t[1] += c.output;
            t[2] += c.cache_read;
            t[3] += c.cache_write;
            pending.push(c);
        }
        ts += g.rng.range(1_000, 60_000) as i64;
        let metrics: serde_json::Map<String, Value> = totals
            .iter()
            .map(|(m, t)| {
                (m.clone(), json!({"requests": {"count": 1}, "usage": {"inputTokens": t[0],
                    "outputTokens": t[1], "cacheReadTokens": t[2], "cacheWriteTokens": t[3], "reasoningTokens": 0}}))
            })
            .collect();
        lines.push(line(
            json!({"type": "session.shutdown", "data": {"shutdownType": "routine",
            "modelMetrics": metrics}, "id": next_id(&mut n), "timestamp": iso(ts)}),
        ));
        // The shutdown reports the calls since the last one, at its time.
        for mut c in pending.drain(..) {
            c.ts_ms = ts;
            c.count(&mut g.truth, &session);
        }
        if run + 1 < runs {
            g.trap("resumed");
            ts += g.rng.range(3_600_000, 20 * 3_600_000) as i64;
            lines.push(line(
                json!({"type": "session.resume", "data": {}, "id": next_id(&mut n),
                "timestamp": iso(ts)}),
            ));
        }
    }
    g.push(format!("session-state/{session}/events.jsonl"), lines);
}

fn gemini(g: &mut Gen<'_>) {
    const MODELS: &[&str] = &["gemini-2.5-flash", "gemini-2.5-pro"];
    let all = g.all();
    let shape = Shape {
        cache_read: true,
        cache_write: false,
        thoughts: all,
    };
    let session = g.rng.uuid();
    let hash = g.rng.ident(12).to_lowercase();
    let start = g.session_start();
    let mut ts = start;
    let classic = g.rng.chance(0.6);
    let mut messages: Vec<Value> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut model = MODELS[0];
    for i in 0..g.rng.range(1, g.spec.max_calls) {
        ts += g.rng.range(1_000, 90_000) as i64;
        let user = json!({"id": format!("u{i}"), "timestamp": iso(ts), "type": "user", "content": g.filler()});
        ts += g.rng.range(500, 60_000) as i64;
        let named = !(classic && all && i > 0 && g.rng.chance(0.2));
        if named {
            model = *g.rng.pick(MODELS);
        } else {
            g.trap("response_without_model");
        }
        let c = g.call(model, ts, shape);
        let tokens = |c: &Call, output: u64| {
            json!({"input": c.fresh + c.cache_read, "output": output - c.thoughts, "cached": c.cache_read,
                "thoughts": c.thoughts, "tool": 0, "total": c.fresh + c.cache_read + output})
        };
        let mut m = json!({"id": format!("g{i}"), "timestamp": iso(ts), "type": "gemini", "content": "ok",
            "tokens": tokens(&c, c.output)});
        if named {
            m["model"] = json!(model);
        }
        if c.thoughts > 0 {
            g.trap("thoughts");
        }
        if classic {
            messages.push(user);
            messages.push(m);
        } else {
            lines.push(line(user));
            if g.rng.chance(0.3) {
                // The response first written while it streamed, then final.
                let mut partial = m.clone();
                partial["tokens"] = tokens(&c, c.thoughts + 1);
                lines.push(line(partial));
                g.trap("line_replaced");
            }
            lines.push(line(m));
        }
        c.count(&mut g.truth, &session);
    }
    if classic {
        let doc = json!({"sessionId": session, "projectHash": hash, "startTime": iso(start),
            "lastUpdated": iso(ts), "messages": messages});
        let mut text = serde_json::to_string_pretty(&doc).expect("json");
        text.push('\n');
        g.push(
            format!(
                "tmp/{hash}/chats/session-{}-{}.json",
                iso(start)[..16].replace(':', "-"),
                &session[..8]
            ),
            vec![text],
        );
    } else {
        let mut head = vec![line(
            json!({"sessionId": session, "projectHash": hash, "startTime": iso(start)}),
        )];
        head.extend(lines);
        g.push(
            format!(
                "tmp/{hash}/chats/session-{}-{}.jsonl",
                iso(start)[..16].replace(':', "-"),
                &session[..8]
            ),
            head,
        );
    }
}

/// Writes every agent's home under `root/<agent>/` and `root/expected.json`.
pub fn write_homes(root: &Path, spec: &Spec) -> std::io::Result<Expected> {
    let mut expected = Expected::new();
    for agent in AGENTS {
        let (files, truth) = generate(agent, spec);
        let home = root.join(agent.name());
        for f in &files {
            let path = home.join(&f.rel_path);
            std::fs::create_dir_all(path.parent().expect("parent"))?;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for l in &f.lines {
                w.write_all(l.as_bytes())?;
            }
            w.flush()?;
        }
        expected.insert(agent.name().to_string(), truth);
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
    fn same_seed_same_homes_and_every_trap_is_written() {
        let spec = Spec {
            traps: Traps::All,
            target_bytes: 160 << 10,
            ..Spec::default()
        };
        let mut traps = BTreeMap::new();
        for agent in AGENTS {
            let (a, ta) = generate(agent, &spec);
            let (b, tb) = generate(agent, &spec);
            assert_eq!(ta, tb, "{agent}");
            assert!(a.iter().zip(&b).all(|(x, y)| x.lines == y.lines));
            assert!(ta.totals.messages > 3, "{agent}: {:?}", ta.totals);
            assert_eq!(
                ta.by_day.values().map(|t| t.total_tokens).sum::<u64>(),
                ta.totals.total_tokens
            );
            traps.extend(ta.traps);
        }
        for t in [
            "line_written_twice",
            "reset_copy",
            "branched_session",
            "thoughts",
            "cached_prompt",
            "turn_logged_twice",
            "call_logged_twice",
            "session_scope_total",
            "resumed",
            "totals_start_again",
            "line_replaced",
            "response_without_model",
        ] {
            assert!(traps.contains_key(t), "no {t} written: {traps:?}");
        }
    }
}
