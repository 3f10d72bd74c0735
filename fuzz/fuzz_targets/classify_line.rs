//! Fuzz target: the line classifier (plain and in-place padded), the
//! recovery of cut lines, and the chunk parser over arbitrary bytes.
//! Run: `cargo fuzz run classify_line` from the repo root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenbridge::format::claude::LineParser;
use tokenbridge::format::PADDING;
use tokenbridge::record::SourceContext;

fuzz_target!(|data: &[u8]| {
    let ctx = tokenbridge::format::claude::paths::context_of(std::path::Path::new("/f/projects/p/s.jsonl"));
    let mut p = LineParser::new();
    let plain = p.classify(&mut data.to_vec(), &ctx, 0);
    let mut padded = data.to_vec();
    padded.resize(data.len() + PADDING, b' ');
    let in_place = p.classify_padded(&mut padded, data.len(), &ctx, 0);
    assert_eq!(plain, in_place, "padded and plain parsing disagree");
    let _ = p.recover(&mut data.to_vec(), &ctx, 0);
    let mut chunk = data.to_vec();
    let end = tokenbridge::ingest::lines::complete_prefix_len(&chunk);
    chunk.resize(chunk.len() + PADDING, 0);
    let _ = tokenbridge::format::chunk::parse_lines(&mut chunk, end, 0, &ctx, 1 << 16, tokenbridge::format::ParseMode::Enhanced(tokenbridge::format::estimate::Estimator::Heuristic));
});
