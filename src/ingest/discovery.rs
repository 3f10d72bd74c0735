//! The paths provider: every `*.jsonl` file under the watched folders, with
//! its metadata as the folder listing gives it (`stat`, no open): a scan of
//! unchanged files opens none of them.
//!
//! Symlinked folders and files are followed (operators link transcript
//! folders into a spool); a folder reached twice, through a link cycle or two
//! roots, is walked once. A folder that does not exist is skipped silently (it
//! is picked up by a later scan); any other error is returned per path so the
//! caller can count and log it while the rest of the scan goes on.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use crate::format::agent::Agent;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A folder to read, and whose transcripts it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The agent that writes the files.
    pub agent: Agent,
    /// The folder as configured (an agent may read sub-folders of it, see
    /// [`Agent::scan_roots`]), or a single file.
    pub dir: PathBuf,
}

impl Source {
    /// A source of `agent` at `dir`.
    pub fn new(agent: Agent, dir: impl Into<PathBuf>) -> Source {
        Source {
            agent,
            dir: dir.into(),
        }
    }

    /// `agent:folder`, for logs.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.agent, self.dir.display())
    }
}

/// One folder to walk, and the agent whose files it holds: a [`Source`]
/// expands to one or more (see [`Agent::scan_roots`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The agent that writes the files.
    pub agent: Agent,
    /// The folder (or single file) to walk.
    pub dir: PathBuf,
}

/// The folders to walk for `sources`, in order.
pub fn roots(sources: &[Source]) -> Vec<Root> {
    sources
        .iter()
        .flat_map(|s| {
            s.agent.scan_roots(&s.dir).into_iter().map(|dir| Root {
                agent: s.agent,
                dir,
            })
        })
        .collect()
}

/// Walks one root, keeping the files its agent owns.
pub fn scan_root(root: &Root) -> Scan {
    let mut out = Scan::default();
    let owns = |p: &Path| root.agent.owns(p);
    walk(&root.dir, &owns, &Mutex::new(HashSet::new()), &mut out);
    out
}

/// A transcript file a scan found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Where.
    pub path: PathBuf,
    /// Its metadata when listed (symlinks followed).
    pub meta: std::fs::Metadata,
}

/// The result of one scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Transcript files found.
    pub files: Vec<Found>,
    /// Paths that could not be read, with the reason.
    pub errors: Vec<(PathBuf, std::io::Error)>,
}

/// True for `*.jsonl` files (Claude Code's and most agents' transcripts).
pub fn is_transcript(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// Walks every folder in `roots`, keeping `*.jsonl` files.
pub fn scan(roots: &[PathBuf]) -> Scan {
    let mut out = Scan::default();
    let seen = Mutex::new(HashSet::new());
    for root in roots {
        walk(root, &is_transcript, &seen, &mut out);
    }
    out
}

/// Walks `dir` (symlinks followed, each folder once), keeping the files
/// `keep` accepts.
///
/// Sibling folders are walked in parallel on the rayon pool: a walk is
/// mostly `getdents` and `statx`, and a Claude Code tree has a folder per
/// project and per session with subagents (2,700 folders for 4,500 files in
/// the bench's large corpus), which one thread listed while the other core
/// waited for the first file to read. Files come in the serial walk's
/// order. A folder reached twice (through a link) is still walked once, by
/// whichever branch gets to it first: its files may then be listed under
/// either path, which the reader takes as two names of one file.
fn walk(
    dir: &Path,
    keep: &(dyn Fn(&Path) -> bool + Sync),
    seen: &Mutex<HashSet<(u64, u64)>>,
    out: &mut Scan,
) {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            out.errors.push((dir.to_path_buf(), e));
            return;
        }
    };
    if !meta.is_dir() {
        if meta.is_file() && keep(dir) {
            out.files.push(Found {
                path: dir.to_path_buf(),
                meta,
            });
        }
        return;
    }
    let first_visit = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((meta.dev(), meta.ino()));
    if !first_visit {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push((dir.to_path_buf(), e));
            return;
        }
    };
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            subdirs.push(path);
        } else if ft.is_file() {
            if keep(&path) {
                match entry.metadata() {
                    Ok(meta) => out.files.push(Found { path, meta }),
                    // Deleted between the listing and the look.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => out.errors.push((path, e)),
                }
            }
        } else if ft.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => subdirs.push(path),
                Ok(meta) if meta.is_file() && keep(&path) => out.files.push(Found { path, meta }),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => out.errors.push((path, e)),
            }
        }
    }
    if subdirs.len() < 2 {
        for sub in subdirs {
            walk(&sub, keep, seen, out);
        }
        return;
    }
    let walked: Vec<Scan> = subdirs
        .par_iter()
        .map(|sub| {
            let mut part = Scan::default();
            walk(sub, keep, seen, &mut part);
            part
        })
        .collect();
    for part in walked {
        out.files.extend(part.files);
        out.errors.extend(part.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_and_symlinked_transcripts_once() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let sub = root.join("projects/p/s1/subagents");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(root.join("projects/p/s1.jsonl"), "").unwrap();
        std::fs::write(sub.join("agent-a.jsonl"), "").unwrap();
        std::fs::write(root.join("projects/p/notes.txt"), "").unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("x.jsonl"), "").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
        // A cycle must not loop.
        std::os::unix::fs::symlink(&root, root.join("projects/p/loop")).unwrap();
        let s = scan(&[root.clone(), d.path().join("missing")]);
        let mut names: Vec<String> = s
            .files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["agent-a.jsonl", "s1.jsonl", "x.jsonl"]);
        assert!(s.errors.is_empty());
    }

    /// The serial walk the parallel one must match: depth first, each
    /// folder once, in listing order.
    fn serial(dir: &Path, seen: &mut HashSet<(u64, u64)>, out: &mut Vec<PathBuf>) {
        let Ok(meta) = std::fs::metadata(dir) else {
            return;
        };
        if meta.is_file() {
            if is_transcript(dir) {
                out.push(dir.to_path_buf());
            }
            return;
        }
        if !seen.insert((meta.dev(), meta.ino())) {
            return;
        }
        let mut subdirs = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let m = std::fs::metadata(e.path()).unwrap();
            if m.is_dir() {
                subdirs.push(e.path());
            } else if is_transcript(&e.path()) {
                out.push(e.path());
            }
        }
        for s in subdirs {
            serial(&s, seen, out);
        }
    }

    #[test]
    fn the_parallel_walk_lists_what_a_serial_walk_lists() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("projects");
        for p in 0..12 {
            for s in 0..5 {
                let sub = root.join(format!("p{p}/s{s}/subagents"));
                std::fs::create_dir_all(&sub).unwrap();
                std::fs::write(root.join(format!("p{p}/s{s}.jsonl")), "").unwrap();
                std::fs::write(sub.join("agent-a.jsonl"), "").unwrap();
            }
        }
        let paths =
            |scan: Scan| -> Vec<PathBuf> { scan.files.into_iter().map(|f| f.path).collect() };
        // Without links: the same paths in the same order.
        let mut want = Vec::new();
        serial(&root, &mut HashSet::new(), &mut want);
        assert_eq!(want.len(), 12 * 5 * 2);
        assert_eq!(paths(scan(std::slice::from_ref(&root))), want);
        // Folders reached twice through links across parallel branches, and
        // a cycle back to the root: each file still once, whichever path
        // found it first.
        for p in 0..12 {
            let other = root.join(format!("p{}", (p + 5) % 12));
            std::os::unix::fs::symlink(&other, root.join(format!("p{p}/to-other"))).unwrap();
        }
        std::os::unix::fs::symlink(&root, root.join("p3/s1/loop")).unwrap();
        let key = |p: &PathBuf| {
            let m = std::fs::metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let mut got: Vec<_> = paths(scan(std::slice::from_ref(&root)))
            .iter()
            .map(key)
            .collect();
        got.sort_unstable();
        let mut want: Vec<_> = want.iter().map(key).collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
