//! Qwen Code's chat recordings: `$QWEN_DATA_DIR/projects/<project>/chats/<session>.jsonl`
//! (default `~/.qwen`), appended line by line. A model response is a line
//! of `"type": "assistant"` with Gemini's `usageMetadata`:
//! `promptTokenCount` (cached tokens included), `cachedContentTokenCount`,
//! `candidatesTokenCount`, `thoughtsTokenCount` (billed as output),
//! `totalTokenCount`.
//!
//! Lines look like Claude Code's (`uuid`, `parentUuid`, `sessionId`,
//! `version`), so which format a file has is decided by the folder it was
//! configured under, never guessed from its fields.
//!
//! A row stores the prompt split as Anthropic counts it: `input_tokens` =
//! prompt − cached, `cache_read_input_tokens` = cached; `output_tokens` =
//! candidates + thoughts, of which `reasoning_tokens` = thoughts; so the
//! row's total equals `totalTokenCount`. (ccusage 20.0.24 adds the cached
//! tokens to the full prompt, counting them twice, and leaves thoughts out
//! of the output.) A response is keyed by its record `uuid`; without one,
//! by a hash of its line. The model is the line's `model`, else `unknown`
//! (unpriced), as ccusage names it.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::format::json_fields::{self, count, str_at};
use crate::format::{MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// The model of a response that names none.
pub const UNKNOWN_MODEL: &str = "unknown";

/// Whether `path` is a chat recording (a `.jsonl` file in a `chats/` folder).
pub fn is_chat(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
        && path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "chats")
}

/// The context of a chat file: the session is the file name (a line's
/// `sessionId` wins), the project the folder under `projects/`.
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
        .rposition(|c| c == "projects")
        .and_then(|i| comps.get(i + 1))
        .filter(|p| **p != "chats" && !p.ends_with(".jsonl"))
        .cloned()
        .unwrap_or_default();
    SourceContext {
        agent: crate::format::agent::Agent::Qwen,
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

/// Whether a line can carry usage (the others are only checked).
pub fn may_matter(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"usageMetadata").is_some()
        || memchr::memmem::find(line, b"\\u").is_some()
}

/// Reads one line (without its newline) at `offset`. Qwen's lines stand
/// alone; the state is empty.
pub fn line(line: &[u8], ctx: &SourceContext, offset: u64, shared: &mut Interner) -> Parsed {
    let obj = match json_fields::object(line) {
        Ok(o) => Value::Object(o),
        Err(kind) => return Parsed::Malformed(kind),
    };
    match response(&obj, line, ctx, offset, shared) {
        Ok(Some(row)) => Parsed::Usage(Box::new(row)),
        Ok(None) => Parsed::Other,
        Err(kind) => Parsed::Malformed(kind),
    }
}

fn response(
    obj: &Value,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    if str_at(obj, &["type"]) != Some("assistant") {
        return Ok(None);
    }
    let usage = match obj.get("usageMetadata") {
        None | Some(Value::Null) => return Ok(None),
        Some(u) if u.is_object() => u,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let prompt = count(usage.get("promptTokenCount"))?;
    let cached = count(usage.get("cachedContentTokenCount"))?.min(prompt);
    let candidates = count(usage.get("candidatesTokenCount"))?;
    let thoughts = count(usage.get("thoughtsTokenCount"))?;
    let ts_ms = json_fields::time_ms(obj.get("timestamp"))?.ok_or(MalformedKind::MissingField)?;
    let session = match obj.get("sessionId") {
        Some(Value::String(s)) if !s.is_empty() => shared.get(Shared::Session, s),
        None | Some(Value::Null) | Some(Value::String(_)) => ctx.session_from_path.clone(),
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let key = match str_at(obj, &["uuid"]) {
        Some(id) => format!("qwen:{id}"),
        None => format!("qwen:hash:{:032x}", xxhash_rust::xxh3::xxh3_128(line)),
    };
    let output = candidates + thoughts;
    let total = prompt + output;
    let cwd = shared.get(Shared::Cwd, str_at(obj, &["cwd"]).unwrap_or(""));
    Ok(Some(UsageRow {
        key,
        version: (1 << 63) | (total.min((1 << 62) - 1) << 1) | 1,
        ts: (ts_ms / 1000) as u32,
        ts_ms,
        session_id: session,
        model: shared.get(
            Shared::Model,
            str_at(obj, &["model"]).unwrap_or(UNKNOWN_MODEL),
        ),
        message_id: str_at(obj, &["uuid"]).unwrap_or("").to_string(),
        entry_type: assistant_type(),
        input_tokens: prompt - cached,
        output_tokens: output,
        cache_read_input_tokens: cached,
        cwd,
        git_branch: shared.get(Shared::GitBranch, str_at(obj, &["gitBranch"]).unwrap_or("")),
        cc_version: shared.get(Shared::Version, str_at(obj, &["version"]).unwrap_or("")),
        reasoning_tokens: thoughts,
        ..UsageRow::of_source(ctx, offset, shared)
    }))
}

fn assistant_type() -> Arc<str> {
    static T: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("assistant"));
    T.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/h/.qwen/projects/-work-app/chats/9a8b.jsonl";

    fn read(l: &str) -> Parsed {
        line(
            l.as_bytes(),
            &context_of(Path::new(PATH)),
            0,
            &mut Interner::default(),
        )
    }

    #[test]
    fn the_prompt_is_split_into_fresh_and_cached_and_thoughts_are_output() {
        let p = read(
            r#"{"uuid":"a-1","sessionId":"s-1","timestamp":"2026-11-20T10:00:03.000Z","type":"assistant","cwd":"/work/app","version":"0.2.1","gitBranch":"main","model":"qwen3-coder-plus","message":{"role":"model","parts":[]},"usageMetadata":{"promptTokenCount":12000,"candidatesTokenCount":300,"thoughtsTokenCount":100,"cachedContentTokenCount":9000,"totalTokenCount":12400}}"#,
        );
        let Parsed::Usage(r) = p else { panic!("{p:?}") };
        assert_eq!(
            (
                r.input_tokens,
                r.cache_read_input_tokens,
                r.output_tokens,
                r.reasoning_tokens
            ),
            (3000, 9000, 400, 100)
        );
        assert_eq!(
            r.input_tokens + r.cache_read_input_tokens + r.output_tokens,
            12400
        );
        assert_eq!(&*r.session_id, "s-1");
        assert_eq!(&*r.project, "-work-app");
        assert_eq!(r.key, "qwen:a-1");
        assert_eq!(&*r.agent, "qwen");
    }

    #[test]
    fn other_lines_and_bad_ones() {
        assert_eq!(
            read(r#"{"uuid":"u","type":"user","timestamp":"2026-11-20T10:00:00Z","message":{}}"#),
            Parsed::Other
        );
        let no_model = read(
            r#"{"type":"assistant","timestamp":"2026-11-20T10:00:00Z","usageMetadata":{"promptTokenCount":10}}"#,
        );
        let Parsed::Usage(r) = no_model else { panic!() };
        assert_eq!(&*r.model, UNKNOWN_MODEL);
        assert_eq!(&*r.session_id, "9a8b", "the file names the session");
        assert!(r.key.starts_with("qwen:hash:"));
        for (l, kind) in [
            (
                r#"{"type":"assistant","usageMetadata":{"promptTokenCount":10}}"#,
                MalformedKind::MissingField,
            ),
            (
                r#"{"type":"assistant","timestamp":"2026-11-20T10:00:00Z","usageMetadata":{"promptTokenCount":-1}}"#,
                MalformedKind::BadTokenCount,
            ),
            (
                r#"{"type":"assistant","timestamp":"2026-11-20T10:00:00Z","usageMetadata":[]}"#,
                MalformedKind::MistypedField,
            ),
        ] {
            assert_eq!(read(l), Parsed::Malformed(kind), "{l}");
        }
    }

    #[test]
    fn only_chat_files_are_qwens() {
        assert!(is_chat(Path::new(PATH)));
        assert!(!is_chat(Path::new("/h/.qwen/projects/p/other.jsonl")));
        assert!(!is_chat(Path::new("/h/.qwen/projects/p/chats/x.json")));
    }
}
