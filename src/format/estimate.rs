//! Estimating how many tokens a piece of text is: a fast heuristic by
//! default, or an exact o200k_base BPE count.
//!
//! Claude's own tokenizer is not public, so both are estimates of what the
//! model saw; o200k_base is the closest widely used public vocabulary and is
//! embedded in the `tiktoken-rs` crate (no download). The heuristic exists
//! because exact BPE is one to two orders of magnitude slower; its error
//! against o200k_base is measured by `cargo bench --bench throughput` and
//! quoted in docs/guide/reports.md.

use std::fmt;

/// Which estimator `[analysis] estimator` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimatorKind {
    /// [`heuristic`]: byte classes, no vocabulary.
    Heuristic,
    /// Exact o200k_base BPE (tiktoken-rs, vocabulary embedded).
    O200k,
}

impl fmt::Display for EstimatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EstimatorKind::Heuristic => "heuristic",
            EstimatorKind::O200k => "o200k",
        })
    }
}

impl std::str::FromStr for EstimatorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "heuristic" => Ok(EstimatorKind::Heuristic),
            "o200k" => Ok(EstimatorKind::O200k),
            other => Err(format!(
                "unknown estimator {other:?} (expected \"heuristic\" or \"o200k\")"
            )),
        }
    }
}

/// A ready estimator; cheap to copy into every parser.
#[derive(Clone, Copy)]
pub enum Estimator {
    /// See [`heuristic`].
    Heuristic,
    /// The o200k_base vocabulary, loaded once per process.
    O200k(&'static tiktoken_rs::CoreBPE),
}

impl fmt::Debug for Estimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Estimator::Heuristic => "Estimator::Heuristic",
            Estimator::O200k(_) => "Estimator::O200k",
        })
    }
}

impl Estimator {
    /// The estimator for `kind`. The first o200k use parses the embedded
    /// vocabulary (about a second), so callers make it before the hot path.
    pub fn new(kind: EstimatorKind) -> Estimator {
        match kind {
            EstimatorKind::Heuristic => Estimator::Heuristic,
            EstimatorKind::O200k => Estimator::O200k(tiktoken_rs::o200k_base_singleton()),
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> EstimatorKind {
        match self {
            Estimator::Heuristic => EstimatorKind::Heuristic,
            Estimator::O200k(_) => EstimatorKind::O200k,
        }
    }

    /// Estimated tokens of `text`.
    pub fn count(&self, text: &str) -> u64 {
        match self {
            Estimator::Heuristic => heuristic(text.as_bytes()),
            Estimator::O200k(bpe) => bpe.count_ordinary(text) as u64,
        }
    }
}

/// Byte class for the heuristic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Space,
    Newline,
    Punct,
    /// First byte of a multi-byte UTF-8 character.
    Wide,
    /// Continuation byte of a multi-byte character.
    Cont,
}

const fn class_of(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'_' => Class::Letter,
        b'0'..=b'9' => Class::Digit,
        b' ' | b'\t' => Class::Space,
        b'\n' | b'\r' => Class::Newline,
        0x80..=0xBF => Class::Cont,
        0xC0..=0xFF => Class::Wide,
        _ => Class::Punct,
    }
}

static CLASSES: [Class; 256] = {
    let mut t = [Class::Punct; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

/// Letters per token in a word: o200k_base holds most English words and
/// common identifier parts whole; only long runs split.
const LETTERS_PER_TOKEN: usize = 10;
/// Digits per token: o200k_base splits numbers into groups of up to 3.
const DIGITS_PER_TOKEN: usize = 3;

/// The heuristic, over UTF-8 bytes, in one pass (constants calibrated on
/// English prose and Rust source against o200k_base, which it over-counts by
/// 0–10%; `cargo run --release --example estimator_error -- FILE...` measures
/// it on any text):
/// - a run of ASCII letters (and `_`) is `ceil(len / 10)` tokens, and a
///   single space before it is part of the same token;
/// - a run of digits is `ceil(len / 3)` (same rule for the space);
/// - a run of punctuation is `ceil(len / 3)`;
/// - a line break run, with the indentation after it, is one token; any
///   other run of spaces and tabs is one token;
/// - every non-ASCII character is one token (CJK text is about one token per
///   character; accented Latin is over-counted).
pub fn heuristic(bytes: &[u8]) -> u64 {
    let mut tokens = 0usize;
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        let c = CLASSES[bytes[i] as usize];
        let start = i;
        i += 1;
        while i < n && CLASSES[bytes[i] as usize] == c && c != Class::Wide {
            i += 1;
        }
        let len = i - start;
        tokens += match c {
            Class::Letter => len.div_ceil(LETTERS_PER_TOKEN),
            Class::Digit => len.div_ceil(DIGITS_PER_TOKEN),
            Class::Punct => len.div_ceil(3),
            Class::Newline => {
                // Indentation after a line break joins it.
                while i < n && CLASSES[bytes[i] as usize] == Class::Space {
                    i += 1;
                }
                1
            }
            // One space before a word or number rides along with it; the
            // rest of a run of spaces is one token.
            Class::Space => {
                let next = bytes.get(i).map(|&b| CLASSES[b as usize]);
                let absorbed = usize::from(matches!(next, Some(Class::Letter | Class::Digit)));
                usize::from(len > absorbed)
            }
            Class::Wide => 1,
            // Stray continuation bytes (the input is UTF-8, so only after a
            // Wide byte, which already counted the character).
            Class::Cont => 0,
        };
    }
    tokens as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heuristic_counts_words_numbers_and_punctuation() {
        assert_eq!(heuristic(b""), 0);
        assert_eq!(heuristic(b"hello world"), 2);
        assert_eq!(heuristic(b"internationalization"), 2);
        assert_eq!(heuristic(b"1234567"), 3);
        assert_eq!(heuristic(b"x\n        y"), 3);
        // `fn`, ` main`, `()`, ` `, `{}`
        assert_eq!(heuristic(b"fn main() {}"), 5);
        assert_eq!(heuristic(b"a\n\nb"), 3);
        assert_eq!(heuristic("日本語".as_bytes()), 3);
        assert_eq!(heuristic("café".as_bytes()), 2);
    }

    #[test]
    fn o200k_is_exact_bpe() {
        let e = Estimator::new(EstimatorKind::O200k);
        assert_eq!(e.count(""), 0);
        assert_eq!(e.count("hello world"), 2);
        assert_eq!(e.count("The quick brown fox jumps over the lazy dog."), 10);
        // The heuristic agrees on plain English.
        assert_eq!(
            Estimator::Heuristic.count("The quick brown fox jumps over the lazy dog."),
            10
        );
    }

    #[test]
    fn kinds_parse_and_print() {
        for k in [EstimatorKind::Heuristic, EstimatorKind::O200k] {
            assert_eq!(k.to_string().parse::<EstimatorKind>().unwrap(), k);
        }
        assert!("bpe".parse::<EstimatorKind>().unwrap_err().contains("bpe"));
    }
}
