//! `scan`: the deduplicated usage of transcript files, computed straight from
//! the files with no ClickHouse: the same parser and the same winner rule as
//! the daemon, so its numbers can be compared with ClickHouse (`verify`) and
//! with ccusage.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rayon::prelude::*;

use crate::format::agent::Framing;
use crate::format::chunk::{parse_chunk, ParsedLines};
use crate::format::claude::content::ContentTotals;
use crate::format::estimate::Estimator;
use crate::format::LineCounts;
use crate::format::{ParseMode, PADDING};
use crate::ingest::attribution::Attributor;
use crate::ingest::discovery::{self, Source};
use crate::record::{Totals, UsageRow};
use crate::sink::dedup::{key_hash, KeyHash};

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanOutput {
    /// The winning entry of every key, in the order keys were first seen.
    pub rows: Vec<UsageRow>,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines by class.
    pub counts: LineCounts,
    /// Files that could not be read.
    pub errors: Vec<(PathBuf, std::io::Error)>,
    /// Per session: what summing every usage line would give (no dedup).
    pub naive: HashMap<String, Totals>,
    /// Per session: content estimates (only with an estimator).
    pub content: HashMap<String, ContentTotals>,
}

/// A whole-file document's rows, or one malformed entry when it does not
/// parse (a scan takes the file as it is now).
fn whole_file(bytes: &[u8], ctx: &crate::record::SourceContext) -> ParsedLines {
    crate::format::chunk::parse_whole_file(bytes, ctx).unwrap_or_else(|| ParsedLines {
        counts: LineCounts {
            malformed: 1,
            ..LineCounts::default()
        },
        ..ParsedLines::default()
    })
}

/// Files read and parsed in parallel at a time (bounds memory).
const FILES_PER_STEP: usize = 64;

/// Scans `sources` (folders or files, each of one agent); with `analysis`,
/// also estimates every entry's content tokens (see
/// [`crate::format::claude::content`]).
pub fn scan(
    sources: &[Source],
    max_line: usize,
    analysis: Option<Estimator>,
    attribution: &Attributor,
) -> ScanOutput {
    let mode = analysis.map_or(ParseMode::Full, ParseMode::Enhanced);
    let mut out = ScanOutput::default();
    // Each file once (a path under two roots is read as the first one's),
    // in path order so that ties resolve the same way every run.
    // With the owner's uid from the listing (attribution needs no second stat).
    let mut files: Vec<(PathBuf, u32, std::sync::Arc<discovery::Root>)> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for root in discovery::roots(sources) {
        let found = discovery::scan_root(&root);
        out.errors.extend(found.errors);
        let root = std::sync::Arc::new(root);
        for f in found.files {
            if seen.insert(f.path.clone()) {
                let uid = std::os::unix::fs::MetadataExt::uid(&f.meta);
                files.push((f.path, uid, root.clone()));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut winners: HashMap<
        KeyHash,
        usize,
        std::hash::BuildHasherDefault<crate::sink::dedup::PassThroughHasher>,
    > = HashMap::default();
    let mut content_seen: HashSet<u128> = HashSet::new();
    for group in files.chunks(FILES_PER_STEP) {
        let parsed: Vec<Result<(u64, ParsedLines), (PathBuf, std::io::Error)>> = group
            .par_iter()
            .map(|(path, uid, root)| {
                let mut buf = std::fs::read(path).map_err(|e| (path.clone(), e))?;
                let len = buf.len();
                let mut ctx = root.agent.context(&root.dir, path);
                (ctx.host, ctx.user) = attribution.of(&root.dir, path, *uid);
                if root.agent.framing(path) == Framing::WholeFile {
                    return Ok((len as u64, whole_file(&buf, &ctx)));
                }
                let end = crate::ingest::lines::complete_prefix_len(&buf);
                buf.resize(len + PADDING, 0);
                Ok((
                    end as u64,
                    parse_chunk(&mut buf, end, 0, &ctx, max_line, mode, None),
                ))
            })
            .collect();
        for p in parsed {
            let (bytes, lines) = match p {
                Ok(v) => v,
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            };
            out.files += 1;
            out.bytes += bytes;
            out.counts.usage += lines.counts.usage;
            out.counts.other += lines.counts.other;
            out.counts.blank += lines.counts.blank;
            out.counts.malformed += lines.counts.malformed;
            for c in lines.content {
                // Same identity as the `content` table's key: session and entry.
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(c.session_id.as_bytes());
                h.update(b"\n");
                h.update(c.key.as_bytes());
                let id = h.digest128();
                if content_seen.insert(id) {
                    out.content.entry(c.session_id.clone()).or_default().add(&c);
                }
            }
            for row in lines.rows {
                let naive = match out.naive.get_mut(&*row.session_id) {
                    Some(t) => t,
                    None => out.naive.entry(row.session_id.to_string()).or_default(),
                };
                naive.add(
                    row.input_tokens,
                    row.output_tokens,
                    row.cache_creation_input_tokens,
                    row.cache_read_input_tokens,
                );
                let h = key_hash(&row.key);
                match winners.get(&h) {
                    Some(&i) if row.version > out.rows[i].version => out.rows[i] = row,
                    Some(_) => {}
                    None => {
                        winners.insert(h, out.rows.len());
                        out.rows.push(row);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_totals() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge");
        let out = scan(
            &[Source::new(crate::format::agent::Agent::Claude, fixtures)],
            1 << 20,
            None,
            &Attributor::default(),
        );
        assert_eq!(out.rows.len(), 9);
        let total: u64 = out.rows.iter().map(|r| r.total_tokens()).sum();
        assert_eq!(total, 1308);
        assert_eq!(out.counts.malformed, 1);
        let f = out.rows.iter().find(|r| r.key == "msg_f|req_f").unwrap();
        assert_eq!((f.output_tokens, f.is_sidechain), (20, 0));
    }
}
