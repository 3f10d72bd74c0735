//! Google's Gemini CLI: `$GEMINI_DATA_DIR` (default `~/.gemini`),
//! `tmp/<project hash>/chats/session-*.json`, one JSON document per session
//! **rewritten whole** after every message, and the newer `*.jsonl`, one
//! message per line, appended, where a later line with the same message id
//! replaces an earlier one.
//!
//! A model response is a message of `"type": "gemini"` with `tokens`
//! (`input`, `output`, `cached`, `thoughts`, `tool`, `total`; snake and
//! camel aliases accepted). Rows store it as billed:
//!
//! - `input` includes `cached` when `total == input + output + thoughts +
//!   tool` (Gemini's own accounting); then input = input − cached, else
//!   input is taken as already net of the cache. Tool-use prompt tokens are
//!   input too.
//! - Output = `output` + `thoughts` (thinking is billed as output);
//!   `reasoning_tokens` = `thoughts`. ccusage 20.0.24 leaves thoughts out
//!   of output and cost (it adds them to `totalTokens` only).
//! - Model: the message's `model`, else the last model seen in the file.
//!   Time: the message's `timestamp`, else the session's `lastUpdated` /
//!   `startTime`.
//! - Session: the document's `sessionId` (a JSONL line's `sessionId`), else
//!   the file name; project: the folder under `tmp/`. Key:
//!   `gemini:<session>:<message id>`, ranked by token total, so a message
//!   rewritten with its final counts replaces the partial one and a whole
//!   file read again adds nothing.
//!
//! The whole-file reader ([`whole_file`]) parses a document at once; the
//! line reader ([`line`]) reads the JSONL form in order, keeping the last
//! model in [`State`].

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::format::json_fields::{self, count, first, str_at};
use crate::format::{BadLine, LineCounts, MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// What a JSONL session has said that later lines depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The model of the last message that named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The session id the file's lines carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// Whether `path` (under a Gemini folder) is a chat: `chats/*.json` or
/// `chats/*.jsonl`.
pub fn is_chat(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "chats")
        && path
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
}

/// Whether a chat file is the classic whole-document form.
pub fn is_whole_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// The context of a chat file: session = the file name (the document's
/// `sessionId` wins), project = the folder under `tmp/`.
pub fn context_of(path: &Path) -> SourceContext {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let project = comps
        .iter()
        .rposition(|c| c == "tmp")
        .and_then(|i| comps.get(i + 1))
        .filter(|p| **p != "chats")
        .cloned()
        .unwrap_or_default();
    SourceContext {
        agent: crate::format::agent::Agent::Gemini,
        path: path.to_string_lossy().into(),
        session_from_path: stem.into(),
        project: project.into(),
        agent_from_path: Arc::from(""),
        content_id: Arc::from(""),
        primary: true,
        host: Arc::from(""),
        user: Arc::from(""),
    }
}

/// Whether a JSONL line can matter to the state or the usage.
pub fn may_matter(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"tokens").is_some()
        || memchr::memmem::find(line, b"model").is_some()
        || memchr::memmem::find(line, b"sessionId").is_some()
        || memchr::memmem::find(line, b"\\u").is_some()
}

/// Reads one JSONL line at `offset`.
pub fn line(
    state: &mut State,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Parsed {
    let obj = match json_fields::object(line) {
        Ok(o) => Value::Object(o),
        Err(kind) => return Parsed::Malformed(kind),
    };
    if let Some(s) = str_at(&obj, &["sessionId"]) {
        state.session = Some(s.to_string());
    }
    let session = state.session.clone();
    match message(
        &mut state.model,
        &obj,
        session.as_deref(),
        None,
        ctx,
        offset,
        shared,
    ) {
        Ok(Some(row)) => Parsed::Usage(Box::new(row)),
        Ok(None) => Parsed::Other,
        Err(kind) => Parsed::Malformed(kind),
    }
}

/// What one read of a whole session document gave.
#[derive(Debug, Default)]
pub struct Document {
    /// The responses' rows.
    pub rows: Vec<UsageRow>,
    /// Messages by class (a message counts as a line).
    pub counts: LineCounts,
    /// Messages that could not be read.
    pub bad: Vec<BadLine>,
}

/// Why a document gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentError {
    /// Not a JSON object with a `messages` array: possibly caught while being
    /// rewritten.
    Malformed(MalformedKind),
}

/// Reads a whole session document (`bytes` is the file).
pub fn whole_file(
    bytes: &[u8],
    ctx: &SourceContext,
    shared: &mut Interner,
) -> Result<Document, DocumentError> {
    let doc = Value::Object(json_fields::object(bytes).map_err(DocumentError::Malformed)?);
    let Some(messages) = doc.get("messages").and_then(Value::as_array) else {
        return Err(DocumentError::Malformed(MalformedKind::MissingField));
    };
    let session = str_at(&doc, &["sessionId"]);
    let fallback_ms = json_fields::time_ms(doc.get("lastUpdated"))
        .ok()
        .flatten()
        .or_else(|| json_fields::time_ms(doc.get("startTime")).ok().flatten());
    let mut out = Document::default();
    let mut model = None;
    for (i, m) in messages.iter().enumerate() {
        // The message's index stands in for its offset.
        match message(&mut model, m, session, fallback_ms, ctx, i as u64, shared) {
            Ok(Some(row)) => {
                out.counts.usage += 1;
                out.rows.push(row);
            }
            Ok(None) => out.counts.other += 1,
            Err(kind) => {
                out.counts.malformed += 1;
                out.bad.push(BadLine {
                    offset: i as u64,
                    kind,
                    head: format!("messages[{i}]"),
                });
            }
        }
    }
    Ok(out)
}

/// The row of one message; `None` for messages that are not model
/// responses with tokens. `model` is the last model seen (updated).
fn message(
    model: &mut Option<String>,
    m: &Value,
    session: Option<&str>,
    fallback_ms: Option<i64>,
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    if !m.is_object() {
        return Err(MalformedKind::NotObject);
    }
    if let Some(name) = str_at(m, &["model"]) {
        *model = Some(name.to_string());
    }
    if str_at(m, &["type"]) != Some("gemini") {
        return Ok(None);
    }
    let tokens = match m.get("tokens") {
        None | Some(Value::Null) => return Ok(None),
        Some(t) if t.is_object() => t,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let input = count(first(
        tokens,
        &["input", "input_tokens", "prompt", "promptTokenCount"],
    ))?;
    let output = count(first(
        tokens,
        &[
            "output",
            "output_tokens",
            "candidates",
            "candidatesTokenCount",
        ],
    ))?;
    let cached = count(first(
        tokens,
        &["cached", "cached_tokens", "cachedContentTokenCount"],
    ))?;
    let thoughts = count(first(
        tokens,
        &["thoughts", "thoughts_tokens", "thoughtsTokenCount"],
    ))?;
    let tool = count(first(
        tokens,
        &["tool", "tool_tokens", "toolUsePromptTokenCount"],
    ))?;
    let total = count(first(tokens, &["total", "total_tokens", "totalTokenCount"]))?;
    let cached_inside = total == input + output + thoughts + tool;
    let fresh = if cached_inside {
        input.saturating_sub(cached)
    } else {
        input
    } + tool;
    let ts_ms = match json_fields::time_ms(m.get("timestamp"))? {
        Some(t) => t,
        None => fallback_ms.ok_or(MalformedKind::MissingField)?,
    };
    let session = session
        .map(|s| shared.get(Shared::Session, s))
        .unwrap_or_else(|| ctx.session_from_path.clone());
    let id = str_at(m, &["id"]);
    let key = match id {
        Some(id) => format!("gemini:{session}:{id}"),
        None => format!("gemini:{session}:@{ts_ms}"),
    };
    let out = output + thoughts;
    let sum = fresh + cached + out;
    Ok(Some(UsageRow {
        key,
        version: (1 << 63) | (sum.min((1 << 62) - 1) << 1) | 1,
        ts: (ts_ms / 1000) as u32,
        ts_ms,
        session_id: session,
        model: shared.get(Shared::Model, model.as_deref().unwrap_or("")),
        message_id: id.unwrap_or("").to_string(),
        entry_type: gemini_type(),
        input_tokens: fresh,
        output_tokens: out,
        cache_read_input_tokens: cached,
        reasoning_tokens: thoughts,
        ..UsageRow::of_source(ctx, offset, shared)
    }))
}

fn gemini_type() -> Arc<str> {
    static T: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("gemini"));
    T.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "sessionId": "a1b2", "projectHash": "5f3a9c",
      "startTime": "2026-11-20T10:00:00.000Z", "lastUpdated": "2026-11-20T10:05:00.000Z",
      "messages": [
        {"id": "m1", "timestamp": "2026-11-20T10:00:01.000Z", "type": "user", "content": "hi"},
        {"id": "m2", "timestamp": "2026-11-20T10:00:05.000Z", "type": "gemini", "tokens": {"input": 12000, "output": 300, "cached": 8000, "thoughts": 150, "tool": 0, "total": 12450}, "model": "gemini-2.5-pro"},
        {"id": "m3", "type": "gemini", "tokens": {"input": 2000, "output": 100, "cached": 500, "thoughts": 0, "tool": 50, "total": 2650}},
        {"id": "m4", "type": "gemini", "tokens": {"input": -1}}
      ]
    }"#;

    #[test]
    fn a_document_gives_its_responses_as_billed() {
        let ctx = context_of(Path::new("/h/.gemini/tmp/5f3a9c/chats/session-x.json"));
        assert_eq!(&*ctx.project, "5f3a9c");
        let d = whole_file(DOC.as_bytes(), &ctx, &mut Interner::default()).unwrap();
        assert_eq!(
            (d.counts.usage, d.counts.other, d.counts.malformed),
            (2, 1, 1)
        );
        let (a, b) = (&d.rows[0], &d.rows[1]);
        // Cached inside input (total = input + output + thoughts + tool).
        assert_eq!(
            (
                a.input_tokens,
                a.cache_read_input_tokens,
                a.output_tokens,
                a.reasoning_tokens
            ),
            (4000, 8000, 450, 150)
        );
        assert_eq!(a.key, "gemini:a1b2:m2");
        // Total counts the cache separately: input is already net; tool is input.
        assert_eq!((b.input_tokens, b.cache_read_input_tokens), (2050, 500));
        assert_eq!(&*b.model, "gemini-2.5-pro", "the last model seen");
        assert_eq!(
            b.ts_ms, 1_795_169_100_000,
            "lastUpdated when the message has no time"
        );
        assert_eq!(d.bad[0].kind, MalformedKind::BadTokenCount);
    }

    #[test]
    fn a_half_written_document_is_an_error_not_rows() {
        let ctx = context_of(Path::new("/h/.gemini/tmp/p/chats/s.json"));
        let half = &DOC.as_bytes()[..DOC.len() / 2];
        assert!(whole_file(half, &ctx, &mut Interner::default()).is_err());
        assert!(whole_file(b"{\"a\":1}", &ctx, &mut Interner::default()).is_err());
    }

    #[test]
    fn jsonl_lines_carry_the_model_and_session() {
        let ctx = context_of(Path::new("/h/.gemini/tmp/p/chats/session-b.jsonl"));
        let mut st = State::default();
        let mut sh = Interner::default();
        let first = br#"{"id":"n2","sessionId":"s-9","timestamp":"2026-11-21T10:00:05.000Z","type":"gemini","tokens":{"input":1000,"output":10,"total":1010},"model":"gemini-2.5-pro"}"#;
        let later = br#"{"id":"n2","timestamp":"2026-11-21T10:00:06.000Z","type":"gemini","tokens":{"input":1000,"output":200,"total":1200}}"#;
        let Parsed::Usage(a) = line(&mut st, first, &ctx, 0, &mut sh) else {
            panic!()
        };
        let Parsed::Usage(b) = line(&mut st, later, &ctx, 200, &mut sh) else {
            panic!()
        };
        assert_eq!(a.key, b.key, "the later line replaces the earlier");
        assert!(b.version > a.version);
        assert_eq!(&*b.model, "gemini-2.5-pro");
        assert_eq!(&*b.session_id, "s-9");
    }
}
