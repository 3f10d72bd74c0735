//! tokenbridge tails Claude Code JSONL transcripts, counts tokens exactly
//! (deduplicating the streaming lines Claude Code writes per response), and
//! batch-inserts the winning entry per message into ClickHouse.
//!
//! Data flow: [`discovery`] + [`watcher`] → [`reader`] (parse with [`parse`],
//! in parallel) → bounded channel of [`chunk::SinkMsg`] → [`sink`] (dedup with
//! [`dedup`], insert through [`ch`], then advance [`checkpoint`]s).

pub mod auth;
pub mod ch;
pub mod cli;
pub mod config;
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
