//! The per-message usage row as it is stored in ClickHouse, and the context a
//! source file contributes to every row read from it (session, project, agent).

use std::sync::Arc;

/// One usage entry: a row of the `messages` table. Column order and names
/// here are the insert's column list; the DDL lives in [`crate::ch::schema`].
#[derive(
    Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize,
)]
pub struct UsageRow {
    /// Dedup key: `message.id|requestId`, `message.id|`, `uuid:<uuid>` or `hash:<hex>`.
    pub key: String,
    /// ReplacingMergeTree version: main-chain bit, then the token total. The
    /// highest version of a key is the winner.
    pub version: u64,
    /// Entry time, seconds (ClickHouse `DateTime`, UTC).
    pub ts: u32,
    /// Entry time, Unix milliseconds (18.16 has no `DateTime64`).
    pub ts_ms: i64,
    /// The line's `sessionId`, else the session derived from the path.
    pub session_id: Arc<str>,
    /// The folder under `projects/`.
    pub project: Arc<str>,
    /// 1 for subagent (sidechain) entries, including `agent_progress` copies.
    pub is_sidechain: u8,
    /// Subagent id (`agentId`, else from an `agent-<id>.jsonl` file name).
    pub agent_id: Arc<str>,
    /// `message.model`.
    pub model: Arc<str>,
    /// `message.id`.
    pub message_id: String,
    /// `requestId`.
    pub request_id: String,
    /// `assistant` for a plain entry, `agent_progress` for a subagent message
    /// carried by a progress line, `advisor_message` for an advisor call
    /// billed with an entry; Codex: `token_count` (`:fallback_model`).
    pub entry_type: Arc<str>,
    /// `usage.input_tokens`.
    pub input_tokens: u64,
    /// `usage.output_tokens`.
    pub output_tokens: u64,
    /// `usage.cache_creation_input_tokens`.
    pub cache_creation_input_tokens: u64,
    /// `usage.cache_creation.ephemeral_5m_input_tokens`.
    pub cache_creation_5m_tokens: u64,
    /// `usage.cache_creation.ephemeral_1h_input_tokens`.
    pub cache_creation_1h_tokens: u64,
    /// `usage.cache_read_input_tokens`.
    pub cache_read_input_tokens: u64,
    /// `usage.server_tool_use.web_search_requests`.
    pub web_search_requests: u32,
    /// `usage.server_tool_use.web_fetch_requests`.
    pub web_fetch_requests: u32,
    /// `usage.service_tier`.
    pub service_tier: Arc<str>,
    /// `cwd`.
    pub cwd: Arc<str>,
    /// `gitBranch`.
    pub git_branch: Arc<str>,
    /// Claude Code `version`.
    pub cc_version: Arc<str>,
    /// Path of the file the winning line came from.
    pub source_file: Arc<str>,
    /// Byte offset of that line in its file.
    pub source_offset: u64,
    /// Cost in USD at the prices in effect when it was inserted (the sink
    /// fills it in; 0 for an unknown model).
    pub cost_usd: f64,
    /// The coding agent that wrote the entry (`claude`, `codex`, …).
    pub agent: Arc<str>,
    /// Reasoning tokens, already counted in `output_tokens` (informational:
    /// Codex's reasoning, Claude Code's `output_tokens_details.thinking_tokens`).
    pub reasoning_tokens: u64,
    /// The `costUSD` the line recorded (older Claude Code versions), used by
    /// the `auto` and `display` cost modes.
    pub recorded_cost_usd: Option<f64>,
    /// The host the entry was written on (see [`crate::ingest::attribution`]).
    pub host: Arc<str>,
    /// The person it belongs to.
    pub user: Arc<str>,
}

impl UsageRow {
    /// input + output + cache creation + cache read.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
    }

    /// The token counts as prices apply to them.
    pub fn token_use(&self) -> crate::price::TokenUse {
        crate::price::TokenUse {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_creation: self.cache_creation_input_tokens,
            cache_creation_1h: self.cache_creation_1h_tokens,
            cache_read: self.cache_read_input_tokens,
        }
    }

    /// Bytes this row holds in memory: the struct and its own strings' heap
    /// buffers. The shared strings (`Arc<str>`) are held once per file or
    /// per run of equal values, not per row. Bounds the channel and the
    /// batch (see [`crate::ingest::budget`]).
    pub fn mem_bytes(&self) -> usize {
        std::mem::size_of::<UsageRow>()
            + self.key.capacity()
            + self.message_id.capacity()
            + self.request_id.capacity()
    }

    /// Approximate bytes this row occupies in a RowBinary insert.
    pub fn approx_bytes(&self) -> usize {
        128 + self.key.len()
            + self.session_id.len()
            + self.project.len()
            + self.agent_id.len()
            + self.model.len()
            + self.message_id.len()
            + self.request_id.len()
            + self.service_tier.len()
            + self.cwd.len()
            + self.git_branch.len()
            + self.cc_version.len()
            + self.source_file.len()
    }
}

/// Deduplicated token totals of some set of messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Σ input_tokens.
    pub input_tokens: u64,
    /// Σ output_tokens.
    pub output_tokens: u64,
    /// Σ cache_creation_input_tokens.
    pub cache_creation_tokens: u64,
    /// Σ cache_read_input_tokens.
    pub cache_read_tokens: u64,
    /// The four above added.
    pub total_tokens: u64,
    /// Messages (deduplicated).
    pub messages: u64,
}

impl Totals {
    /// Adds one message.
    pub fn add(&mut self, input: u64, output: u64, cache_creation: u64, cache_read: u64) {
        self.input_tokens += input;
        self.output_tokens += output;
        self.cache_creation_tokens += cache_creation;
        self.cache_read_tokens += cache_read;
        self.total_tokens += input + output + cache_creation + cache_read;
        self.messages += 1;
    }
}

impl UsageRow {
    /// A row of `ctx`'s file at `offset` with every count zero and every
    /// descriptive field empty or taken from the file (session and project
    /// from its path, agent, host, user, source): a format's reader sets
    /// what its record says and takes the rest from here.
    pub fn of_source(ctx: &SourceContext, offset: u64, shared: &mut Interner) -> UsageRow {
        let empty = shared.get(Shared::ServiceTier, "");
        UsageRow {
            key: String::new(),
            version: 0,
            ts: 0,
            ts_ms: 0,
            session_id: ctx.session_from_path.clone(),
            project: ctx.project.clone(),
            is_sidechain: 0,
            agent_id: ctx.agent_from_path.clone(),
            model: empty.clone(),
            message_id: String::new(),
            request_id: String::new(),
            entry_type: empty.clone(),
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_creation_5m_tokens: 0,
            cache_creation_1h_tokens: 0,
            cache_read_input_tokens: 0,
            web_search_requests: 0,
            web_fetch_requests: 0,
            service_tier: empty.clone(),
            cwd: shared.get(Shared::Cwd, ""),
            git_branch: shared.get(Shared::GitBranch, ""),
            cc_version: shared.get(Shared::Version, ""),
            source_file: ctx.path.clone(),
            source_offset: offset,
            cost_usd: 0.0,
            agent: ctx.agent.label(),
            reasoning_tokens: 0,
            recorded_cost_usd: None,
            host: ctx.host.clone(),
            user: ctx.user.clone(),
        }
    }
}

/// What a source file's path says about the rows in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceContext {
    /// Whose file it is.
    pub agent: crate::format::agent::Agent,
    /// The path as stored in `source_file`.
    pub path: Arc<str>,
    /// Session id used when a line has no `sessionId`.
    pub session_from_path: Arc<str>,
    /// The folder directly under `projects/` (empty when the path has none).
    pub project: Arc<str>,
    /// Agent id of a `subagents/agent-<id>.jsonl` file (empty otherwise).
    pub agent_from_path: Arc<str>,
    /// A stable name of the file's content, the same for its copies (Codex:
    /// the session's uuid), used in dedup keys.
    pub content_id: Arc<str>,
    /// The file is the original, not an archived copy: on a tie between a
    /// copy and its original, the original's row wins.
    pub primary: bool,
    /// The host the file belongs to (set by the reader, see
    /// [`crate::ingest::attribution`]; empty until then).
    pub host: Arc<str>,
    /// The person it belongs to (likewise).
    pub user: Arc<str>,
}

/// Fields whose values repeat from row to row of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// `sessionId`.
    Session,
    /// `message.model`.
    Model,
    /// `cwd`.
    Cwd,
    /// `gitBranch`.
    GitBranch,
    /// The agent's `version`.
    Version,
    /// `agentId`.
    AgentId,
    /// `usage.service_tier`.
    ServiceTier,
}

/// Shares the strings that repeat from row to row: a row whose `cwd` (or
/// model, branch, …) equals the previous row's gets the same `Arc<str>`
/// instead of an allocation of its own. One per parsing thread; it only
/// remembers the last value per field, which is what consecutive lines of
/// one file repeat.
#[derive(Debug, Default)]
pub struct Interner {
    last: [Option<Arc<str>>; 7],
}

impl Interner {
    /// `value` as a shared string.
    pub fn get(&mut self, field: Shared, value: &str) -> Arc<str> {
        let slot = &mut self.last[field as usize];
        match slot {
            Some(s) if **s == *value => s.clone(),
            _ => {
                let s: Arc<str> = Arc::from(value);
                *slot = Some(s.clone());
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation() {
        let mut i = Interner::default();
        let a = i.get(Shared::Cwd, "/home/me");
        let b = i.get(Shared::Cwd, "/home/me");
        assert!(Arc::ptr_eq(&a, &b));
        // Another field with the same text is its own slot.
        let m = i.get(Shared::Model, "/home/me");
        assert!(!Arc::ptr_eq(&a, &m));
        let c = i.get(Shared::Cwd, "/elsewhere");
        assert_eq!(&*c, "/elsewhere");
        assert!(!Arc::ptr_eq(&a, &i.get(Shared::Cwd, "/home/me")));
    }
}
