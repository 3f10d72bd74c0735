//! The coding agents tokenbridge reads, and what each one's files look like
//! from the outside: where they live by default, which files under a folder
//! are its own, how a path maps to session and project, and whether files
//! are appended or rewritten whole. Whether lines carry state from line to
//! line is the format's own: its reader's state rides in the checkpoint
//! ([`crate::format::FileState`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use crate::record::SourceContext;

/// A coding agent whose transcripts tokenbridge reads.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Agent {
    /// Anthropic's Claude Code: `~/.claude/projects/**.jsonl`.
    #[default]
    Claude,
    /// OpenAI's Codex CLI: `$CODEX_HOME/{sessions,archived_sessions}/**/rollout-*.jsonl`.
    Codex,
    /// The pi coding agent: `$PI_AGENT_DIR/sessions/<--cwd-->/<time>_<uuid>.jsonl`.
    Pi,
    /// OpenClaw (pi's format): `~/.openclaw/agents/<agent>/sessions/<uuid>.jsonl`
    /// and its reset / deleted copies.
    #[serde(rename = "openclaw")]
    OpenClaw,
    /// Qwen Code: `$QWEN_DATA_DIR/projects/<project>/chats/<session>.jsonl`.
    Qwen,
    /// xAI's Grok Build CLI: `$GROK_HOME/sessions/<cwd>/<session>/updates.jsonl`.
    Grok,
    /// Moonshot's Kimi CLI and Kimi Code: `$KIMI_DATA_DIR/sessions/**/wire.jsonl`.
    Kimi,
    /// GitHub Copilot CLI: `$COPILOT_HOME/session-state/<session>/events.jsonl`.
    Copilot,
    /// Google's Gemini CLI: `$GEMINI_DATA_DIR/tmp/<project>/chats/session-*.json`
    /// (rewritten whole) and `*.jsonl`.
    Gemini,
}

/// How a format's files grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Lines are appended and never rewritten (read from the last position).
    AppendedLines,
    /// The whole file is rewritten in place (re-read whole, diffed by id).
    WholeFile,
}

impl Agent {
    /// Every agent tokenbridge knows.
    pub const ALL: [Agent; 9] = [
        Agent::Claude,
        Agent::Codex,
        Agent::Pi,
        Agent::OpenClaw,
        Agent::Qwen,
        Agent::Grok,
        Agent::Kimi,
        Agent::Copilot,
        Agent::Gemini,
    ];

    /// The agent's name in config, reports and the `agent` column.
    pub fn name(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::Pi => "pi",
            Agent::OpenClaw => "openclaw",
            Agent::Qwen => "qwen",
            Agent::Grok => "grok",
            Agent::Kimi => "kimi",
            Agent::Copilot => "copilot",
            Agent::Gemini => "gemini",
        }
    }

    /// How ccusage names the agent's models in its per-agent reports
    /// (`[pi] claude-sonnet-4-5`); empty for agents it names plainly.
    pub fn model_prefix(self) -> &'static str {
        match self {
            Agent::Claude
            | Agent::Codex
            | Agent::Qwen
            | Agent::Grok
            | Agent::Kimi
            | Agent::Copilot
            | Agent::Gemini => "",
            Agent::Pi => "[pi] ",
            Agent::OpenClaw => "[openclaw] ",
        }
    }

    /// Whether one of the agent's rows sums many requests (Copilot's
    /// snapshots), so per-request price tiers cannot apply to it.
    pub fn sums_requests(self) -> bool {
        self == Agent::Copilot
    }

    /// [`Agent::name`] as one shared string (a column value of every row).
    pub fn label(self) -> Arc<str> {
        static LABELS: LazyLock<[Arc<str>; Agent::ALL.len()]> =
            LazyLock::new(|| Agent::ALL.map(|a| Arc::from(a.name())));
        LABELS[self as usize].clone()
    }

    /// The agent named `name`.
    pub fn from_name(name: &str) -> Option<Agent> {
        Agent::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The folders the agent itself uses when nothing is configured: its
    /// environment override (a comma-separated list, as the agent reads
    /// it), else its home default. `home` is `$HOME`.
    pub fn default_dirs(self, env: impl Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        let (var, defaults): (&str, &[&str]) = match self {
            Agent::Claude => ("CLAUDE_CONFIG_DIR", &[".claude"]),
            Agent::Codex => ("CODEX_HOME", &[".codex"]),
            Agent::Pi => ("PI_AGENT_DIR", &[".pi/agent"]),
            Agent::Qwen => ("QWEN_DATA_DIR", &[".qwen"]),
            Agent::Grok => ("GROK_HOME", &[".grok"]),
            Agent::Kimi => ("KIMI_DATA_DIR", &[".kimi", ".kimi-code"]),
            Agent::Copilot => ("COPILOT_HOME", &[".copilot"]),
            Agent::Gemini => ("GEMINI_DATA_DIR", &[".gemini"]),
            // OpenClaw has been called Clawdbot, Moltbot and Moldbot.
            Agent::OpenClaw => (
                "OPENCLAW_DIR",
                &[".openclaw", ".clawdbot", ".moltbot", ".moldbot"],
            ),
        };
        match env(var).filter(|v| !v.trim().is_empty()) {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => defaults.iter().map(|d| home.join(d)).collect(),
        }
    }

    /// The folders to walk under one configured folder. Codex keeps live
    /// sessions in `sessions/` and archived ones in `archived_sessions/`; a
    /// folder with neither is walked itself.
    pub fn scan_roots(self, dir: &Path) -> Vec<PathBuf> {
        match self {
            Agent::Claude | Agent::OpenClaw => vec![dir.to_path_buf()],
            // pi's and Qwen's folders hold settings and auth next to their
            // sessions.
            Agent::Pi
            | Agent::Qwen
            | Agent::Grok
            | Agent::Kimi
            | Agent::Copilot
            | Agent::Gemini => {
                let sessions = dir.join(match self {
                    Agent::Qwen => "projects",
                    Agent::Copilot => "session-state",
                    Agent::Gemini => "tmp",
                    _ => "sessions",
                });
                vec![if sessions.is_dir() {
                    sessions
                } else {
                    dir.to_path_buf()
                }]
            }
            Agent::Codex => {
                let found: Vec<PathBuf> = ["sessions", "archived_sessions"]
                    .iter()
                    .map(|d| dir.join(d))
                    .filter(|d| d.is_dir())
                    .collect();
                if found.is_empty() {
                    vec![dir.to_path_buf()]
                } else {
                    found
                }
            }
        }
    }

    /// Whether a file found under one of the agent's folders is its own.
    pub fn owns(self, path: &Path) -> bool {
        match self {
            Agent::OpenClaw => crate::format::pi::is_openclaw_session(path),
            Agent::Qwen => crate::format::qwen::is_chat(path),
            Agent::Grok => crate::format::grok::is_updates(path),
            Agent::Kimi => crate::format::kimi::is_wire(path),
            Agent::Copilot => crate::format::copilot::is_events(path),
            Agent::Gemini => crate::format::gemini::is_chat(path),
            _ => path.extension().is_some_and(|e| e == "jsonl"),
        }
    }

    /// How the agent's file at `path` grows.
    pub fn framing(self, path: &Path) -> Framing {
        match self {
            Agent::Gemini if crate::format::gemini::is_whole_file(path) => Framing::WholeFile,
            _ => Framing::AppendedLines,
        }
    }

    /// What the path of a file found under `root` (one of
    /// [`Agent::scan_roots`]) says about its rows.
    pub fn context(self, root: &Path, path: &Path) -> SourceContext {
        match self {
            Agent::Claude => crate::format::claude::paths::context_of(path),
            Agent::Codex => crate::format::codex::context_of(root, path),
            Agent::Pi | Agent::OpenClaw => crate::format::pi::context_of(self, root, path),
            Agent::Qwen => crate::format::qwen::context_of(path),
            Agent::Grok => crate::format::grok::context_of(path),
            Agent::Kimi => crate::format::kimi::context_of(path),
            Agent::Copilot => crate::format::copilot::context_of(path),
            Agent::Gemini => crate::format::gemini::context_of(path),
        }
    }
}

impl std::fmt::Display for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Agent {
    type Err = String;
    fn from_str(s: &str) -> Result<Agent, String> {
        Agent::from_name(s).ok_or_else(|| {
            let known: Vec<&str> = Agent::ALL.iter().map(|a| a.name()).collect();
            format!("unknown agent {s:?}; known: {}", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Agent::ALL {
            assert_eq!(Agent::from_name(a.name()), Some(a));
            assert_eq!(&*a.label(), a.name());
        }
        assert!("gemini2"
            .parse::<Agent>()
            .unwrap_err()
            .contains("claude, codex, pi, openclaw, qwen, grok, kimi, copilot, gemini"));
    }

    #[test]
    fn default_dirs_follow_the_agents_own_variables() {
        let home = Path::new("/home/u");
        let none = |_: &str| None;
        assert_eq!(
            Agent::Codex.default_dirs(none, home),
            vec![PathBuf::from("/home/u/.codex")]
        );
        let set = |v: &str| (v == "CODEX_HOME").then(|| "/a, /b,".to_string());
        assert_eq!(
            Agent::Codex.default_dirs(set, home),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(
            Agent::Claude.default_dirs(none, home),
            vec![PathBuf::from("/home/u/.claude")]
        );
    }

    #[test]
    fn codex_walks_its_session_folders() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            Agent::Codex.scan_roots(d.path()),
            vec![d.path().to_path_buf()]
        );
        std::fs::create_dir_all(d.path().join("sessions")).unwrap();
        std::fs::create_dir_all(d.path().join("archived_sessions")).unwrap();
        assert_eq!(
            Agent::Codex.scan_roots(d.path()),
            vec![
                d.path().join("sessions"),
                d.path().join("archived_sessions")
            ]
        );
    }
}
