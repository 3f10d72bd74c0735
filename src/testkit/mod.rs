//! Deterministic generators of agent transcripts and their truth, for tests
//! and benchmarks: Claude Code projects ([`corpus`]), Codex CLI homes
//! ([`codex`]) and the other agents' homes ([`agents`]).

pub mod agents;
pub mod codex;
pub mod corpus;
