//! One Claude Code usage entry, checked, and the rules that make it a row:
//! its dedup key, its version (which entry of a key wins), its timestamp.
//!
//! Claude Code writes one line per content block of a response, all with the
//! same `message.id` + `requestId`; earlier lines carry a partial
//! `output_tokens`. Of the entries with one key exactly one is kept:
//! non-sidechain over sidechain, then the largest token total, then the entry
//! in its own session's file over a copy in another file, then the first
//! seen. The version encodes the first three; "first seen" holds because only
//! a strictly higher version ever replaces the known one
//! (see [`crate::sink::dedup`]).

use std::borrow::Cow;

use crate::format::MalformedKind;
use crate::record::{Interner, Shared, SourceContext, UsageRow};
use crate::timestamp::parse_rfc3339_ms;

/// Whether a count must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Absent is a `missing_field`.
    Required,
    /// Absent (or null) is 0.
    Optional,
}

/// Largest token count one field of one message may carry. Anything above is
/// treated as corrupt input rather than silently inflating totals.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// A timestamp string as stored: Unix milliseconds within `DateTime`'s range.
pub(crate) fn timestamp_ms(ts: &str) -> Result<i64, MalformedKind> {
    let ts_ms = parse_rfc3339_ms(ts).ok_or(MalformedKind::BadTimestamp)?;
    if !(0..=u32::MAX as i64 * 1000).contains(&ts_ms) {
        return Err(MalformedKind::BadTimestamp);
    }
    Ok(ts_ms)
}

/// `usage.speed`: Opus fast mode is billed at the model's fast rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Speed {
    /// Absent, `standard`, or anything else.
    #[default]
    Standard,
    /// `"fast"`: the row's model is stored as `<model>-fast` (as ccusage
    /// shows it) and priced at the fast rates (see [`crate::price`]).
    Fast,
}

impl Speed {
    /// The speed a `usage.speed` value names.
    pub(crate) fn of(value: &str) -> Speed {
        if value == "fast" {
            Speed::Fast
        } else {
            Speed::Standard
        }
    }
}

/// An advisor call billed with an entry: a `usage.iterations[]` element of
/// type `advisor_message`, with its own model and counts. The entry's
/// top-level usage sums only its `message` iterations, so these come on top.
#[derive(Debug, Clone, Default)]
pub(crate) struct Advisor<'a> {
    /// The advisor's model (the entry's when absent).
    pub model: Cow<'a, str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_creation_5m_tokens: u64,
    pub cache_creation_1h_tokens: u64,
    pub cache_read_input_tokens: u64,
}

/// What one usage entry says, checked, before the source file's context is
/// added. Filled from simd-json's tape ([`super::tape`]) or straight from the
/// line ([`super::fast`]); both build their rows with [`Entry::into_row`].
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
    /// `usage.speed`.
    pub speed: Speed,
    /// `usage.output_tokens_details.thinking_tokens` (inside `output_tokens`).
    pub thinking_tokens: u64,
    /// The line's `costUSD` (older Claude Code versions wrote one).
    pub recorded_cost: Option<f64>,
    /// Advisor calls billed with the entry.
    pub advisors: Vec<Advisor<'a>>,
}

impl Entry<'_> {
    /// The rows, under dedup `key`, of the line at `offset` in the file `ctx`
    /// describes: the entry's, then one per advisor call, keyed
    /// `<key>#advisor<n>` and ranked by the same rules (so the line of a
    /// message that carries the most wins for each).
    pub(crate) fn into_rows(
        mut self,
        key: String,
        ctx: &SourceContext,
        offset: u64,
        shared: &mut Interner,
    ) -> (UsageRow, Vec<UsageRow>) {
        let advisors = std::mem::take(&mut self.advisors);
        let own_file = self.session_id.is_empty() || *self.session_id == *ctx.session_from_path;
        let is_sidechain = self.is_sidechain;
        let base_model = shared.get(Shared::Model, &self.model);
        let row = self.into_row(key, ctx, offset, shared);
        let extra = advisors
            .into_iter()
            .enumerate()
            .map(|(n, a)| {
                let total = a.input_tokens
                    + a.output_tokens
                    + a.cache_creation_input_tokens
                    + a.cache_read_input_tokens;
                UsageRow {
                    key: format!("{}#advisor{n}", row.key),
                    version: version(is_sidechain, total, own_file),
                    model: if a.model.is_empty() {
                        base_model.clone()
                    } else {
                        shared.get(Shared::Model, &a.model)
                    },
                    entry_type: entry_type_name("advisor_message"),
                    input_tokens: a.input_tokens,
                    output_tokens: a.output_tokens,
                    cache_creation_input_tokens: a.cache_creation_input_tokens,
                    cache_creation_5m_tokens: a.cache_creation_5m_tokens,
                    cache_creation_1h_tokens: a.cache_creation_1h_tokens,
                    cache_read_input_tokens: a.cache_read_input_tokens,
                    web_search_requests: 0,
                    web_fetch_requests: 0,
                    reasoning_tokens: 0,
                    recorded_cost_usd: None,
                    ..row.clone()
                }
            })
            .collect();
        (row, extra)
    }

    /// The entry's own row, under dedup `key`.
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
            version: version(self.is_sidechain, total, own_file),
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
            model: match self.speed {
                Speed::Fast if !self.model.is_empty() => shared.get(
                    Shared::Model,
                    &format!("{}{}", self.model, crate::price::FAST_SUFFIX),
                ),
                _ => shared.get(Shared::Model, &self.model),
            },
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
            agent: ctx.agent.label(),
            reasoning_tokens: self.thinking_tokens,
            recorded_cost_usd: self.recorded_cost,
            host: ctx.host.clone(),
            user: ctx.user.clone(),
        }
    }
}

/// The `entry_type` column's value, one shared string per kind.
fn entry_type_name(kind: &'static str) -> std::sync::Arc<str> {
    static ASSISTANT: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| "assistant".into());
    static PROGRESS: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| "agent_progress".into());
    static ADVISOR: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| "advisor_message".into());
    match kind {
        "assistant" => ASSISTANT.clone(),
        "agent_progress" => PROGRESS.clone(),
        "advisor_message" => ADVISOR.clone(),
        other => other.into(),
    }
}

/// The dedup key of an entry, by the first rule that applies:
/// `message.id|requestId`; `message.id|` when there is no request id;
/// `uuid:<uuid>` when there is no message id; else `hash:<hex>` of the entry's
/// content (whitespace-insensitive).
pub fn dedup_key(
    message_id: &str,
    request_id: &str,
    uuid: &str,
    content_hash: impl FnOnce() -> u128,
) -> String {
    if !message_id.is_empty() {
        let mut k = String::with_capacity(message_id.len() + request_id.len() + 1);
        k.push_str(message_id);
        k.push('|');
        k.push_str(request_id);
        k
    } else if !uuid.is_empty() {
        format!("uuid:{uuid}")
    } else {
        format!("hash:{:032x}", content_hash())
    }
}

/// Ranks entries of one key: the top bit says "main chain" (not sidechain),
/// then the token total, then the lowest bit says "in its own session's file"
/// (not a copy a resumed session carries). Higher wins; on a full tie the
/// first seen stays. The last bit makes the choice between an original and
/// its byte copy independent of the order files are read in.
pub fn version(is_sidechain: bool, total_tokens: u64, own_file: bool) -> u64 {
    let main = u64::from(!is_sidechain) << 63;
    main | (total_tokens.min((1 << 62) - 1) << 1) | u64::from(own_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert_eq!(dedup_key("m", "r", "u", || 1), "m|r");
        assert_eq!(dedup_key("m", "", "u", || 1), "m|");
        assert_eq!(dedup_key("", "r", "u", || 1), "uuid:u");
        assert_eq!(
            dedup_key("", "r", "", || 0xab),
            format!("hash:{:032x}", 0xab)
        );
    }

    #[test]
    fn main_chain_beats_any_sidechain_total() {
        assert!(version(false, 1, false) > version(true, 1_000_000, true));
        assert!(version(true, 5, false) > version(true, 4, true));
        assert!(version(false, 5, false) > version(false, 4, true));
        assert!(version(false, 5, true) > version(false, 5, false));
    }
}
