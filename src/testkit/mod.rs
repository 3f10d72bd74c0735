//! Deterministic generators of agent transcripts and their truth, for tests
//! and benchmarks: Claude Code projects ([`corpus`]) and Codex CLI homes
//! ([`codex`]).

pub mod codex;
pub mod corpus;
