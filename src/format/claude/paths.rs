//! Where Claude Code keeps a session, and what its path says about the rows
//! in it: `…/projects/<project>/<session>.jsonl`, or
//! `…/projects/<project>/<session>/subagents/agent-<id>.jsonl` for a
//! subagent's messages.

use std::path::Path;
use std::sync::Arc;

use crate::record::SourceContext;

/// Derives the context from a transcript path (see the module doc).
pub fn context_of(path: &Path) -> SourceContext {
    let comps: Vec<&str> = path
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let project = comps
        .iter()
        .rposition(|c| *c == "projects")
        .and_then(|i| comps.get(i + 1))
        .filter(|_| comps.len() >= 3)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let n = comps.len();
    let in_subagents = n >= 3 && comps[n - 2] == "subagents";
    let (session, agent) = if in_subagents {
        let agent = stem.strip_prefix("agent-").unwrap_or(&stem).to_string();
        (comps[n - 3].to_string(), agent)
    } else {
        (stem, String::new())
    };
    // A session file directly in `projects/` has no project folder.
    let project = if project.ends_with(".jsonl") {
        String::new()
    } else {
        project
    };
    SourceContext {
        agent: crate::format::agent::Agent::Claude,
        content_id: Arc::from(""),
        primary: true,
        host: Arc::from(""),
        user: Arc::from(""),
        path: path.to_string_lossy().into(),
        session_from_path: session.into(),
        project: project.into(),
        agent_from_path: agent.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_of_main_and_subagent_files() {
        let c = context_of(Path::new("/h/.claude/projects/-home-me-app/abc-123.jsonl"));
        assert_eq!(&*c.project, "-home-me-app");
        assert_eq!(&*c.session_from_path, "abc-123");
        assert_eq!(&*c.agent_from_path, "");
        let c = context_of(Path::new(
            "/h/.claude/projects/-home-me-app/abc-123/subagents/agent-a9f.jsonl",
        ));
        assert_eq!(&*c.project, "-home-me-app");
        assert_eq!(&*c.session_from_path, "abc-123");
        assert_eq!(&*c.agent_from_path, "a9f");
        let c = context_of(Path::new("/spool/loose.jsonl"));
        assert_eq!(&*c.project, "");
        assert_eq!(&*c.session_from_path, "loose");
        let c = context_of(Path::new("/x/projects/s.jsonl"));
        assert_eq!(&*c.project, "");
    }
}
