//! Property tests of the line parser and classifier (they run in CI; the
//! cargo-fuzz target in `fuzz/` explores further): no input panics, no valid
//! line is lost among bad ones, and whitespace does not change a class.

use proptest::prelude::*;
use tokenbridge::format::chunk::parse_lines;
use tokenbridge::format::claude::LineParser;
use tokenbridge::format::{Parsed, PADDING};
use tokenbridge::record::SourceContext;

fn ctx() -> SourceContext {
    tokenbridge::format::claude::paths::context_of(std::path::Path::new("/c/projects/p/s.jsonl"))
}

/// A random, valid usage entry as a JSON value.
fn usage_entry() -> impl Strategy<Value = serde_json::Value> {
    (
        "[a-z0-9_]{1,12}",
        proptest::option::of("[a-z0-9_]{1,12}"),
        0u64..=1_000_000,
        0u64..=1_000_000,
        proptest::option::of(0u64..=1_000_000),
        proptest::option::of(0u64..=1_000_000),
        any::<bool>(),
        "\\PC{0,40}",
    )
        .prop_map(|(id, req, input, output, cc, cr, side, text)| {
            let mut usage = serde_json::json!({"input_tokens": input, "output_tokens": output});
            if let Some(cc) = cc {
                usage["cache_creation_input_tokens"] = cc.into();
            }
            if let Some(cr) = cr {
                usage["cache_read_input_tokens"] = cr.into();
            }
            let mut v = serde_json::json!({
                "type": "assistant", "isSidechain": side, "sessionId": "s", "timestamp": "2025-09-01T10:00:00Z",
                "message": {"id": id, "model": "m", "content": [{"type": "text", "text": text}], "usage": usage}
            });
            if let Some(r) = req {
                v["requestId"] = r.into();
            }
            v
        })
}

fn classify(bytes: &[u8]) -> Parsed {
    LineParser::new().classify(&mut bytes.to_vec(), &ctx(), 0)
}

fn classify_padded(bytes: &[u8]) -> Parsed {
    let mut buf = bytes.to_vec();
    let len = buf.len();
    buf.resize(len + PADDING, b'x');
    LineParser::new().classify_padded(&mut buf, len, &ctx(), 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let a = classify(&bytes);
        let b = classify_padded(&bytes);
        prop_assert_eq!(a, b);
        let mut p = LineParser::new();
        let _ = p.recover(&mut bytes.clone(), &ctx(), 0);
    }

    #[test]
    fn json_shaped_garbage_never_panics(s in "[{}\\[\\]\":,0-9a-z \\\\]{0,300}") {
        let _ = classify(s.as_bytes());
        let _ = classify_padded(s.as_bytes());
    }

    #[test]
    fn valid_entries_keep_their_tokens_and_survive_whitespace(v in usage_entry(), spaces in 1usize..4) {
        let compact = serde_json::to_string(&v).unwrap();
        let Parsed::Usage(row) = classify(compact.as_bytes()) else {
            return Err(TestCaseError::fail(format!("not usage: {compact}")));
        };
        let u = &v["message"]["usage"];
        prop_assert_eq!(row.input_tokens, u["input_tokens"].as_u64().unwrap());
        prop_assert_eq!(row.output_tokens, u["output_tokens"].as_u64().unwrap());
        prop_assert_eq!(row.cache_read_input_tokens, u["cache_read_input_tokens"].as_u64().unwrap_or(0));
        // Pretty-printed onto one line: whitespace between every token.
        let pad = " ".repeat(spaces);
        let spaced = serde_json::to_string_pretty(&v).unwrap().replace('\n', &pad);
        let Parsed::Usage(row2) = classify(spaced.as_bytes()) else {
            return Err(TestCaseError::fail(format!("whitespace changed the class: {spaced}")));
        };
        prop_assert_eq!(&row2.key, &row.key);
        prop_assert_eq!(row2.version, row.version);
        prop_assert_eq!(row2.total_tokens(), row.total_tokens());
    }

    #[test]
    fn no_valid_line_is_lost_among_bad_ones(
        entries in proptest::collection::vec(usage_entry(), 1..20),
        garbage in proptest::collection::vec("[^\\n{]{0,80}", 0..20),
        crlf in any::<bool>(),
    ) {
        let mut text = String::new();
        let nl = if crlf { "\r\n" } else { "\n" };
        for (i, e) in entries.iter().enumerate() {
            if let Some(g) = garbage.get(i) {
                text.push_str(g);
                text.push_str(nl);
            }
            text.push_str(&serde_json::to_string(e).unwrap());
            text.push_str(nl);
        }
        let mut buf = text.into_bytes();
        let end = buf.len();
        buf.resize(end + PADDING, 0);
        let parsed = parse_lines(&mut buf, end, 0, &ctx(), 1 << 20, tokenbridge::format::ParseMode::Full);
        let (rows, counts) = (parsed.rows, parsed.counts);
        prop_assert_eq!(rows.len(), entries.len());
        prop_assert_eq!(counts.usage as usize, entries.len());
        for (row, e) in rows.iter().zip(&entries) {
            prop_assert_eq!(row.input_tokens, e["message"]["usage"]["input_tokens"].as_u64().unwrap());
        }
    }
}
