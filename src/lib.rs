//! tokenbridge tails Claude Code JSONL transcripts, counts tokens exactly
//! (deduplicating the streaming lines Claude Code writes per response), and
//! batch-inserts the winning entry per message into ClickHouse.
//!
//! Data flow: [`discovery`] + [`watcher`] → [`reader`] (parse with [`parse`],
//! in parallel) → bounded channel of [`chunk::SinkMsg`] → [`sink`] (dedup with
//! [`dedup`], insert through [`ch`], then advance [`checkpoint`]s).

pub mod app;
pub mod auth;
pub mod ch;
pub mod config;
pub mod content;
pub mod corpus;
pub mod deadletter;
pub mod dedup;
pub mod estimate;
pub mod fast_usage;
pub mod ingest;
pub mod ops;
pub mod parse;
pub mod pipeline;
pub mod price;
pub mod record;
pub mod report;
pub mod scan;
pub mod secret;
pub mod sink;
pub mod summary;
pub mod timestamp;
pub mod validate;
