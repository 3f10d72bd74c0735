//! Classifying one JSONL line: usage entry, other entry, blank, or malformed.
//!
//! The hot path, without content estimation: a line without usage is proven
//! valid by [`crate::validate`] and a plain assistant entry is read in place
//! by [`crate::fast_usage`]. Everything else (and every line when content is
//! estimated) goes to simd-json, which builds a tape into buffers this parser
//! reuses; fields are looked up on the tape without building a DOM. Strings
//! borrow from the line until the winning fields are copied into a
//! [`UsageRow`]. Failures are a small `Copy` enum, counted by the caller,
//! never boxed.
//!
//! Validity rules (also in the README):
//! - a line must be a JSON object (blank lines are skipped, not errors);
//! - it is a usage entry when `message.usage` is present and not null, or when
//!   it is a `progress` line whose `data.type` is `agent_progress` and which
//!   carries `data.message.message.usage` (such an entry takes `requestId`,
//!   `uuid` and `timestamp` from `data.message`, and `isSidechain` from the
//!   line itself);
//! - a usage entry needs a string RFC 3339 `timestamp`, and integer
//!   `input_tokens` and `output_tokens` in `0..=MAX_TOKENS`; the cache and
//!   server-tool counts are optional (absent or null is 0) but follow the same
//!   rule when present;
//! - the string fields it reads (`message.id`, `requestId`, `uuid`,
//!   `sessionId`, `message.model`, `cwd`, `gitBranch`, `version`, `agentId`,
//!   `service_tier`) may be absent or null, and must be strings otherwise;
//!   `isSidechain` must be a boolean when present.

use std::borrow::Cow;

use simd_json::prelude::*;
use simd_json::tape::Value as TapeValue;
use simd_json::{Buffers, ErrorType, Tape, ValueType};

use crate::content::{content_of, ContentRow};
use crate::dedup;
use crate::estimate::Estimator;
use crate::record::{Interner, Shared, SourceContext, UsageRow};
use crate::timestamp::parse_rfc3339_ms;

/// Bytes that must follow a line for [`LineParser::classify_padded`].
pub const PADDING: usize = simd_json::INPUT_PADDING;

/// Largest token count one field of one message may carry. Anything above is
/// treated as corrupt input rather than silently inflating totals.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// Why a line was rejected. Cheap to copy and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Not parseable as JSON (syntax, truncation, trailing data, bad escapes).
    InvalidJson,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Nested deeper than the parser's limit (1024).
    TooDeep,
    /// Valid JSON, but not an object.
    NotObject,
    /// Longer than `max_line_bytes`.
    TooLong,
    /// A usage entry without a required field (`timestamp`, `input_tokens`, `output_tokens`).
    MissingField,
    /// A field with the wrong JSON type.
    MistypedField,
    /// A token count that is negative, fractional, a string, or above [`MAX_TOKENS`].
    BadTokenCount,
    /// A `timestamp` that is not RFC 3339.
    BadTimestamp,
}

impl MalformedKind {
    /// Every kind, for metrics and reports.
    pub const ALL: [MalformedKind; 9] = [
        MalformedKind::InvalidJson,
        MalformedKind::InvalidUtf8,
        MalformedKind::TooDeep,
        MalformedKind::NotObject,
        MalformedKind::TooLong,
        MalformedKind::MissingField,
        MalformedKind::MistypedField,
        MalformedKind::BadTokenCount,
        MalformedKind::BadTimestamp,
    ];

    /// Stable snake_case name used in logs, metrics and the dead-letter file.
    pub fn as_str(self) -> &'static str {
        match self {
            MalformedKind::InvalidJson => "invalid_json",
            MalformedKind::InvalidUtf8 => "invalid_utf8",
            MalformedKind::TooDeep => "too_deep",
            MalformedKind::NotObject => "not_object",
            MalformedKind::TooLong => "too_long",
            MalformedKind::MissingField => "missing_field",
            MalformedKind::MistypedField => "mistyped_field",
            MalformedKind::BadTokenCount => "bad_token_count",
            MalformedKind::BadTimestamp => "bad_timestamp",
        }
    }

    /// Index into [`MalformedKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The class of one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Empty or whitespace only.
    Blank,
    /// A valid entry without usage (user, system, progress, summary, …).
    Other,
    /// A usage entry.
    Usage(Box<UsageRow>),
    /// Rejected.
    Malformed(MalformedKind),
}

/// How thoroughly lines are classified.
#[derive(Debug, Clone, Copy)]
pub enum ParseMode {
    /// Every line is parsed and validated (the default).
    Full,
    /// Only lines that can carry usage are parsed; the others count as
    /// `other` unvalidated (`[watch] validate_all_lines = false`).
    UsageOnly,
    /// Every line is parsed, and its content estimated (enhanced analysis).
    Enhanced(Estimator),
}

impl ParseMode {
    /// The estimator, in enhanced mode.
    pub fn estimator(self) -> Option<Estimator> {
        match self {
            ParseMode::Enhanced(e) => Some(e),
            _ => None,
        }
    }
}

/// False only for a line that cannot be a usage entry: it has neither the
/// key `"usage"` nor a `\u` escape (which could spell the key). Much cheaper
/// than parsing: two substring searches.
pub fn may_carry_usage(line: &[u8]) -> bool {
    static ESCAPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u"));
    mentions_usage(line) || ESCAPE.find(line).is_some()
}

/// Whether the bytes `"usage"` occur in `line`.
fn mentions_usage(line: &[u8]) -> bool {
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    USAGE.find(line).is_some()
}

/// Reusable per-thread parser state.
pub struct LineParser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    /// Set when enhanced analysis is on: every valid line's content is
    /// estimated while its tape is at hand.
    estimator: Option<Estimator>,
    /// Content rows of the lines classified since the last [`LineParser::take_content`].
    content: Vec<ContentRow>,
    /// Reused for tool-use JSON.
    scratch: String,
    /// Nanoseconds spent estimating content since the last take.
    estimate_ns: u64,
    /// Strings shared between consecutive rows.
    shared: Interner,
}

impl Default for LineParser {
    fn default() -> Self {
        Self::new()
    }
}

type Field<'t, 'i> = Option<TapeValue<'t, 'i>>;

/// Where a malformed line may hide a complete entry: a writer that died
/// mid-line, followed by a complete line, leaves `partial{"type":…}` on one
/// line (or NUL padding before it). Every `{"` after the start is a candidate,
/// tried from the left; an object nested in the broken line cannot pass for a
/// whole line because the outer object's closing braces follow it.
fn recovery_candidates(line: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memmem::find_iter(line, b"{\"")
        .filter(|&i| i > 0)
        .take(8)
}

impl LineParser {
    /// A parser with empty buffers; they grow to the largest line seen.
    pub fn new() -> Self {
        LineParser {
            buffers: Buffers::new(4096),
            tape: Some(Tape::null()),
            estimator: None,
            content: Vec::new(),
            scratch: String::new(),
            estimate_ns: 0,
            shared: Interner::default(),
        }
    }

    /// Turns content estimation on (`Some`) or off.
    pub fn set_estimator(&mut self, estimator: Option<Estimator>) {
        self.estimator = estimator;
    }

    /// The content rows collected so far (see [`crate::content`]), in line order.
    pub fn take_content(&mut self) -> Vec<ContentRow> {
        std::mem::take(&mut self.content)
    }

    /// Nanoseconds spent estimating content since the last call (resets).
    pub fn take_estimate_ns(&mut self) -> u64 {
        std::mem::take(&mut self.estimate_ns)
    }

    /// Classifies `line` (without its newline). simd-json unescapes strings in
    /// place, so the line's bytes are scratch afterwards. `offset` is the line's
    /// byte offset in its file.
    pub fn classify(&mut self, line: &mut [u8], ctx: &SourceContext, offset: u64) -> Parsed {
        let len = line.len();
        self.classify_impl(line, len, false, ctx, offset)
    }

    /// Like [`LineParser::classify`] for the line `buf[..len]` when at least
    /// [`PADDING`] more bytes follow it in `buf` (typically the next lines):
    /// simd-json then parses in place instead of copying the line first. The
    /// bytes after `len` are read, never written.
    pub fn classify_padded(
        &mut self,
        buf: &mut [u8],
        len: usize,
        ctx: &SourceContext,
        offset: u64,
    ) -> Parsed {
        debug_assert!(buf.len() >= len + PADDING);
        self.classify_impl(buf, len, true, ctx, offset)
    }

    /// After `line` was found malformed: if it ends with a complete entry
    /// (see [`recovery_candidates`]), returns where that entry starts and its
    /// class. The failed parse only touched the bytes before its error, which
    /// lie before the hidden entry.
    pub fn recover(
        &mut self,
        line: &mut [u8],
        ctx: &SourceContext,
        offset: u64,
    ) -> Option<(usize, Parsed)> {
        let candidates: Vec<usize> = recovery_candidates(line).collect();
        for start in candidates {
            match self.classify(&mut line[start..], ctx, offset + start as u64) {
                Parsed::Malformed(_) | Parsed::Blank => continue,
                p => return Some((start, p)),
            }
        }
        None
    }

    fn classify_impl(
        &mut self,
        buf: &mut [u8],
        len: usize,
        padded: bool,
        ctx: &SourceContext,
        offset: u64,
    ) -> Parsed {
        if buf[..len].iter().all(|b| b.is_ascii_whitespace()) {
            return Parsed::Blank;
        }
        // Without content estimation no tape is needed for the common lines:
        // a line without usage only has to be proven valid (the scanner also
        // refuses `\u` escapes, which could spell the key), and a plain
        // assistant entry is read where it lies. Whatever these do not
        // vouch for is parsed below.
        let line = &buf[..len];
        if self.estimator.is_none() {
            if !mentions_usage(line) {
                if crate::validate::is_plain_object(line) {
                    return Parsed::Other;
                }
            } else if let Some(row) = crate::fast_usage::read(line, ctx, offset, &mut self.shared) {
                return Parsed::Usage(Box::new(row));
            }
        }
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let filled = if padded {
            simd_json::fill_tape_padded(buf, len, &mut self.buffers, &mut tape)
        } else {
            simd_json::fill_tape(&mut buf[..len], &mut self.buffers, &mut tape)
        };
        let result = match filled {
            Ok(()) => {
                let parsed = match extract(tape.as_value(), ctx, offset, &mut self.shared) {
                    Ok(Some(row)) => Parsed::Usage(Box::new(row)),
                    Ok(None) => Parsed::Other,
                    Err(kind) => Parsed::Malformed(kind),
                };
                if let (Some(est), false) =
                    (&self.estimator, matches!(parsed, Parsed::Malformed(_)))
                {
                    let started = std::time::Instant::now();
                    let root = tape.as_value();
                    if let Some(row) =
                        content_of(root, ctx, est, &mut self.scratch, || content_hash(root))
                    {
                        self.content.push(row);
                    }
                    self.estimate_ns += started.elapsed().as_nanos() as u64;
                }
                parsed
            }
            Err(e) => Parsed::Malformed(match e.error() {
                ErrorType::InvalidUtf8 => MalformedKind::InvalidUtf8,
                ErrorType::DepthLimitExceeded => MalformedKind::TooDeep,
                _ => MalformedKind::InvalidJson,
            }),
        };
        self.tape = Some(tape.reset());
        result
    }
}

fn is_null(v: &TapeValue<'_, '_>) -> bool {
    v.value_type() == ValueType::Null
}

/// A present, non-null value.
fn present<'t, 'i>(v: Field<'t, 'i>) -> Field<'t, 'i> {
    v.filter(|v| !is_null(v))
}

fn opt_str<'i>(v: Field<'_, 'i>) -> Result<&'i str, MalformedKind> {
    match present(v) {
        None => Ok(""),
        Some(v) => v.into_string().ok_or(MalformedKind::MistypedField),
    }
}

fn tokens(v: Field<'_, '_>, required: bool) -> Result<u64, MalformedKind> {
    match present(v) {
        None if required => Err(MalformedKind::MissingField),
        None => Ok(0),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_TOKENS => Ok(n),
            _ => Err(MalformedKind::BadTokenCount),
        },
    }
}

fn extract(
    root: TapeValue<'_, '_>,
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    if !root.is_object() {
        return Err(MalformedKind::NotObject);
    }
    let line_type = opt_str(root.get("type"))?;

    // Where the assistant message lives: the line itself, or the subagent
    // message a progress line carries.
    let (envelope, message, entry_type) = match present(root.get("message")) {
        Some(m) if present(m.get("usage")).is_some() => (root, m, "assistant"),
        _ => {
            let data = present(root.get("data"));
            let inner = data
                .filter(|_| line_type == "progress")
                .filter(|d| d.get("type").and_then(|t| t.into_string()) == Some("agent_progress"))
                .and_then(|d| present(d.get("message")));
            match inner.and_then(|env| present(env.get("message")).map(|m| (env, m))) {
                Some((env, m)) if present(m.get("usage")).is_some() => (env, m, "agent_progress"),
                _ => {
                    check_other(root)?;
                    return Ok(None);
                }
            }
        }
    };
    let progress = entry_type == "agent_progress";
    let usage = message.get("usage").ok_or(MalformedKind::MissingField)?;
    if !usage.is_object() {
        return Err(MalformedKind::MistypedField);
    }

    let input_tokens = tokens(usage.get("input_tokens"), true)?;
    let output_tokens = tokens(usage.get("output_tokens"), true)?;
    let cache_creation_input_tokens = tokens(usage.get("cache_creation_input_tokens"), false)?;
    let cache_read_input_tokens = tokens(usage.get("cache_read_input_tokens"), false)?;
    let (cache_creation_5m_tokens, cache_creation_1h_tokens) =
        match present(usage.get("cache_creation")) {
            None => (0, 0),
            Some(cc) if cc.is_object() => (
                tokens(cc.get("ephemeral_5m_input_tokens"), false)?,
                tokens(cc.get("ephemeral_1h_input_tokens"), false)?,
            ),
            Some(_) => return Err(MalformedKind::MistypedField),
        };
    let (web_search_requests, web_fetch_requests) = match present(usage.get("server_tool_use")) {
        None => (0, 0),
        Some(st) if st.is_object() => (
            tokens(st.get("web_search_requests"), false)? as u32,
            tokens(st.get("web_fetch_requests"), false)? as u32,
        ),
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let service_tier = opt_str(usage.get("service_tier"))?;

    // A progress line's own timestamp stands in when the carried message has none.
    let ts_field = present(envelope.get("timestamp")).or_else(|| present(root.get("timestamp")));
    let ts_str = match ts_field {
        None => return Err(MalformedKind::MissingField),
        Some(v) => v.into_string().ok_or(MalformedKind::BadTimestamp)?,
    };
    let ts_ms = timestamp_ms(ts_str)?;

    let message_id = opt_str(message.get("id"))?;
    let uuid = opt_str(envelope.get("uuid"))?;
    let request_id = opt_str(envelope.get("requestId"))?;
    let agent_id = if progress {
        let data = root.get("data");
        opt_str(data.and_then(|d| d.get("agentId")))?
    } else {
        opt_str(root.get("agentId"))?
    };
    let is_sidechain = match present(root.get("isSidechain")) {
        None => false,
        Some(v) => v.as_bool().ok_or(MalformedKind::MistypedField)?,
    };
    let entry = Entry {
        entry_type,
        ts_ms,
        message_id: message_id.into(),
        request_id: request_id.into(),
        model: opt_str(message.get("model"))?.into(),
        session_id: opt_str(root.get("sessionId"))?.into(),
        cwd: opt_str(root.get("cwd"))?.into(),
        git_branch: opt_str(root.get("gitBranch"))?.into(),
        cc_version: opt_str(root.get("version"))?.into(),
        agent_id: agent_id.into(),
        service_tier: service_tier.into(),
        is_sidechain,
        input_tokens,
        output_tokens,
        cache_creation_input_tokens,
        cache_creation_5m_tokens,
        cache_creation_1h_tokens,
        cache_read_input_tokens,
        web_search_requests,
        web_fetch_requests,
    };
    let key = dedup::dedup_key(message_id, request_id, uuid, || content_hash(root));
    Ok(Some(entry.into_row(key, ctx, offset, shared)))
}

/// A timestamp string as stored: Unix milliseconds within `DateTime`'s range.
pub(crate) fn timestamp_ms(ts: &str) -> Result<i64, MalformedKind> {
    let ts_ms = parse_rfc3339_ms(ts).ok_or(MalformedKind::BadTimestamp)?;
    if !(0..=u32::MAX as i64 * 1000).contains(&ts_ms) {
        return Err(MalformedKind::BadTimestamp);
    }
    Ok(ts_ms)
}

/// What one usage entry says, checked, before the source file's context is
/// added. Filled from simd-json's tape here, or straight from the line by
/// [`crate::fast_usage`]; both build their rows with [`Entry::into_row`].
pub(crate) struct Entry<'a> {
    /// `assistant` or `agent_progress`.
    pub entry_type: &'static str,
    /// Entry time, Unix milliseconds (see [`timestamp_ms`]).
    pub ts_ms: i64,
    pub message_id: Cow<'a, str>,
    pub request_id: Cow<'a, str>,
    pub model: Cow<'a, str>,
    /// The line's `sessionId` (empty when absent).
    pub session_id: Cow<'a, str>,
    pub cwd: Cow<'a, str>,
    pub git_branch: Cow<'a, str>,
    pub cc_version: Cow<'a, str>,
    /// The entry's `agentId` (empty when absent).
    pub agent_id: Cow<'a, str>,
    pub service_tier: Cow<'a, str>,
    pub is_sidechain: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_creation_5m_tokens: u64,
    pub cache_creation_1h_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub web_search_requests: u32,
    pub web_fetch_requests: u32,
}

impl Entry<'_> {
    /// The row, under dedup `key`, of the line at `offset` in the file `ctx` describes.
    pub(crate) fn into_row(
        self,
        key: String,
        ctx: &SourceContext,
        offset: u64,
        shared: &mut Interner,
    ) -> UsageRow {
        // A progress line sits in the parent's file and says `isSidechain:false`,
        // so the copy of a subagent message it carries beats the subagent's own
        // sidechain line (the rule "non-sidechain over sidechain"; ccusage agrees).
        let total = self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens;
        // A line whose sessionId is not its file's session is a copy.
        let own_file = self.session_id.is_empty() || *self.session_id == *ctx.session_from_path;
        UsageRow {
            key,
            version: dedup::version(self.is_sidechain, total, own_file),
            ts: (self.ts_ms / 1000) as u32,
            ts_ms: self.ts_ms,
            session_id: if self.session_id.is_empty() {
                ctx.session_from_path.clone()
            } else {
                shared.get(Shared::Session, &self.session_id)
            },
            project: ctx.project.clone(),
            is_sidechain: u8::from(self.is_sidechain),
            agent_id: if self.agent_id.is_empty() {
                ctx.agent_from_path.clone()
            } else {
                shared.get(Shared::AgentId, &self.agent_id)
            },
            model: shared.get(Shared::Model, &self.model),
            message_id: self.message_id.into_owned(),
            request_id: self.request_id.into_owned(),
            entry_type: entry_type_name(self.entry_type),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_creation_5m_tokens: self.cache_creation_5m_tokens,
            cache_creation_1h_tokens: self.cache_creation_1h_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            web_search_requests: self.web_search_requests,
            web_fetch_requests: self.web_fetch_requests,
            service_tier: shared.get(Shared::ServiceTier, &self.service_tier),
            cwd: shared.get(Shared::Cwd, &self.cwd),
            git_branch: shared.get(Shared::GitBranch, &self.git_branch),
            cc_version: shared.get(Shared::Version, &self.cc_version),
            source_file: ctx.path.clone(),
            source_offset: offset,
            cost_usd: 0.0,
        }
    }
}

/// The `entry_type` column's value, one shared string per kind.
fn entry_type_name(kind: &'static str) -> std::sync::Arc<str> {
    static ASSISTANT: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| "assistant".into());
    static PROGRESS: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| "agent_progress".into());
    match kind {
        "assistant" => ASSISTANT.clone(),
        "agent_progress" => PROGRESS.clone(),
        other => other.into(),
    }
}

/// Checks the few fields an entry without usage must get right to be "valid".
fn check_other(root: TapeValue<'_, '_>) -> Result<(), MalformedKind> {
    opt_str(root.get("type"))?;
    Ok(())
}

/// A stable hash of an entry's content for the last-resort dedup key (no
/// message id, no uuid). Computed over the tape's strings and numbers, so the
/// same entry hashes the same whatever its whitespace.
fn content_hash(root: TapeValue<'_, '_>) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    hash_value(&mut h, root);
    h.digest128()
}

fn hash_value(h: &mut xxhash_rust::xxh3::Xxh3, v: TapeValue<'_, '_>) {
    if let Some(obj) = v.as_object() {
        h.update(b"{");
        for (k, val) in obj.iter() {
            h.update(k.as_bytes());
            h.update(b":");
            hash_value(h, val);
        }
        h.update(b"}");
    } else if let Some(arr) = v.as_array() {
        h.update(b"[");
        for val in arr.iter() {
            hash_value(h, val);
            h.update(b",");
        }
        h.update(b"]");
    } else if let Some(s) = v.as_str() {
        h.update(b"\"");
        h.update(s.as_bytes());
        h.update(b"\"");
    } else if let Some(n) = v.as_u64() {
        h.update(&n.to_le_bytes());
    } else if let Some(n) = v.as_i64() {
        h.update(&n.to_le_bytes());
    } else if let Some(f) = v.as_f64() {
        h.update(&f.to_bits().to_le_bytes());
    } else if let Some(b) = v.as_bool() {
        h.update(if b { b"t" } else { b"f" });
    } else {
        h.update(b"n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SourceContext {
        SourceContext::from_path(std::path::Path::new("/c/projects/proj/sess-1.jsonl"))
    }

    fn parse(s: &str) -> Parsed {
        LineParser::new().classify(&mut s.as_bytes().to_vec(), &ctx(), 7)
    }

    fn usage(s: &str) -> UsageRow {
        match parse(s) {
            Parsed::Usage(r) => *r,
            other => panic!("expected usage, got {other:?} for {s}"),
        }
    }

    const LINE: &str = r#"{"parentUuid":null,"isSidechain":false,"cwd":"/home/u/p","sessionId":"s-1","version":"1.0.51","gitBranch":"main","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"hi \u00e9"}],"usage":{"input_tokens":4,"cache_creation_input_tokens":100,"cache_read_input_tokens":200,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40},"output_tokens":7,"service_tier":"standard","server_tool_use":{"web_search_requests":2,"web_fetch_requests":1}}},"requestId":"req_1","type":"assistant","uuid":"u-1","timestamp":"2025-07-15T10:00:00.123Z"}"#;

    #[test]
    fn extracts_every_field() {
        let r = usage(LINE);
        assert_eq!(r.key, "msg_1|req_1");
        assert_eq!(&*r.session_id, "s-1");
        assert_eq!(&*r.project, "proj");
        assert_eq!(&*r.model, "claude-sonnet-4-20250514");
        assert_eq!(
            (
                r.input_tokens,
                r.output_tokens,
                r.cache_creation_input_tokens,
                r.cache_read_input_tokens
            ),
            (4, 7, 100, 200)
        );
        assert_eq!(
            (r.cache_creation_5m_tokens, r.cache_creation_1h_tokens),
            (60, 40)
        );
        assert_eq!((r.web_search_requests, r.web_fetch_requests), (2, 1));
        assert_eq!(&*r.service_tier, "standard");
        assert_eq!(
            (&*r.cwd, &*r.git_branch, &*r.cc_version),
            ("/home/u/p", "main", "1.0.51")
        );
        assert_eq!(r.ts_ms, 1_752_573_600_123);
        assert_eq!(r.ts, 1_752_573_600);
        assert_eq!(r.source_offset, 7);
        assert_eq!(r.is_sidechain, 0);
        assert_eq!(&*r.entry_type, "assistant");
        assert_eq!(r.version, dedup::version(false, 311, false));
    }

    #[test]
    fn key_fallbacks() {
        let no_req = LINE.replace(r#""requestId":"req_1","#, "");
        assert_eq!(usage(&no_req).key, "msg_1|");
        let no_id = LINE.replace(r#""id":"msg_1","#, "");
        assert_eq!(usage(&no_id).key, "uuid:u-1");
        let neither = no_id.replace(r#""uuid":"u-1","#, "");
        let k = usage(&neither).key;
        assert!(k.starts_with("hash:"), "{k}");
        // Whitespace does not change the content hash.
        let spaced = neither.replace(",\"", ", \"").replace("\":", "\" : ");
        assert_eq!(usage(&spaced).key, k);
    }

    #[test]
    fn session_falls_back_to_path() {
        let r = usage(&LINE.replace(r#""sessionId":"s-1","#, ""));
        assert_eq!(&*r.session_id, "sess-1");
    }

    #[test]
    fn other_and_blank_lines() {
        assert_eq!(parse(""), Parsed::Blank);
        assert_eq!(parse("   \t"), Parsed::Blank);
        assert_eq!(
            parse(r#"{"type":"user","message":{"role":"user","content":"x"}}"#),
            Parsed::Other
        );
        assert_eq!(
            parse(r#"{"type":"summary","summary":"s","leafUuid":"l"}"#),
            Parsed::Other
        );
        assert_eq!(
            parse(r#"{"type":"assistant","message":{"usage":null}}"#),
            Parsed::Other
        );
    }

    #[test]
    fn agent_progress_is_a_usage_entry_of_the_parent_line() {
        let line = r#"{"type":"progress","sessionId":"s-1","timestamp":"2025-07-15T10:00:01Z","data":{"type":"agent_progress","agentId":"ag1","message":{"type":"assistant","requestId":"req_9","timestamp":"2025-07-15T10:00:00Z","message":{"id":"msg_9","model":"claude-haiku","usage":{"input_tokens":1,"output_tokens":2}}}}}"#;
        let r = usage(line);
        assert_eq!(r.key, "msg_9|req_9");
        assert_eq!(r.is_sidechain, 0);
        assert_eq!(r.version, dedup::version(false, 3, false));
        assert_eq!(&*r.agent_id, "ag1");
        assert_eq!(&*r.entry_type, "agent_progress");
        assert_eq!(r.ts_ms, 1_752_573_600_000);
        // A progress line of another kind is just another entry.
        assert_eq!(
            parse(&line.replace("agent_progress", "bash_progress")),
            Parsed::Other
        );
    }

    #[test]
    fn malformed_kinds() {
        use MalformedKind::*;
        let cases: Vec<(String, MalformedKind)> = vec![
            ("{\"type\":".into(), InvalidJson),
            ("[1,2]".into(), NotObject),
            ("42".into(), NotObject),
            (
                LINE.replace("\"input_tokens\":4", "\"input_tokens\":-4"),
                BadTokenCount,
            ),
            (
                LINE.replace("\"input_tokens\":4", "\"input_tokens\":4.5"),
                BadTokenCount,
            ),
            (
                LINE.replace("\"input_tokens\":4", "\"input_tokens\":\"4\""),
                BadTokenCount,
            ),
            (
                LINE.replace("\"input_tokens\":4", "\"input_tokens\":99999999999999"),
                BadTokenCount,
            ),
            (LINE.replace("\"input_tokens\":4,", ""), MissingField),
            (
                LINE.replace(
                    "\"timestamp\":\"2025-07-15T10:00:00.123Z\"",
                    "\"timestamp\":\"yesterday\"",
                ),
                BadTimestamp,
            ),
            (
                LINE.replace(
                    "\"timestamp\":\"2025-07-15T10:00:00.123Z\"",
                    "\"timestamp\":5",
                ),
                BadTimestamp,
            ),
            (
                LINE.replace(",\"timestamp\":\"2025-07-15T10:00:00.123Z\"", ""),
                MissingField,
            ),
            (
                LINE.replace("\"model\":\"claude-sonnet-4-20250514\"", "\"model\":5"),
                MistypedField,
            ),
            (
                LINE.replace("\"isSidechain\":false", "\"isSidechain\":\"no\""),
                MistypedField,
            ),
            (format!("{}{}", "[".repeat(2000), "]".repeat(2000)), TooDeep),
        ];
        for (line, kind) in cases {
            assert_eq!(parse(&line), Parsed::Malformed(kind), "{line:.80}");
        }
        let mut bad_utf8 = LINE.as_bytes().to_vec();
        let pos = LINE.find("hi ").unwrap();
        bad_utf8[pos] = 0xff;
        assert_eq!(
            LineParser::new().classify(&mut bad_utf8, &ctx(), 0),
            Parsed::Malformed(InvalidUtf8)
        );
    }

    #[test]
    fn padded_parsing_leaves_the_padding_untouched() {
        let mut buf = LINE.as_bytes().to_vec();
        let len = buf.len();
        buf.extend_from_slice(b"\n{\"next\":\"li\\u00e9ne\"}");
        buf.resize(len + PADDING + 30, b' ');
        let after = buf[len..].to_vec();
        let mut p = LineParser::new();
        assert!(matches!(
            p.classify_padded(&mut buf, len, &ctx(), 0),
            Parsed::Usage(_)
        ));
        assert_eq!(&buf[len..], &after[..]);
        assert_eq!(
            p.classify_padded(&mut buf[..8 + PADDING], 8, &ctx(), 0),
            Parsed::Malformed(MalformedKind::InvalidJson)
        );
    }

    #[test]
    fn recovers_an_entry_after_a_cut_line_or_nul_padding() {
        let mut p = LineParser::new();
        let cut = format!("{}{}", &LINE[..60], LINE);
        let mut bytes = cut.clone().into_bytes();
        assert!(matches!(
            p.classify(&mut bytes, &ctx(), 100),
            Parsed::Malformed(_)
        ));
        let mut bytes = cut.into_bytes();
        let _ = p.classify(&mut bytes, &ctx(), 100);
        let (start, parsed) = p.recover(&mut bytes, &ctx(), 100).expect("recovered");
        assert_eq!(start, 60);
        match parsed {
            Parsed::Usage(r) => {
                assert_eq!(r.key, "msg_1|req_1");
                assert_eq!(r.source_offset, 160);
            }
            other => panic!("{other:?}"),
        }
        let mut nul = vec![0u8; 16];
        nul.extend_from_slice(LINE.as_bytes());
        let _ = p.classify(&mut nul.clone(), &ctx(), 0);
        assert_eq!(p.recover(&mut nul, &ctx(), 0).map(|(s, _)| s), Some(16));
        // Nothing to recover in plain garbage or valid nesting.
        assert!(p
            .recover(&mut b"{\"a\":{\"b\":".to_vec(), &ctx(), 0)
            .is_none());
    }

    #[test]
    fn parser_is_reusable_across_lines() {
        let mut p = LineParser::new();
        for _ in 0..3 {
            assert!(matches!(
                p.classify(&mut LINE.as_bytes().to_vec(), &ctx(), 0),
                Parsed::Usage(_)
            ));
            assert_eq!(
                p.classify(&mut b"{oops".to_vec(), &ctx(), 0),
                Parsed::Malformed(MalformedKind::InvalidJson)
            );
        }
    }

    /// The validating scanner takes most lines of a generated corpus, and
    /// every line gets the class simd-json alone would give it.
    #[test]
    fn fast_path_classifies_like_the_full_parser() {
        let (files, _) = crate::corpus::generate(&crate::corpus::Spec {
            seed: 5,
            target_bytes: 3 << 20,
            ..crate::corpus::Spec::default()
        });
        let (mut fast, mut slow) = (LineParser::new(), LineParser::new());
        // The slow parser never takes the fast path: it estimates content
        // (and the rows' content is dropped).
        slow.set_estimator(Some(Estimator::new(
            crate::estimate::EstimatorKind::Heuristic,
        )));
        let (mut lines, mut others, mut vouched) = (0, 0, 0);
        let (mut assistant, mut read_fast) = (0, 0);
        for f in &files {
            for line in &f.lines {
                let line = line.trim_end_matches('\n').as_bytes();
                let a = fast.classify(&mut line.to_vec(), &ctx(), 0);
                let b = slow.classify(&mut line.to_vec(), &ctx(), 0);
                assert_eq!(
                    a,
                    b,
                    "{}",
                    String::from_utf8_lossy(&line[..line.len().min(300)])
                );
                lines += 1;
                if a == Parsed::Other && !mentions_usage(line) {
                    others += 1;
                    vouched += usize::from(crate::validate::is_plain_object(line));
                }
                if let Parsed::Usage(row) = &a {
                    if &*row.entry_type == "assistant" {
                        assistant += 1;
                        read_fast += usize::from(
                            crate::fast_usage::read(line, &ctx(), 0, &mut Interner::default())
                                .as_ref()
                                == Some(&**row),
                        );
                    }
                }
            }
        }
        let _ = slow.take_content();
        assert!(
            lines > 200 && others > 100 && assistant > 100,
            "{lines} lines, {others} without usage, {assistant} assistant entries"
        );
        // The generator writes no `\u` escape, exponent or deep nesting: the
        // scanner vouches for every valid line without usage, and every
        // assistant entry is read without the tape.
        assert_eq!(vouched, others, "lines without usage on the fast path");
        assert_eq!(
            read_fast, assistant,
            "assistant entries read without the tape"
        );
    }
}
