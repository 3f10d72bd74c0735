//! Source formats: what each coding agent's transcript files look like and
//! how their lines become usage rows. This file holds what every format
//! shares: the class of a line ([`Parsed`]), why a line was rejected
//! ([`MalformedKind`]), how thoroughly lines are read ([`ParseMode`]), the
//! malformed lines kept for logs ([`BadLine`]) and the per-class counts
//! ([`LineCounts`]). [`chunk`] runs a format over the complete lines of a
//! buffer (in parallel where the format allows it); [`json_scan`] is the
//! validating scanner formats use to skip lines cheaply; [`estimate`]
//! estimates content tokens.

pub mod agent;
pub mod chunk;
pub mod claude;
pub mod codex;
pub mod copilot;
pub mod estimate;
pub mod gemini;
pub mod grok;
pub mod json_fields;
pub mod json_scan;
pub mod kimi;
pub mod pi;
pub mod qwen;

use crate::record::UsageRow;

/// Bytes that must follow a line for [`claude::LineParser::classify_padded`].
pub const PADDING: usize = simd_json::INPUT_PADDING;

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
    /// A token count that is negative, fractional, a string, or above the
    /// format's limit ([`json_fields::MAX_TOKENS`] for the line-by-line formats).
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
    /// A usage entry that also carries calls of other models billed with it
    /// (Claude Code's advisor iterations): the entry's row, then theirs.
    UsageWithExtras(Box<UsageRow>, Vec<UsageRow>),
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
    Enhanced(estimate::Estimator),
}

impl ParseMode {
    /// The estimator, in enhanced mode.
    pub fn estimator(self) -> Option<estimate::Estimator> {
        match self {
            ParseMode::Enhanced(e) => Some(e),
            _ => None,
        }
    }
}

/// A malformed line, for logs and the dead-letter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// Why it was rejected.
    pub kind: MalformedKind,
    /// Its first bytes (lossy UTF-8).
    pub head: String,
}

/// Lines of a chunk by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Usage entries.
    pub usage: u64,
    /// Valid entries without usage.
    pub other: u64,
    /// Blank lines.
    pub blank: u64,
    /// Malformed lines.
    pub malformed: u64,
}

impl LineCounts {
    /// Adds another chunk's counts.
    pub fn add(&mut self, other: &LineCounts) {
        self.usage += other.usage;
        self.other += other.other;
        self.blank += other.blank;
        self.malformed += other.malformed;
    }
}

/// What a file has said so far that its next lines depend on, for formats
/// whose lines do not stand alone. Saved in the file's checkpoint with the
/// offset it belongs to; a file read from the start starts from `None`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum FileState {
    /// A Codex rollout's running total, model and fork state (boxed: it
    /// rides in every chunk message of the file).
    Codex(Box<codex::State>),
    /// A pi or OpenClaw session's current model and folder (boxed, as
    /// Codex's).
    Pi(Box<pi::State>),
    /// A Kimi wire log's configured model (looked up once).
    Kimi(Box<kimi::State>),
    /// A Copilot event log's last running total per model.
    Copilot(Box<copilot::State>),
    /// A Gemini JSONL chat's last model and session.
    Gemini(Box<gemini::State>),
    /// A file read whole (Gemini's classic chats): its size and modification
    /// time when last read, so that only a rewrite reads it again.
    WholeFile {
        /// Size in bytes.
        len: u64,
        /// Modification time, ns since the Unix epoch.
        mtime_ns: i64,
    },
}

/// A reader's per-file state, as it rides in [`FileState`].
pub(crate) trait LineState: Default {
    /// The state a chunk starts from: the file's, or a fresh one.
    fn resume(saved: Option<FileState>) -> Self;
    /// The state to save after the chunk.
    fn save(self) -> FileState;
}

/// [`LineState`] for the state of the `FileState` variant `$variant`.
macro_rules! line_state {
    ($($variant:ident => $state:ty),* $(,)?) => {$(
        impl LineState for $state {
            fn resume(saved: Option<FileState>) -> Self {
                match saved {
                    Some(FileState::$variant(s)) => *s,
                    _ => <$state>::default(),
                }
            }
            fn save(self) -> FileState {
                FileState::$variant(Box::new(self))
            }
        }
    )*};
}

line_state! {
    Codex => codex::State,
    Pi => pi::State,
    Kimi => kimi::State,
    Copilot => copilot::State,
    Gemini => gemini::State,
}
