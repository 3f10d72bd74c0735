//! Reading a usage entry straight from its line, without simd-json's tape.
//!
//! Usage lines are about a third of a transcript's bytes, and an entry needs
//! two dozen of their fields. The validating scanner ([`crate::format::json_scan`])
//! proves the line valid and, through [`Watch`], notes where the values of
//! those fields start; each is then decoded where it lies.
//!
//! Only the plain case is taken: an assistant entry (`message.usage` an
//! object) whose watched fields have the expected types, with no watched key
//! twice, and with a `message.id` or `uuid` for its dedup key. Anything else
//! (progress lines, nulls where an object belongs, fractional or negative
//! counts, a bad timestamp, a recorded `costUSD`, advisor iterations, a line
//! the scanner does not vouch for) returns
//! `None`, and the line goes to simd-json, which classifies it and names the
//! error. So a line's class and row never depend on which path read it.

use std::borrow::Cow;

use super::entry::{dedup_key, timestamp_ms, Entry, Presence, MAX_TOKENS};
use crate::format::json_scan::{scan_watching, Watch};
use crate::record::{Interner, SourceContext, UsageRow};

/// The fields read, and the objects holding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Type,
    Message,
    RequestId,
    Uuid,
    SessionId,
    Cwd,
    GitBranch,
    Version,
    AgentId,
    IsSidechain,
    Timestamp,
    MessageId,
    Model,
    Usage,
    InputTokens,
    OutputTokens,
    CacheCreationInputTokens,
    CacheReadInputTokens,
    CacheCreation,
    ServerToolUse,
    ServiceTier,
    Ephemeral5m,
    Ephemeral1h,
    WebSearchRequests,
    WebFetchRequests,
    Speed,
    OutputTokensDetails,
    ThinkingTokens,
    Iterations,
    CostUsd,
    /// The line's own object (never stored).
    Root,
}

/// Slots in [`Locator::at`]: every field but `Root`.
const FIELDS: usize = Field::Root as usize;

/// `Locator::at` value of a field the line does not have.
const ABSENT: u32 = u32::MAX;

impl Field {
    /// The field named `key` inside the object `self`, if it is read.
    fn child(self, key: &[u8]) -> Option<Field> {
        use Field::*;
        Some(match (self, key) {
            (Root, b"type") => Type,
            (Root, b"message") => Message,
            (Root, b"requestId") => RequestId,
            (Root, b"uuid") => Uuid,
            (Root, b"sessionId") => SessionId,
            (Root, b"cwd") => Cwd,
            (Root, b"gitBranch") => GitBranch,
            (Root, b"version") => Version,
            (Root, b"agentId") => AgentId,
            (Root, b"isSidechain") => IsSidechain,
            (Root, b"timestamp") => Timestamp,
            (Root, b"costUSD") => CostUsd,
            (Message, b"id") => MessageId,
            (Message, b"model") => Model,
            (Message, b"usage") => Usage,
            (Usage, b"input_tokens") => InputTokens,
            (Usage, b"output_tokens") => OutputTokens,
            (Usage, b"cache_creation_input_tokens") => CacheCreationInputTokens,
            (Usage, b"cache_read_input_tokens") => CacheReadInputTokens,
            (Usage, b"cache_creation") => CacheCreation,
            (Usage, b"server_tool_use") => ServerToolUse,
            (Usage, b"service_tier") => ServiceTier,
            (Usage, b"speed") => Speed,
            (Usage, b"output_tokens_details") => OutputTokensDetails,
            (Usage, b"iterations") => Iterations,
            (OutputTokensDetails, b"thinking_tokens") => ThinkingTokens,
            (CacheCreation, b"ephemeral_5m_input_tokens") => Ephemeral5m,
            (CacheCreation, b"ephemeral_1h_input_tokens") => Ephemeral1h,
            (ServerToolUse, b"web_search_requests") => WebSearchRequests,
            (ServerToolUse, b"web_fetch_requests") => WebFetchRequests,
            _ => return None,
        })
    }

    /// Whether fields are read inside this one.
    fn is_object(self) -> bool {
        matches!(
            self,
            Field::Message
                | Field::Usage
                | Field::CacheCreation
                | Field::ServerToolUse
                | Field::OutputTokensDetails
        )
    }
}

/// Deepest object holding a read field: the line (1), `message` (2),
/// `usage` (3), `cache_creation`, `server_tool_use` and
/// `output_tokens_details` (4).
const WATCHED_DEPTHS: usize = 5;

/// Notes where each field's value starts while the scanner walks the line.
struct Locator {
    /// Byte offset of each field's value, [`ABSENT`] when the line has none.
    at: [u32; FIELDS],
    /// The read object open at each depth (`None`: any other container).
    open: [Option<Field>; WATCHED_DEPTHS],
    /// The field the last key named, until its value starts.
    pending: Option<Field>,
}

impl Watch for Locator {
    const REFUSES_USAGE: bool = false;

    #[inline]
    fn key(&mut self, line: &[u8], depth: usize, pos: usize) {
        self.pending = self.open.get(depth).copied().flatten().and_then(|parent| {
            // A key with an escape cannot name a read field (their names
            // have no character a simple escape stands for), so the raw
            // bytes up to the first quote decide.
            let name = &line[pos + 1..];
            let end = memchr::memchr(b'"', name)?;
            parent.child(&name[..end])
        });
    }

    #[inline]
    fn value(&mut self, line: &[u8], depth: usize, pos: usize) -> bool {
        let field = self.pending.take();
        if let Some(f) = field {
            let slot = &mut self.at[f as usize];
            if *slot != ABSENT {
                // Which of two equal keys counts is simd-json's call.
                return false;
            }
            *slot = pos as u32;
        }
        let inner = depth + 1;
        if inner < WATCHED_DEPTHS && matches!(line[pos], b'{' | b'[') {
            self.open[inner] = if depth == 0 {
                Some(Field::Root)
            } else {
                field.filter(|f| line[pos] == b'{' && f.is_object())
            };
        }
        true
    }
}

/// What starts a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Absent,
    Null,
    String,
    Object,
    True,
    False,
    /// Numbers and arrays.
    Other,
}

/// The line and where its fields are.
struct Located<'a> {
    line: &'a [u8],
    at: [u32; FIELDS],
}

impl<'a> Located<'a> {
    fn pos(&self, f: Field) -> Option<usize> {
        let at = self.at[f as usize];
        (at != ABSENT).then_some(at as usize)
    }

    fn kind(&self, f: Field) -> Kind {
        match self.pos(f).map(|p| self.line[p]) {
            None => Kind::Absent,
            Some(b'n') => Kind::Null,
            Some(b'"') => Kind::String,
            Some(b'{') => Kind::Object,
            Some(b't') => Kind::True,
            Some(b'f') => Kind::False,
            Some(_) => Kind::Other,
        }
    }

    /// A string field, empty when absent or null; `None` for another type.
    fn opt_str(&self, f: Field) -> Option<Cow<'a, str>> {
        match self.kind(f) {
            Kind::Absent | Kind::Null => Some(Cow::Borrowed("")),
            Kind::String => string_at(self.line, self.pos(f)? + 1),
            _ => None,
        }
    }

    /// A token count: 0 when absent or null (unless required); `None` when
    /// it is anything but an integer in `0..=MAX_TOKENS`.
    fn count(&self, f: Field, need: Presence) -> Option<u64> {
        let Some(pos) = self.pos(f) else {
            return (need == Presence::Optional).then_some(0);
        };
        let rest = &self.line[pos..];
        if rest[0] == b'n' {
            return (need == Presence::Optional).then_some(0);
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        // The scanner proved the number well formed and at most 18 bytes,
        // so plain digits fit a u64; a sign or fraction goes to simd-json.
        if digits == 0 || rest.get(digits) == Some(&b'.') {
            return None;
        }
        let n = rest[..digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        (n <= MAX_TOKENS).then_some(n)
    }

    /// Two counts of an optional object (`cache_creation`, `server_tool_use`).
    fn pair(&self, object: Field, a: Field, b: Field) -> Option<(u64, u64)> {
        match self.kind(object) {
            Kind::Absent | Kind::Null => Some((0, 0)),
            Kind::Object => Some((
                self.count(a, Presence::Optional)?,
                self.count(b, Presence::Optional)?,
            )),
            _ => None,
        }
    }
}

/// The string whose body starts at `start`, unescaped. The scanner proved
/// it terminated, valid UTF-8, and free of `\u` escapes.
fn string_at(line: &[u8], start: usize) -> Option<Cow<'_, str>> {
    let body = &line[start..];
    let mut stop = memchr::memchr2(b'"', b'\\', body)?;
    if body[stop] == b'"' {
        return std::str::from_utf8(&body[..stop]).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(stop + 16);
    let mut i = 0;
    loop {
        out.extend_from_slice(&body[i..stop]);
        if body[stop] == b'"' {
            return String::from_utf8(out).ok().map(Cow::Owned);
        }
        out.push(match *body.get(stop + 1)? {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            c @ (b'"' | b'\\' | b'/') => c,
            _ => return None,
        });
        i = stop + 2;
        stop = i + memchr::memchr2(b'"', b'\\', &body[i..])?;
    }
}

/// The usage row of `line` (the line at `offset` in the file `ctx`
/// describes) when it is a plain assistant entry; `None` sends the line to
/// the full parser.
pub fn read(
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Option<UsageRow> {
    if line.len() >= ABSENT as usize {
        return None;
    }
    let locator = Locator {
        at: [ABSENT; FIELDS],
        open: [None; WATCHED_DEPTHS],
        pending: None,
    };
    let v = Located {
        line,
        at: scan_watching(line, locator)?.at,
    };
    use Field::*;
    if v.kind(Message) != Kind::Object || v.kind(Usage) != Kind::Object {
        return None;
    }
    // `type` is not used by an assistant entry, but must be a string.
    v.opt_str(Type)?;
    let (cache_creation_5m_tokens, cache_creation_1h_tokens) =
        v.pair(CacheCreation, Ephemeral5m, Ephemeral1h)?;
    let (web_search_requests, web_fetch_requests) =
        v.pair(ServerToolUse, WebSearchRequests, WebFetchRequests)?;
    let ts_ms = match v.kind(Timestamp) {
        Kind::String => timestamp_ms(&v.opt_str(Timestamp)?).ok()?,
        _ => return None,
    };
    let is_sidechain = match v.kind(IsSidechain) {
        Kind::Absent | Kind::Null | Kind::False => false,
        Kind::True => true,
        _ => return None,
    };
    // A recorded cost (a float) and advisor calls (an array) are rare; the
    // tape reads them.
    if !matches!(v.kind(CostUsd), Kind::Absent | Kind::Null) {
        return None;
    }
    if v.pos(Iterations).is_some() && memchr::memmem::find(line, b"\"advisor_message\"").is_some() {
        return None;
    }
    let speed = match v.kind(Speed) {
        Kind::Absent | Kind::Null => super::entry::Speed::Standard,
        Kind::String => super::entry::Speed::of(&v.opt_str(Speed)?),
        _ => return None,
    };
    let thinking_tokens = match v.kind(OutputTokensDetails) {
        Kind::Absent | Kind::Null => 0,
        Kind::Object => v.count(ThinkingTokens, Presence::Optional)?,
        _ => return None,
    };
    let message_id = v.opt_str(MessageId)?;
    let request_id = v.opt_str(RequestId)?;
    let uuid = v.opt_str(Uuid)?;
    if message_id.is_empty() && uuid.is_empty() {
        // The key would be a hash of the parsed content.
        return None;
    }
    let key = dedup_key(&message_id, &request_id, &uuid, || {
        unreachable!("a message id or uuid is present")
    });
    let entry = Entry {
        entry_type: "assistant",
        ts_ms,
        model: v.opt_str(Model)?,
        session_id: v.opt_str(SessionId)?,
        cwd: v.opt_str(Cwd)?,
        git_branch: v.opt_str(GitBranch)?,
        cc_version: v.opt_str(Version)?,
        agent_id: v.opt_str(AgentId)?,
        service_tier: v.opt_str(ServiceTier)?,
        is_sidechain,
        input_tokens: v.count(InputTokens, Presence::Required)?,
        output_tokens: v.count(OutputTokens, Presence::Required)?,
        cache_creation_input_tokens: v.count(CacheCreationInputTokens, Presence::Optional)?,
        cache_creation_5m_tokens,
        cache_creation_1h_tokens,
        cache_read_input_tokens: v.count(CacheReadInputTokens, Presence::Optional)?,
        web_search_requests: web_search_requests as u32,
        web_fetch_requests: web_fetch_requests as u32,
        speed,
        thinking_tokens,
        recorded_cost: None,
        advisors: Vec::new(),
        message_id,
        request_id,
    };
    Some(entry.into_row(key, ctx, offset, shared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::claude::LineParser;
    use crate::format::Parsed;
    use proptest::prelude::*;

    fn ctx() -> SourceContext {
        crate::format::claude::paths::context_of(std::path::Path::new(
            "/c/projects/proj/sess-1.jsonl",
        ))
    }

    /// What simd-json's tape says about `line` (content estimation on keeps
    /// the parser off every shortcut).
    fn tape_class(line: &[u8]) -> Parsed {
        let mut p = LineParser::new();
        p.set_estimator(Some(crate::format::estimate::Estimator::new(
            crate::format::estimate::EstimatorKind::Heuristic,
        )));
        p.classify(&mut line.to_vec(), &ctx(), 7)
    }

    /// A usage line with every field read, `fields` spliced in at the top.
    fn line(fields: &str, usage: &str) -> String {
        format!(
            r#"{{{fields}"cwd":"/home/u/p","message":{{"id":"msg_1","model":"claude-opus-4-1","content":[{{"type":"text","text":"usage \"quoted\"\n\ttab"}}],"usage":{{"input_tokens":4,"cache_creation_input_tokens":100,"cache_read_input_tokens":200,"cache_creation":{{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40}},"output_tokens":7,"service_tier":"standard","server_tool_use":{{"web_search_requests":2,"web_fetch_requests":1}}{usage}}}}},"requestId":"req_1","type":"assistant","uuid":"u-1","timestamp":"2025-07-15T10:00:00.123Z","version":"2.0.1","gitBranch":"main","sessionId":"s-1"}}"#
        )
    }

    #[test]
    fn reads_what_the_tape_reads() {
        for l in [
            line("", ""),
            line(r#""isSidechain":true,"agentId":"a7","#, ""),
            line(r#""isSidechain":null,"agentId":null,"#, r#","extra":{"usage":[1,{"a":null}]}"#),
            line(r#""cwd2":"C:\\Users\\me\/x","#, ""),
            r#"{"message":{"id":null,"usage":{"input_tokens":0,"output_tokens":0,"cache_creation":null,"server_tool_use":null,"service_tier":null}},"uuid":"u-9","timestamp":"2025-07-15T10:00:00Z"}"#.to_string(),
            r#" { "message" : { "usage" : { "output_tokens" : 3 , "input_tokens" : 1000000000 } , "id" : "m\"q\\b" } , "cwd" : "C:\\dir\ttab" , "timestamp" : "2025-07-15T10:00:00+02:00" } "#.to_string(),
            "{\"message\":{\"id\":\"m-é中😀\",\"model\":\"modèle\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2}},\"timestamp\":\"2025-07-15T10:00:00Z\",\"gitBranch\":\"féature/ü\"}".to_string(),
        ] {
            let fast = read(l.as_bytes(), &ctx(), 7, &mut Interner::default()).unwrap_or_else(|| panic!("not read: {l}"));
            assert_eq!(Parsed::Usage(Box::new(fast)), tape_class(l.as_bytes()), "{l}");
        }
        let r = read(line("", "").as_bytes(), &ctx(), 7, &mut Interner::default()).unwrap();
        assert_eq!(
            (
                r.key.as_str(),
                r.input_tokens,
                r.cache_creation_1h_tokens,
                r.web_fetch_requests
            ),
            ("msg_1|req_1", 4, 40, 1)
        );
        let r = read(
            line(r#""cwd2":"x","#, "")
                .replace(r#""cwd":"/home/u/p""#, r#""cwd":"C:\\U\/\"x\"""#)
                .as_bytes(),
            &ctx(),
            7,
            &mut Interner::default(),
        )
        .unwrap();
        assert_eq!(&*r.cwd, r#"C:\U/"x""#);
    }

    #[test]
    fn leaves_the_unusual_to_simd_json() {
        let base = line("", "");
        let edits: &[(&str, &str)] = &[
            // Duplicate keys: which one counts is simd-json's call.
            (
                r#""type":"assistant""#,
                r#""type":"assistant","uuid":"u-2""#,
            ),
            (
                r#""output_tokens":7"#,
                r#""output_tokens":7,"output_tokens":8"#,
            ),
            // Counts that are not plain integers in range.
            (r#""output_tokens":7"#, r#""output_tokens":7.0"#),
            (r#""output_tokens":7"#, r#""output_tokens":-7"#),
            (r#""output_tokens":7"#, r#""output_tokens":"7""#),
            (r#""output_tokens":7"#, r#""output_tokens":1000000001"#),
            (r#""output_tokens":7"#, r#""output_tokens":null"#),
            (r#""output_tokens":7,"#, ""),
            (r#""web_fetch_requests":1"#, r#""web_fetch_requests":true"#),
            (r#""cache_creation":{"#, r#""cache_creation":[],"x":{"#),
            // Mistyped strings and flags.
            (r#""model":"claude-opus-4-1""#, r#""model":5"#),
            (r#""type":"assistant""#, r#""type":["assistant"]"#),
            (r#""sessionId":"s-1""#, r#""sessionId":{}"#),
            (
                r#""type":"assistant""#,
                r#""type":"assistant","isSidechain":"yes""#,
            ),
            (
                r#""type":"assistant""#,
                r#""type":"assistant","isSidechain":0"#,
            ),
            // Timestamps.
            (
                r#""timestamp":"2025-07-15T10:00:00.123Z""#,
                r#""timestamp":null"#,
            ),
            (
                r#""timestamp":"2025-07-15T10:00:00.123Z""#,
                r#""timestamp":"yesterday""#,
            ),
            (
                r#""timestamp":"2025-07-15T10:00:00.123Z""#,
                r#""timestamp":1752573600"#,
            ),
            (
                r#""timestamp":"2025-07-15T10:00:00.123Z""#,
                r#""timestamp":"1969-12-31T23:59:59Z""#,
            ),
            // Not an assistant entry with a usage object.
            (r#""usage":{"#, r#""usage":null,"u":{"#),
            (r#""message":{"#, r#""message":null,"m":{"#),
            // No message id and no uuid: the key hashes the content.
            (r#""id":"msg_1","#, ""),
            // What the scanner does not vouch for.
            (r#""text":"usage"#, r#""text":"\u00e9 usage"#),
            (r#""text":"usage"#, r#""text":"usage""#),
            (r#""input_tokens":4"#, r#""input_tokens":4e0"#),
        ];
        for (from, to) in edits {
            let mut l = base.replacen(from, to, 1);
            if *from == r#""id":"msg_1","# {
                l = l.replacen(r#""uuid":"u-1","#, "", 1);
            }
            assert_ne!(l, base, "edit {from} did not apply");
            assert!(
                read(l.as_bytes(), &ctx(), 7, &mut Interner::default()).is_none(),
                "{l}"
            );
        }
        let progress = r#"{"type":"progress","data":{"type":"agent_progress","message":{"requestId":"r","message":{"id":"m","usage":{"input_tokens":1,"output_tokens":2}}}},"timestamp":"2025-07-15T10:00:00Z"}"#;
        assert!(read(progress.as_bytes(), &ctx(), 0, &mut Interner::default()).is_none());
        assert!(matches!(tape_class(progress.as_bytes()), Parsed::Usage(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// A usage line with a few bytes deleted, replaced or inserted: when
        /// the fast path reads it, its row is the one the tape gives.
        #[test]
        fn never_disagrees_with_the_tape(
            sidechain in any::<bool>(),
            tokens in proptest::collection::vec(0u64..2_000_000_000, 4),
            text in "[ -~\t\n\"\\\\é中]{0,40}",
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(&b"{}[],:\"\\ 0123-.enul\tx"[..])), 0..4),
        ) {
            let head = format!(r#""isSidechain":{sidechain},"note":{},"#, serde_json::to_string(&text).unwrap());
            let usage = format!(r#","input_tokens":{},"output_tokens":{},"cache_read_input_tokens":{},"cache_creation_input_tokens":{}"#, tokens[0], tokens[1], tokens[2], tokens[3]);
            // Later duplicates of the counts: only the tape may decide.
            let mut l = line(&head, "").replace(r#""input_tokens":4,"#, "").replace(r#","output_tokens":7"#, "").replace(r#""cache_read_input_tokens":200,"#, "").replace(r#""cache_creation_input_tokens":100,"#, "");
            l = l.replacen(r#""service_tier":"standard""#, &format!(r#""service_tier":"standard"{usage}"#), 1);
            let original = l.clone().into_bytes();
            let l_len = original.len();
            let mut bytes = l.into_bytes();
            for (at, op, byte) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => { bytes.remove(i); }
                    1 if i < bytes.len() => bytes[i] = byte,
                    _ => bytes.insert(i, byte),
                }
            }
            let edited = bytes.len() != l_len || bytes != original;
            let in_range = tokens.iter().all(|&t| t <= MAX_TOKENS);
            let fast = read(&bytes, &ctx(), 7, &mut Interner::default());
            // Unedited, the fast path takes it: the comparison below is not vacuous.
            prop_assert!(edited || !in_range || fast.is_some());
            if let Some(row) = fast {
                prop_assert_eq!(Parsed::Usage(Box::new(row)), tape_class(&bytes), "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
