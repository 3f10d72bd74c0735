//! Running a format over the complete lines of a buffer: one line after
//! another for a small buffer, in pieces cut at line boundaries and parsed in
//! parallel for a large one (Claude Code's lines stand alone, so any cut
//! works). Results keep file order. Used by the reader, `scan` and the
//! benchmarks.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::format::agent::Agent;
use crate::format::claude::content::ContentRow;
use crate::format::claude::{may_carry_usage, LineParser};
use crate::format::{codex, copilot, gemini, grok, json_scan, kimi, pi, qwen};
use crate::format::{
    BadLine, FileState, LineCounts, LineState, MalformedKind, ParseMode, Parsed, PADDING,
};
use crate::record::{Interner, SourceContext};

/// How much of a malformed line is kept for logs and the dead-letter file.
const BAD_LINE_HEAD: usize = 200;
/// Chunks at least this large are cut into pieces parsed in parallel.
const PARALLEL_BYTES: usize = 1 << 20;
/// Target size of one such piece.
const PIECE_BYTES: usize = 256 << 10;

thread_local! {
    static PARSER: RefCell<Option<LineParser>> = const { RefCell::new(None) };
    static INTERNER: RefCell<Option<Interner>> = const { RefCell::new(None) };
}

/// The parsed lines of a chunk.
#[derive(Debug, Default)]
pub struct ParsedLines {
    /// Usage entries in file order.
    pub rows: Vec<crate::record::UsageRow>,
    /// Malformed lines.
    pub bad: Vec<BadLine>,
    /// Lines by class.
    pub counts: LineCounts,
    /// Line sizes: (bucket start, lines).
    pub line_sizes: Vec<(u64, u64)>,
    /// Content estimates of the entries (enhanced analysis only).
    pub content: Vec<ContentRow>,
    /// CPU time spent parsing, nanoseconds, including `estimate_ns`.
    pub parse_ns: u64,
    /// Of which estimating content (enhanced analysis only).
    pub estimate_ns: u64,
    /// The file's state after these lines (formats whose lines depend on
    /// earlier ones; see [`FileState`]).
    pub state: Option<FileState>,
}

impl ParsedLines {
    /// Appends the lines of the piece that follows.
    pub fn merge(&mut self, other: ParsedLines) {
        if other.state.is_some() {
            self.state = other.state;
        }
        self.rows.extend(other.rows);
        self.bad.extend(other.bad);
        self.content.extend(other.content);
        self.parse_ns += other.parse_ns;
        self.estimate_ns += other.estimate_ns;
        self.counts.add(&other.counts);
        for (lo, n) in other.line_sizes {
            add_size(&mut self.line_sizes, lo, n);
        }
    }
}

/// Parses the complete lines in `buf[..end]`; `base` is the file offset of
/// `buf[0]`. Bytes of `buf` past `end` (at least [`PADDING`] of them when the
/// caller can afford it) let the parser work in place. Large chunks are cut at
/// line boundaries into pieces parsed in parallel; results keep file order.
pub fn parse_lines(
    buf: &mut [u8],
    end: usize,
    base: u64,
    ctx: &SourceContext,
    max_line: usize,
    mode: ParseMode,
) -> ParsedLines {
    if end < PARALLEL_BYTES {
        return parse_piece(buf, end, base, ctx, max_line, mode);
    }
    // Cut points just after a newline, about PIECE_BYTES apart.
    let mut cuts = vec![0usize];
    let mut pos = PIECE_BYTES;
    while pos < end {
        match memchr::memchr(b'\n', &buf[pos..end]) {
            Some(i) if pos + i + 1 < end => {
                cuts.push(pos + i + 1);
                pos = pos + i + 1 + PIECE_BYTES;
            }
            _ => break,
        }
    }
    let mut pieces: Vec<(u64, usize, &mut [u8])> = Vec::with_capacity(cuts.len());
    let mut rest = buf;
    let mut consumed = 0usize;
    for w in cuts.windows(2) {
        let (piece, tail) = rest.split_at_mut(w[1] - w[0]);
        pieces.push((base + consumed as u64, piece.len(), piece));
        consumed += w[1] - w[0];
        rest = tail;
    }
    // The last piece keeps the buffer's tail as its padding.
    pieces.push((base + consumed as u64, end - consumed, rest));
    let parts: Vec<ParsedLines> = pieces
        .into_par_iter()
        .map(|(off, len, piece)| parse_piece(piece, len, off, ctx, max_line, mode))
        .collect();
    let mut out = ParsedLines::default();
    for part in parts {
        out.merge(part);
    }
    out
}

/// Counts `n` lines in the size bucket starting at `lo`. Few distinct buckets
/// occur per chunk, so a short list beats a map.
fn add_size(sizes: &mut Vec<(u64, u64)>, lo: u64, n: u64) {
    match sizes.iter_mut().find(|(l, _)| *l == lo) {
        Some(e) => e.1 += n,
        None => sizes.push((lo, n)),
    }
}

/// The loop every format's lines go through: cut at newlines (a `\r`
/// before one is dropped), sized, checked against `max_line`, classified by
/// `classify(buf, start, end, offset)`, counted, and kept when malformed
/// (their first bytes are taken before `classify`, which may parse in
/// place). `classify` returns the line's class and, for a malformed line
/// that ends with a complete entry, that entry's class.
fn each_line(
    buf: &mut [u8],
    end: usize,
    base: u64,
    max_line: usize,
    out: &mut ParsedLines,
    mut classify: impl FnMut(&mut [u8], usize, usize, u64) -> (Parsed, Option<Parsed>),
) {
    let mut pos = 0usize;
    while pos < end {
        let nl = memchr::memchr(b'\n', &buf[pos..end]).map_or(end, |i| pos + i);
        let mut line_end = nl;
        if line_end > pos && buf[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let len = line_end - pos;
        let offset = base + pos as u64;
        add_size(
            &mut out.line_sizes,
            crate::ops::sizes::bucket(len as u64).0,
            1,
        );
        if len > max_line {
            out.counts.malformed += 1;
            out.bad.push(BadLine {
                offset,
                kind: MalformedKind::TooLong,
                head: head_of(&buf[pos..line_end]),
            });
            pos = nl + 1;
            continue;
        }
        let mut head = [0u8; BAD_LINE_HEAD];
        let n = len.min(BAD_LINE_HEAD);
        head[..n].copy_from_slice(&buf[pos..pos + n]);
        let (parsed, recovered) = classify(buf, pos, line_end, offset);
        if let Parsed::Malformed(kind) = parsed {
            out.bad.push(BadLine {
                offset,
                kind,
                head: String::from_utf8_lossy(&head[..n]).into_owned(),
            });
        }
        for p in [Some(parsed), recovered].into_iter().flatten() {
            match p {
                Parsed::Blank => out.counts.blank += 1,
                Parsed::Other => out.counts.other += 1,
                Parsed::Usage(row) => {
                    out.counts.usage += 1;
                    out.rows.push(*row);
                }
                Parsed::UsageWithExtras(row, extras) => {
                    out.counts.usage += 1;
                    out.rows.push(*row);
                    out.rows.extend(extras);
                }
                Parsed::Malformed(_) => out.counts.malformed += 1,
            }
        }
        pos = nl + 1;
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Parses Claude Code lines of `buf[..end]` one after the other.
fn parse_piece(
    buf: &mut [u8],
    end: usize,
    base: u64,
    ctx: &SourceContext,
    max_line: usize,
    mode: ParseMode,
) -> ParsedLines {
    let cpu_started = crate::ops::metrics::thread_cpu_ns();
    let mut parser = PARSER.with(|p| p.borrow_mut().take()).unwrap_or_default();
    parser.set_estimator(mode.estimator());
    let usage_only = matches!(mode, ParseMode::UsageOnly);
    let mut out = ParsedLines::default();
    // Room for the rows of an append of short lines, so that the vector is
    // not grown four times (each growth of a few KiB also made glibc
    // consolidate its free lists: ~8 % of the reader's CPU under live load).
    // Capped: a piece of a few long lines holds few rows.
    out.rows.reserve((end / 128).min(64));
    each_line(
        buf,
        end,
        base,
        max_line,
        &mut out,
        |buf, pos, line_end, offset| {
            let len = line_end - pos;
            if usage_only && !may_carry_usage(&buf[pos..line_end]) {
                let class = if is_blank(&buf[pos..line_end]) {
                    Parsed::Blank
                } else {
                    Parsed::Other
                };
                return (class, None);
            }
            let parsed = if buf.len() - pos >= len + PADDING {
                parser.classify_padded(&mut buf[pos..], len, ctx, offset)
            } else {
                parser.classify(&mut buf[pos..line_end], ctx, offset)
            };
            // The bad prefix is counted; a complete entry after it is kept.
            let recovered = match parsed {
                Parsed::Malformed(_) => parser
                    .recover(&mut buf[pos..line_end], ctx, offset)
                    .map(|(_, p)| p),
                _ => None,
            };
            (parsed, recovered)
        },
    );
    out.content = parser.take_content();
    out.estimate_ns = parser.take_estimate_ns();
    PARSER.with(|p| *p.borrow_mut() = Some(parser));
    out.parse_ns = crate::ops::metrics::thread_cpu_ns().saturating_sub(cpu_started);
    out
}

/// Parses the lines of `buf[..end]` in order with `read_line` (a format
/// whose lines depend on earlier ones). Lines that `may_matter` rejects are
/// only checked for validity (or not at all in [`ParseMode::UsageOnly`]).
#[allow(clippy::too_many_arguments)]
fn parse_in_order(
    buf: &mut [u8],
    end: usize,
    base: u64,
    max_line: usize,
    mode: ParseMode,
    may_matter: fn(&[u8]) -> bool,
    mut read_line: impl FnMut(&[u8], u64, &mut Interner) -> Parsed,
) -> ParsedLines {
    let cpu_started = crate::ops::metrics::thread_cpu_ns();
    let mut shared = INTERNER.with(|i| i.borrow_mut().take()).unwrap_or_default();
    let validate = !matches!(mode, ParseMode::UsageOnly);
    let mut out = ParsedLines::default();
    each_line(
        buf,
        end,
        base,
        max_line,
        &mut out,
        |buf, pos, line_end, offset| {
            let line = &buf[pos..line_end];
            if is_blank(line) {
                return (Parsed::Blank, None);
            }
            if !may_matter(line) && (!validate || json_scan::is_plain_object(line)) {
                return (Parsed::Other, None);
            }
            (read_line(line, offset, &mut shared), None)
        },
    );
    INTERNER.with(|i| *i.borrow_mut() = Some(shared));
    out.parse_ns = crate::ops::metrics::thread_cpu_ns().saturating_sub(cpu_started);
    out
}

/// A reader of one line with a per-file state: the state, the line, where
/// it came from, its offset, the shared strings.
type StatefulLine<S> = fn(&mut S, &[u8], &SourceContext, u64, &mut Interner) -> Parsed;

/// [`parse_in_order`] for a format whose lines carry a state `S`, resumed
/// from `saved` and returned in the result. `(buf, end, base, max_line,
/// mode)` as [`parse_chunk`]'s.
fn parse_stateful<S: LineState>(
    (buf, end, base, max_line, mode): (&mut [u8], usize, u64, usize, ParseMode),
    ctx: &SourceContext,
    saved: Option<FileState>,
    may_matter: fn(&[u8]) -> bool,
    read: StatefulLine<S>,
) -> ParsedLines {
    let mut st = S::resume(saved);
    let mut out = parse_in_order(buf, end, base, max_line, mode, may_matter, |l, o, sh| {
        read(&mut st, l, ctx, o, sh)
    });
    out.state = Some(st.save());
    out
}

/// Parses the complete lines in `buf[..end]` of a file of `ctx.agent`,
/// continuing from `state` (what the lines before `base` left, for formats
/// whose lines depend on earlier ones). The result carries the state after
/// the last line.
#[allow(clippy::too_many_arguments)]
pub fn parse_chunk(
    buf: &mut [u8],
    end: usize,
    base: u64,
    ctx: &SourceContext,
    max_line: usize,
    mode: ParseMode,
    state: Option<FileState>,
) -> ParsedLines {
    match ctx.agent {
        Agent::Claude => parse_lines(buf, end, base, ctx, max_line, mode),
        Agent::Codex => parse_stateful::<codex::State>(
            (buf, end, base, max_line, mode),
            ctx,
            state,
            codex::may_matter,
            codex::line,
        ),
        Agent::Pi | Agent::OpenClaw => parse_stateful::<pi::State>(
            (buf, end, base, max_line, mode),
            ctx,
            state,
            pi::may_matter,
            pi::line,
        ),
        Agent::Kimi => parse_stateful::<kimi::State>(
            (buf, end, base, max_line, mode),
            ctx,
            state,
            kimi::may_matter,
            kimi::line,
        ),
        Agent::Copilot => parse_stateful::<copilot::State>(
            (buf, end, base, max_line, mode),
            ctx,
            state,
            copilot::may_matter,
            copilot::line,
        ),
        Agent::Gemini => parse_stateful::<gemini::State>(
            (buf, end, base, max_line, mode),
            ctx,
            state,
            gemini::may_matter,
            gemini::line,
        ),
        Agent::Grok => parse_in_order(
            buf,
            end,
            base,
            max_line,
            mode,
            grok::may_matter,
            |l, o, sh| grok::line(l, ctx, o, sh),
        ),
        Agent::Qwen => parse_in_order(
            buf,
            end,
            base,
            max_line,
            mode,
            qwen::may_matter,
            |l, o, sh| qwen::line(l, ctx, o, sh),
        ),
    }
}

fn head_of(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(BAD_LINE_HEAD)]).into_owned()
}

/// Parses a whole document (a file read at once, see
/// [`crate::format::agent::Framing::WholeFile`]). `None` when it is not
/// (yet) a complete document: a file caught while being rewritten.
pub fn parse_whole_file(bytes: &[u8], ctx: &SourceContext) -> Option<ParsedLines> {
    let cpu_started = crate::ops::metrics::thread_cpu_ns();
    let mut shared = INTERNER.with(|i| i.borrow_mut().take()).unwrap_or_default();
    let doc = match ctx.agent {
        Agent::Gemini => gemini::whole_file(bytes, ctx, &mut shared).ok(),
        _ => None,
    };
    INTERNER.with(|i| *i.borrow_mut() = Some(shared));
    let doc = doc?;
    Some(ParsedLines {
        rows: doc.rows,
        bad: doc.bad,
        counts: doc.counts,
        line_sizes: vec![(crate::ops::sizes::bucket(bytes.len() as u64).0, 1)],
        parse_ns: crate::ops::metrics::thread_cpu_ns().saturating_sub(cpu_started),
        ..ParsedLines::default()
    })
}
