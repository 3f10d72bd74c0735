//! Classifying one JSONL line: usage entry, other entry, blank, or malformed.
//!
//! Claude Code's format: `<dir>/projects/<project>/<session>.jsonl` (and
//! `<session>/subagents/agent-<id>.jsonl`), appended line by line, each line
//! standing alone (no state runs through a file, so a file's lines can be
//! parsed in parallel).
//!
//! The dispatch, per line: blank → the validating scanner
//! ([`crate::format::json_scan`]) for a line without usage → the fast path
//! ([`fast`]) for a plain assistant entry → simd-json's tape ([`tape`]) for
//! everything else (and every line when content is estimated, [`content`]).
//! The row rules are in [`entry`], the path rules in [`paths`]. Failures are a
//! small `Copy` enum, counted by the caller, never boxed.
//!
//! Validity rules (also in docs/design/counting.md):
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

pub mod content;
pub mod entry;
pub mod fast;
pub mod paths;
pub mod tape;

use simd_json::{Buffers, ErrorType, Tape};

use self::content::{content_of, ContentRow};
use self::tape::{content_hash, extract};
use crate::format::estimate::Estimator;
use crate::format::{MalformedKind, Parsed, PADDING};
use crate::record::{Interner, SourceContext};
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

    /// The content rows collected so far (see [`crate::format::claude::content`]), in line order.
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
                if crate::format::json_scan::is_plain_object(line) {
                    return Parsed::Other;
                }
            } else if let Some(row) = fast::read(line, ctx, offset, &mut self.shared) {
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
                    Ok(Some((row, extras))) if extras.is_empty() => Parsed::Usage(Box::new(row)),
                    Ok(Some((row, extras))) => Parsed::UsageWithExtras(Box::new(row), extras),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UsageRow;

    fn ctx() -> SourceContext {
        crate::format::claude::paths::context_of(std::path::Path::new(
            "/c/projects/proj/sess-1.jsonl",
        ))
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
    fn advisor_calls_are_rows_of_their_own_under_their_model() {
        let line = LINE.replace(
            r#""service_tier":"standard""#,
            r#""service_tier":"standard","output_tokens_details":{"thinking_tokens":3},"iterations":[{"type":"message","input_tokens":4,"output_tokens":7},{"type":"advisor_message","model":"claude-opus-4-6","input_tokens":900,"output_tokens":30,"cache_read_input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0}},{"type":"advisor_message","input_tokens":5,"output_tokens":1},{"type":"compaction","input_tokens":99}]"#,
        );
        let (main, extra) = match parse(&line) {
            Parsed::UsageWithExtras(r, e) => (*r, e),
            other => panic!("expected advisor rows, got {other:?}"),
        };
        assert_eq!(
            (main.key.as_str(), main.input_tokens, main.reasoning_tokens),
            ("msg_1|req_1", 4, 3)
        );
        assert_eq!(extra.len(), 2);
        assert_eq!(extra[0].key, "msg_1|req_1#advisor0");
        assert_eq!(&*extra[0].model, "claude-opus-4-6");
        assert_eq!(&*extra[0].entry_type, "advisor_message");
        assert_eq!(
            (
                extra[0].input_tokens,
                extra[0].output_tokens,
                extra[0].cache_read_input_tokens
            ),
            (900, 30, 10)
        );
        // Ranked as its message is (main chain, own file), by its own total.
        assert_eq!(
            extra[0].version,
            entry::version(false, 940, main.version & 1 == 1)
        );
        // Without a model of its own, the entry's.
        assert_eq!(&*extra[1].model, "claude-sonnet-4-20250514");
        assert_eq!(extra[1].key, "msg_1|req_1#advisor1");
        // A bad advisor count is a bad line, as any other count.
        let bad = line.replace(r#""input_tokens":900"#, r#""input_tokens":-1"#);
        assert_eq!(parse(&bad), Parsed::Malformed(MalformedKind::BadTokenCount));
    }

    #[test]
    fn fast_mode_names_the_model_and_recorded_cost_is_kept() {
        let fast = LINE.replace(
            r#""service_tier":"standard""#,
            r#""service_tier":"standard","speed":"fast""#,
        );
        assert_eq!(&*usage(&fast).model, "claude-sonnet-4-20250514-fast");
        let standard = LINE.replace(
            r#""service_tier":"standard""#,
            r#""service_tier":"standard","speed":"standard""#,
        );
        assert_eq!(&*usage(&standard).model, "claude-sonnet-4-20250514");
        let costed = LINE.replace(
            r#""type":"assistant""#,
            r#""type":"assistant","costUSD":0.0125"#,
        );
        assert_eq!(usage(&costed).recorded_cost_usd, Some(0.0125));
        assert_eq!(usage(LINE).recorded_cost_usd, None);
        let negative = LINE.replace(
            r#""type":"assistant""#,
            r#""type":"assistant","costUSD":-1"#,
        );
        assert_eq!(
            parse(&negative),
            Parsed::Malformed(MalformedKind::MistypedField)
        );
        // Both paths read the same (the fast one leaves costUSD to the tape).
        let mut p = LineParser::new();
        for l in [&fast, &standard, &costed] {
            let mut bytes = l.as_bytes().to_vec();
            let fast_row = fast::read(&bytes, &ctx(), 7, &mut p.shared);
            let tape = LineParser::new().classify(&mut bytes, &ctx(), 7);
            if let Some(r) = fast_row {
                assert_eq!(Parsed::Usage(Box::new(r)), tape);
            }
        }
    }

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
        assert_eq!(r.version, entry::version(false, 311, false));
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
        assert_eq!(r.version, entry::version(false, 3, false));
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
        let (files, _) = crate::testkit::corpus::generate(&crate::testkit::corpus::Spec {
            seed: 5,
            target_bytes: 3 << 20,
            ..crate::testkit::corpus::Spec::default()
        });
        let (mut fast, mut slow) = (LineParser::new(), LineParser::new());
        // The slow parser never takes the fast path: it estimates content
        // (and the rows' content is dropped).
        slow.set_estimator(Some(Estimator::new(
            crate::format::estimate::EstimatorKind::Heuristic,
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
                    vouched += usize::from(crate::format::json_scan::is_plain_object(line));
                }
                if let Parsed::Usage(row) = &a {
                    if &*row.entry_type == "assistant" {
                        assistant += 1;
                        read_fast += usize::from(
                            crate::format::claude::fast::read(
                                line,
                                &ctx(),
                                0,
                                &mut Interner::default(),
                            )
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
