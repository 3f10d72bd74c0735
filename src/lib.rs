//! tokenbridge tails coding agents' transcripts (Claude Code, Codex CLI,
//! Gemini CLI, Copilot CLI, Qwen Code, Kimi, Grok Build, pi, OpenClaw), counts
//! tokens exactly (deduplicating what the agents write more than once), and
//! batch-inserts one row per model call, with its agent, host and user, into
//! ClickHouse.
//!
//! The map, along the data path:
//!
//! - [`ingest`]: the configured folders ([`ingest::discovery`]), file
//!   notifications ([`ingest::watcher`]), file identity
//!   ([`ingest::fingerprint`]), the reader that hands complete lines past each
//!   file's position to the formats ([`ingest::reader`]), the byte budget of
//!   the channel to the sink ([`ingest::budget`]), the checkpoints
//!   ([`ingest::checkpoint`]) and whose rows a file holds
//!   ([`ingest::attribution`]).
//! - [`format`](mod@format): the seam ([`format::agent`]) and each agent's format
//!   ([`format::claude`], parsed in parallel; [`format::codex`] and
//!   [`format::pi`] (pi and OpenClaw), parsed in order with a per-file state,
//!   [`format::qwen`], [`format::grok`], [`format::kimi`], [`format::copilot`],
//!   [`format::gemini`] (whole documents re-read when rewritten),
//!   sharing [`format::json_fields`]), turning lines into [`record::UsageRow`]s.
//! - [`sink`]: dedup ([`sink::dedup`]), batches, inserts through [`ch`], then
//!   checkpoints, naive sums ([`sink::naive`]) and session summaries; lines that
//!   cannot be ingested go to [`sink::deadletter`].
//! - [`ch`]: the ClickHouse client, schema and managed server; [`auth`]: the
//!   upstream token.
//! - [`report`]: reports from ClickHouse or straight from files (weeks and
//!   billing blocks in [`report::blocks`]), priced with [`price`]; the
//!   [`dashboard`] shows them; [`budget`] watches spend limits.
//! - [`ops`]: metrics (exposed by [`ops::exposition`], usage counters in
//!   [`ops::usage`]), health, logs, systemd notify, shutdown, the memory
//!   bound; [`pipeline`] wires it all; [`config`] and [`cli`] are the edges;
//!   [`testkit`] holds the deterministic generators.

pub mod auth;
pub mod budget;
pub mod ch;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod format;
pub mod ingest;
pub mod ops;
pub mod pipeline;
pub mod price;
pub mod record;
pub mod report;
pub mod secret;
pub mod sink;
pub mod testkit;
pub mod timestamp;
