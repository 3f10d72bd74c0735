//! Enhanced analysis: the estimated content tokens of one transcript entry,
//! by category. Only computed when `[analysis] enhanced = true`.
//!
//! Categories (docs/guide/reports.md, "Enhanced analysis"):
//! - `user_prompt`: text a person typed (`type:user`, string content or
//!   `text` blocks);
//! - `tool_result`: `tool_result` blocks of user entries (string content, or
//!   the `text` blocks inside);
//! - `assistant_text`, `thinking`, `tool_use`: the blocks of assistant
//!   entries (`text`, `thinking`, and the JSON of a `tool_use` block's `input`);
//! - `system`: `type:system` lines, and user entries marked `isMeta` or
//!   `isCompactSummary` (injected context and compaction summaries, not typed).
//!
//! An entry counts once: its identity is its `uuid` (or a hash of its content
//! when it has none), and only the copy in its own session's file counts — a
//! resumed session's copy of an earlier session's lines adds nothing, and a
//! `progress` line's copy of a subagent message adds nothing either (the
//! subagent's own file has it). Images and other non-text blocks count 0.

use simd_json::prelude::*;
use simd_json::tape::Value as TapeValue;

use crate::format::estimate::Estimator;
use crate::record::SourceContext;
use crate::timestamp::parse_rfc3339_ms;

/// Estimated tokens of one entry, by category: a row of the `content` table.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, serde::Serialize, serde::Deserialize,
)]
pub struct ContentRow {
    /// The entry's `sessionId` (else the session of its file).
    pub session_id: String,
    /// Identity: the entry's `uuid`, else `hash:<hex>` of its content.
    pub key: String,
    /// Entry time, seconds (0 when the entry has no valid timestamp).
    pub ts: u32,
    /// 1 for subagent (sidechain) entries.
    pub is_sidechain: u8,
    /// User prompt text.
    pub user_prompt_tokens: u32,
    /// Tool results.
    pub tool_result_tokens: u32,
    /// Assistant text.
    pub assistant_text_tokens: u32,
    /// Thinking.
    pub thinking_tokens: u32,
    /// Tool-use input (its JSON).
    pub tool_use_tokens: u32,
    /// System lines, meta and compact-summary user lines.
    pub system_tokens: u32,
}

impl ContentRow {
    /// All categories added.
    pub fn total(&self) -> u64 {
        u64::from(self.user_prompt_tokens)
            + u64::from(self.tool_result_tokens)
            + u64::from(self.assistant_text_tokens)
            + u64::from(self.thinking_tokens)
            + u64::from(self.tool_use_tokens)
            + u64::from(self.system_tokens)
    }

    /// Approximate RowBinary bytes, for batch sizing and overhead figures.
    pub fn approx_bytes(&self) -> usize {
        2 + self.session_id.len() + self.key.len() + 4 + 1 + 6 * 4
    }
}

/// Estimated tokens by category, summed over entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Categories {
    /// Σ user_prompt_tokens.
    pub user_prompt: u64,
    /// Σ tool_result_tokens.
    pub tool_result: u64,
    /// Σ assistant_text_tokens.
    pub assistant_text: u64,
    /// Σ thinking_tokens.
    pub thinking: u64,
    /// Σ tool_use_tokens.
    pub tool_use: u64,
    /// Σ system_tokens.
    pub system: u64,
}

impl Categories {
    fn add(&mut self, o: &Categories) {
        self.user_prompt += o.user_prompt;
        self.tool_result += o.tool_result;
        self.assistant_text += o.assistant_text;
        self.thinking += o.thinking;
        self.tool_use += o.tool_use;
        self.system += o.system;
    }

    /// Assistant text + thinking + tool use.
    pub fn assistant_output(&self) -> u64 {
        self.assistant_text + self.thinking + self.tool_use
    }
}

impl From<&ContentRow> for Categories {
    fn from(r: &ContentRow) -> Categories {
        Categories {
            user_prompt: r.user_prompt_tokens.into(),
            tool_result: r.tool_result_tokens.into(),
            assistant_text: r.assistant_text_tokens.into(),
            thinking: r.thinking_tokens.into(),
            tool_use: r.tool_use_tokens.into(),
            system: r.system_tokens.into(),
        }
    }
}

/// Content estimates of many entries, main chain and sidechain. Serialized
/// with the main chain's categories at the top level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentTotals {
    /// Main-chain entries.
    #[serde(flatten)]
    pub main: Categories,
    /// Sidechain (subagent) entries.
    pub sidechain: Categories,
    /// Entries counted.
    pub entries: u64,
}

impl ContentTotals {
    /// Adds one entry.
    pub fn add(&mut self, r: &ContentRow) {
        self.entries += 1;
        let side = if r.is_sidechain == 1 {
            &mut self.sidechain
        } else {
            &mut self.main
        };
        side.add(&Categories::from(r));
    }

    /// Adds another set of totals.
    pub fn merge(&mut self, o: &ContentTotals) {
        self.main.add(&o.main);
        self.sidechain.add(&o.sidechain);
        self.entries += o.entries;
    }

    /// Estimated assistant output (text + thinking + tool use), both chains.
    pub fn assistant_output(&self) -> u64 {
        self.main.assistant_output() + self.sidechain.assistant_output()
    }
}

/// Estimates the content of the entry `root` (already known to be a valid
/// JSON object). `None` for entries that carry no counted content, and for
/// copies (see the module docs). `scratch` is reused for tool-use JSON.
pub fn content_of(
    root: TapeValue<'_, '_>,
    ctx: &SourceContext,
    est: &Estimator,
    scratch: &mut String,
    hash: impl FnOnce() -> u128,
) -> Option<ContentRow> {
    let line_type = root.get("type").and_then(|t| t.into_string())?;
    if !matches!(line_type, "user" | "assistant" | "system") {
        return None;
    }
    let session_id = root
        .get("sessionId")
        .and_then(|s| s.into_string())
        .unwrap_or("");
    if !session_id.is_empty() && *session_id != *ctx.session_from_path {
        return None;
    }
    let flag = |name: &str| root.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut row = ContentRow::default();
    if line_type == "system" {
        row.system_tokens = count_text(root.get("content"), est);
    } else {
        // A string content is one text block. Text is typed by a person,
        // injected (meta, compaction summary), or written by the assistant.
        let user = line_type == "user";
        let meta = user && (flag("isMeta") || flag("isCompactSummary"));
        let (mut text, mut tool_result, mut thinking, mut tool_use) = (0u32, 0u32, 0u32, 0u32);
        match root.get("message").and_then(|m| m.get("content")) {
            Some(c) if c.as_str().is_some() => text = count_text(Some(c), est),
            Some(c) => {
                for block in c.as_array().into_iter().flat_map(|a| a.iter()) {
                    let (slot, n) = match block.get("type").and_then(|t| t.into_string()) {
                        Some("text") => (&mut text, count_text(block.get("text"), est)),
                        Some("tool_result") if user => {
                            (&mut tool_result, count_blocks(block.get("content"), est))
                        }
                        Some("thinking") if !user => {
                            (&mut thinking, count_text(block.get("thinking"), est))
                        }
                        Some("tool_use") if !user => {
                            let n = block.get("input").map_or(0, |input| {
                                scratch.clear();
                                write_json(scratch, input);
                                clamp(est.count(scratch))
                            });
                            (&mut tool_use, n)
                        }
                        _ => continue,
                    };
                    *slot = slot.saturating_add(n);
                }
            }
            None => {}
        }
        match (user, meta) {
            (true, true) => row.system_tokens = text,
            (true, false) => row.user_prompt_tokens = text,
            _ => row.assistant_text_tokens = text,
        }
        row.tool_result_tokens = tool_result;
        row.thinking_tokens = thinking;
        row.tool_use_tokens = tool_use;
    }
    if row.total() == 0 {
        return None;
    }
    row.is_sidechain = u8::from(flag("isSidechain"));
    row.session_id = if session_id.is_empty() {
        ctx.session_from_path.to_string()
    } else {
        session_id.to_string()
    };
    row.key = match root.get("uuid").and_then(|u| u.into_string()) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!("hash:{:032x}", hash()),
    };
    row.ts = root
        .get("timestamp")
        .and_then(|t| t.into_string())
        .and_then(parse_rfc3339_ms)
        .filter(|ms| (0..=u32::MAX as i64 * 1000).contains(ms))
        .map_or(0, |ms| (ms / 1000) as u32);
    Some(row)
}

fn clamp(n: u64) -> u32 {
    n.min(u64::from(u32::MAX)) as u32
}

/// Tokens of a string value (0 for anything else).
fn count_text(v: Option<TapeValue<'_, '_>>, est: &Estimator) -> u32 {
    v.and_then(|v| v.into_string())
        .map_or(0, |s| clamp(est.count(s)))
}

/// A tool result's content: a string, or blocks whose `text` ones count.
fn count_blocks(v: Option<TapeValue<'_, '_>>, est: &Estimator) -> u32 {
    let Some(v) = v else { return 0 };
    if v.as_str().is_some() {
        return count_text(Some(v), est);
    }
    let mut n = 0u32;
    for block in v.as_array().into_iter().flat_map(|a| a.iter()) {
        if block.get("type").and_then(|t| t.into_string()) == Some("text") {
            n = n.saturating_add(count_text(block.get("text"), est));
        }
    }
    n
}

/// Compact JSON of a tape value: what a tool-use input looked like on the
/// wire, close enough to estimate its tokens.
fn write_json(out: &mut String, v: TapeValue<'_, '_>) {
    use std::fmt::Write;
    if let Some(obj) = v.as_object() {
        out.push('{');
        for (i, (k, val)) in obj.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            write_json(out, val);
        }
        out.push('}');
    } else if let Some(arr) = v.as_array() {
        out.push('[');
        for (i, val) in arr.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json(out, val);
        }
        out.push(']');
    } else if let Some(s) = v.as_str() {
        write_str(out, s);
    } else if let Some(n) = v.as_u64() {
        let _ = write!(out, "{n}");
    } else if let Some(n) = v.as_i64() {
        let _ = write!(out, "{n}");
    } else if let Some(f) = v.as_f64() {
        let _ = write!(out, "{f}");
    } else if let Some(b) = v.as_bool() {
        out.push_str(if b { "true" } else { "false" });
    } else {
        out.push_str("null");
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::claude::LineParser;

    fn ctx() -> SourceContext {
        crate::format::claude::paths::context_of(std::path::Path::new("/c/projects/p/s1.jsonl"))
    }

    fn content(line: &str) -> Option<ContentRow> {
        let mut p = LineParser::new();
        p.set_estimator(Some(Estimator::Heuristic));
        let _ = p.classify(&mut line.as_bytes().to_vec(), &ctx(), 0);
        p.take_content().pop()
    }

    #[test]
    fn categories_of_user_assistant_and_system_entries() {
        let r = content(r#"{"type":"user","sessionId":"s1","uuid":"u1","timestamp":"2025-01-01T00:00:01Z","message":{"role":"user","content":"hello world"}}"#).unwrap();
        assert_eq!((r.user_prompt_tokens, r.total()), (2, 2));
        assert_eq!(
            (r.key.as_str(), r.ts, r.is_sidechain),
            ("u1", 1735689601, 0)
        );

        let r = content(r#"{"type":"user","sessionId":"s1","uuid":"u2","isMeta":true,"message":{"content":[{"type":"text","text":"hello world"}]}}"#).unwrap();
        assert_eq!((r.system_tokens, r.user_prompt_tokens), (2, 0));

        let r = content(r#"{"type":"user","uuid":"u3","isSidechain":true,"message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"one two three"},{"type":"tool_result","content":[{"type":"text","text":"four"},{"type":"image","source":{}}]}]}}"#).unwrap();
        assert_eq!((r.tool_result_tokens, r.is_sidechain), (4, 1));
        assert_eq!(&*r.session_id, "s1");

        let r = content(r#"{"type":"assistant","sessionId":"s1","uuid":"a1","message":{"id":"m","content":[{"type":"thinking","thinking":"let me think","signature":"zzzzzz"},{"type":"text","text":"done"},{"type":"tool_use","id":"t","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":1,"output_tokens":2}},"timestamp":"2025-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!((r.thinking_tokens, r.assistant_text_tokens), (3, 1));
        // {"command":"ls"} -> `{"`, `command`, `":"`, `ls`, `"}`
        assert_eq!(r.tool_use_tokens, 5);

        let r = content(r#"{"type":"system","sessionId":"s1","uuid":"y","content":"compacted"}"#)
            .unwrap();
        assert_eq!(r.system_tokens, 1);
    }

    #[test]
    fn copies_progress_and_empty_entries_count_nothing() {
        // Another session's line in this file: a resumed session's copy.
        assert!(content(
            r#"{"type":"user","sessionId":"s0","uuid":"u","message":{"content":"hi"}}"#
        )
        .is_none());
        assert!(content(r#"{"type":"progress","sessionId":"s1","data":{"type":"agent_progress","message":{"type":"user","message":{"content":"hi"}}}}"#).is_none());
        assert!(content(r#"{"type":"summary","summary":"a summary"}"#).is_none());
        assert!(content(
            r#"{"type":"user","sessionId":"s1","message":{"content":[{"type":"image"}]}}"#
        )
        .is_none());
    }

    #[test]
    fn entries_without_uuid_are_keyed_by_content() {
        let a = content(r#"{"type":"user","message":{"content":"hi there"}}"#).unwrap();
        let b = content(r#"{"type":"user",  "message":{"content":"hi there"}}"#).unwrap();
        assert!(a.key.starts_with("hash:"));
        assert_eq!(a.key, b.key);
    }

    #[test]
    fn tool_input_json_round_trips() {
        let mut line = br#"{"a":[1,-2,1.5,true,null,"q\"\n"],"b":{}}"#.to_vec();
        let mut buffers = simd_json::Buffers::new(64);
        let mut tape = simd_json::Tape::null();
        simd_json::fill_tape(&mut line, &mut buffers, &mut tape).unwrap();
        let mut out = String::new();
        write_json(&mut out, tape.as_value());
        assert_eq!(out, r#"{"a":[1,-2,1.5,true,null,"q\"\n"],"b":{}}"#);
    }

    #[test]
    fn totals_split_main_and_sidechain() {
        let mut t = ContentTotals::default();
        t.add(&ContentRow {
            thinking_tokens: 5,
            tool_use_tokens: 2,
            ..ContentRow::default()
        });
        t.add(&ContentRow {
            is_sidechain: 1,
            assistant_text_tokens: 3,
            user_prompt_tokens: 7,
            ..ContentRow::default()
        });
        assert_eq!(
            (
                t.main.thinking,
                t.sidechain.assistant_text,
                t.sidechain.user_prompt
            ),
            (5, 3, 7)
        );
        assert_eq!((t.assistant_output(), t.entries), (10, 2));
    }
}
