//! A validating scanner that proves a line is a well-formed JSON object
//! without building it, for the lines that cannot be usage entries.
//!
//! Two thirds of a transcript's bytes are lines without usage (user prompts,
//! tool results, progress, snapshots), mostly long strings with an escape
//! every few dozen bytes. Classifying them only needs "is this a JSON
//! object": no tape, no unescaped copy of every string, which is where
//! simd-json spends most of its time.
//!
//! The scan works like simdjson's first stage, 64 bytes at a time: masks of
//! quotes, backslashes and control bytes; which bytes a backslash escapes
//! (carried across blocks); which bytes lie inside strings (a prefix XOR of
//! the unescaped quotes). String bodies are then checked with a few mask
//! operations, and only the bytes outside strings go through the grammar, one
//! by one — in a transcript line those are a small minority.
//!
//! It is deliberately one-sided: `true` means simd-json accepts the line as
//! an object too, and the line has neither a string `"usage"` nor a `\u`
//! escape (so it cannot spell a usage key). Whatever it does not fully vouch
//! for — invalid JSON, but also exponents, long numbers, `\u` escapes, deep
//! nesting — answers `false`, and the caller parses the line with simd-json,
//! which decides (and names the error). So the class of a line never depends
//! on which path looked at it.
//!
//! The same scan, with a [`Watch`] told where keys and values start, lets
//! [`crate::format::claude::fast`] read a usage entry's fields without a tape.

/// Deepest nesting vouched for; deeper lines go to the full parser (whose
/// limit is 1024).
const MAX_DEPTH: usize = 128;

/// Longest number vouched for, in bytes: every shorter decimal without an
/// exponent is exactly what simd-json's number parser accepts.
const MAX_NUMBER_BYTES: usize = 18;

/// Bits of the odd bytes of a block.
const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// True when `line` is a JSON object simd-json accepts, with no string equal
/// to `usage` and no `\u` escape. False means "not proven": parse it fully.
///
/// Only where the CPU has AVX2: without it the scan runs a byte at a time,
/// slower than simd-json, so it vouches for nothing and every line takes the
/// full parser.
pub fn is_plain_object(line: &[u8]) -> bool {
    has_avx2() && proves_plain_object(line)
}

/// The scan itself, on any CPU.
fn proves_plain_object(line: &[u8]) -> bool {
    simdutf8::basic::from_utf8(line).is_ok() && Validator::new(line, Plain).run().is_some()
}

/// Proves `line` a JSON object simd-json accepts, with no `\u` escape, while
/// `watch` is told where keys and values start. The string `usage` is
/// allowed here. `None` means "not proven" (also when `watch` refused the
/// line); only where the CPU has AVX2, as [`is_plain_object`].
pub(crate) fn scan_watching<W: Watch>(line: &[u8], watch: W) -> Option<W> {
    if !has_avx2() || simdutf8::basic::from_utf8(line).is_err() {
        return None;
    }
    Validator::new(line, watch).run()
}

/// Follows the structure of a line while the validator scans it.
pub(crate) trait Watch {
    /// Whether a string `usage` (key or value) makes the line unproven.
    const REFUSES_USAGE: bool;
    /// A key of the object at nesting `depth` (1 for the line's own object)
    /// has its opening quote at `pos`.
    fn key(&mut self, line: &[u8], depth: usize, pos: usize);
    /// A value starts at `pos` inside the container at nesting `depth` (0
    /// for the line's object itself). False: do not vouch for the line.
    fn value(&mut self, line: &[u8], depth: usize, pos: usize) -> bool;
}

/// No watching: what [`is_plain_object`] proves.
struct Plain;

impl Watch for Plain {
    const REFUSES_USAGE: bool = true;
    #[inline(always)]
    fn key(&mut self, _: &[u8], _: usize, _: usize) {}
    #[inline(always)]
    fn value(&mut self, _: &[u8], _: usize, _: usize) -> bool {
        true
    }
}

#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Per-block masks, bit i for byte i.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// Bytes below 0x20.
    control: u64,
    /// Bytes a simple escape may escape: `"` `\\` `/` `b` `f` `n` `r` `t`.
    escapable: u64,
}

/// The bytes a simple escape may escape (`\u` is left to the full parser).
const SIMPLE_ESCAPES: [u8; 8] = [b'"', b'\\', b'/', b'b', b'f', b'n', b'r', b't'];

/// The masks of one 64-byte block: AVX2 where the CPU has it, else a byte at
/// a time (about 20x slower).
#[inline]
fn block_masks(b: &[u8; 64]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { block_masks_avx2(b) };
    }
    block_masks_portable(b)
}

/// [`block_masks`] with AVX2, 32 bytes per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_masks_avx2(b: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let max_control = _mm256_set1_epi8(0x1f);
    let escapes = SIMPLE_ESCAPES.map(|c| _mm256_set1_epi8(c as i8));
    let mut m = Masks {
        quote: 0,
        backslash: 0,
        control: 0,
        escapable: 0,
    };
    for k in 0..2 {
        // SAFETY: both 32-byte loads stay inside the 64-byte array; loadu
        // has no alignment requirement.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(32 * k).cast()) };
        let mask = |hits| (_mm256_movemask_epi8(hits) as u32 as u64) << (32 * k);
        m.quote |= mask(_mm256_cmpeq_epi8(v, quote));
        m.backslash |= mask(_mm256_cmpeq_epi8(v, backslash));
        // Control byte: unsigned max(v, 0x1f) == 0x1f.
        m.control |= mask(_mm256_cmpeq_epi8(
            _mm256_max_epu8(v, max_control),
            max_control,
        ));
        let escapable = escapes.iter().fold(_mm256_setzero_si256(), |acc, &e| {
            _mm256_or_si256(acc, _mm256_cmpeq_epi8(v, e))
        });
        m.escapable |= mask(escapable);
    }
    m
}

/// [`block_masks`] a byte at a time (CPUs without AVX2, and the tests'
/// reference for the AVX2 one).
fn block_masks_portable(b: &[u8; 64]) -> Masks {
    let mut m = Masks {
        quote: 0,
        backslash: 0,
        control: 0,
        escapable: 0,
    };
    for (i, &c) in b.iter().enumerate() {
        m.quote |= u64::from(c == b'"') << i;
        m.backslash |= u64::from(c == b'\\') << i;
        m.control |= u64::from(c < 0x20) << i;
        m.escapable |= u64::from(SIMPLE_ESCAPES.contains(&c)) << i;
    }
    m
}

/// Which bytes backslashes escape, block after block (simdjson's escape
/// scanner): in a run of backslashes every second one is escaped, and the
/// byte after an odd run is.
#[derive(Default)]
struct EscapeScanner {
    /// The last block ended with an unpaired backslash.
    next_is_escaped: u64,
}

impl EscapeScanner {
    /// Mask of the escaped bytes of a block with these backslashes.
    #[inline]
    fn escaped(&mut self, backslash: u64) -> u64 {
        if backslash == 0 {
            return std::mem::take(&mut self.next_is_escaped);
        }
        // A backslash escaped from the previous block starts nothing.
        let potential_escape = backslash & !self.next_is_escaped;
        // Subtracting each run from the odd bits beside it flips exactly the
        // bytes escaped by odd-positioned starts; the XOR sorts out the rest.
        let maybe_escaped = potential_escape << 1;
        let escape_and_terminal_code =
            ((maybe_escaped | ODD_BITS).wrapping_sub(potential_escape)) ^ ODD_BITS;
        let escaped = escape_and_terminal_code ^ (backslash | self.next_is_escaped);
        let escape = escape_and_terminal_code & backslash;
        self.next_is_escaped = escape >> 63;
        escaped
    }
}

/// XOR of every bit with all lower bits: 1 from an opening quote up to, not
/// including, its closing quote.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// What the grammar expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:` or `,` in an array: a value.
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// After a value: `,` or the innermost container's closing bracket.
    Next,
    /// The top-level object has closed: only whitespace may follow.
    Done,
}

/// The grammar over the bytes outside strings (and each string's opening
/// quote), fed in order.
struct Validator<'a, W> {
    line: &'a [u8],
    watch: W,
    expect: Expect,
    /// Bit d: the container at depth d is an object.
    kinds: [u64; MAX_DEPTH / 64],
    depth: usize,
    /// Bytes before this offset were consumed by a number or literal.
    skip_until: usize,
}

impl<'a, W: Watch> Validator<'a, W> {
    fn new(line: &'a [u8], watch: W) -> Self {
        Validator {
            line,
            watch,
            expect: Expect::Value,
            kinds: [0; MAX_DEPTH / 64],
            depth: 0,
            skip_until: 0,
        }
    }

    fn run(mut self) -> Option<W> {
        let mut escapes = EscapeScanner::default();
        let mut in_string_carry = 0u64;
        let mut tail = [b' '; 64];
        let mut base = 0usize;
        while base < self.line.len() {
            let n = (self.line.len() - base).min(64);
            let bytes: &[u8; 64] = if n == 64 {
                self.line[base..base + 64].try_into().expect("64 bytes")
            } else {
                // The tail, padded with spaces (neutral outside strings; an
                // unclosed string fails on the carry below).
                tail[..n].copy_from_slice(&self.line[base..]);
                &tail
            };
            let m = block_masks(bytes);
            let escaped = escapes.escaped(m.backslash);
            let quotes = m.quote & !escaped;
            let in_string = prefix_xor(quotes) ^ in_string_carry;
            in_string_carry = ((in_string as i64) >> 63) as u64;
            // Control bytes inside strings are invalid JSON, and every
            // escape inside a string must be a simple one (`\u` is left to
            // the parser); a backslash outside a string fails below.
            if (m.control | (escaped & !m.escapable)) & in_string != 0 {
                return None;
            }
            // The grammar sees the opening quotes and everything outside
            // strings (closing quotes excepted).
            let mut tokens = (quotes & in_string) | (!in_string & !quotes);
            if n < 64 {
                tokens &= (1u64 << n) - 1;
            }
            while tokens != 0 {
                let j = tokens.trailing_zeros() as usize;
                tokens &= tokens - 1;
                let pos = base + j;
                if pos >= self.skip_until && !self.token(pos) {
                    return None;
                }
            }
            base += 64;
        }
        let valid =
            escapes.next_is_escaped == 0 && in_string_carry == 0 && self.expect == Expect::Done;
        valid.then_some(self.watch)
    }

    #[inline]
    fn is_object(&self) -> bool {
        let d = self.depth - 1;
        self.kinds[d / 64] >> (d % 64) & 1 == 1
    }

    /// One byte outside a string, or a string's opening quote, at `pos`.
    #[inline]
    fn token(&mut self, pos: usize) -> bool {
        let c = self.line[pos];
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            return true;
        }
        match self.expect {
            Expect::Done => false,
            Expect::ObjectFirst | Expect::Key | Expect::Colon | Expect::Next
                if c == b'}' || c == b']' =>
            {
                let ok = match self.expect {
                    Expect::ObjectFirst => c == b'}',
                    Expect::Next => (c == b'}') == self.is_object(),
                    _ => false,
                };
                ok && self.close()
            }
            Expect::ObjectFirst | Expect::Key => {
                if c != b'"' || (W::REFUSES_USAGE && self.line[pos..].starts_with(b"\"usage\"")) {
                    return false;
                }
                self.watch.key(self.line, self.depth, pos);
                self.expect = Expect::Colon;
                true
            }
            Expect::Colon => {
                self.expect = Expect::Value;
                c == b':'
            }
            Expect::Next => {
                if c != b',' {
                    return false;
                }
                self.expect = if self.is_object() {
                    Expect::Key
                } else {
                    Expect::Value
                };
                true
            }
            Expect::ArrayFirst if c == b']' => self.close(),
            Expect::Value | Expect::ArrayFirst => self.value(c, pos),
        }
    }

    /// The start of a value at `pos`.
    #[inline]
    fn value(&mut self, c: u8, pos: usize) -> bool {
        self.expect = Expect::Next;
        if !self.watch.value(self.line, self.depth, pos) {
            return false;
        }
        match c {
            b'{' | b'[' => {
                // The line itself must be an object.
                if self.depth == MAX_DEPTH || (self.depth == 0 && c != b'{') {
                    return false;
                }
                let bit = 1u64 << (self.depth % 64);
                if c == b'{' {
                    self.kinds[self.depth / 64] |= bit;
                    self.expect = Expect::ObjectFirst;
                } else {
                    self.kinds[self.depth / 64] &= !bit;
                    self.expect = Expect::ArrayFirst;
                }
                self.depth += 1;
                true
            }
            _ if self.depth == 0 => false,
            b'"' => !(W::REFUSES_USAGE && self.line[pos..].starts_with(b"\"usage\"")),
            b't' => self.literal(pos, b"true"),
            b'f' => self.literal(pos, b"false"),
            b'n' => self.literal(pos, b"null"),
            b'-' | b'0'..=b'9' => self.number(pos),
            _ => false,
        }
    }

    fn close(&mut self) -> bool {
        self.depth -= 1;
        self.expect = if self.depth == 0 {
            Expect::Done
        } else {
            Expect::Next
        };
        true
    }

    /// A scalar ending at `end` must be followed by whitespace, `,`, a
    /// closing bracket, or the end of the line.
    fn scalar_ends(&mut self, end: usize) -> bool {
        self.skip_until = end;
        matches!(
            self.line.get(end),
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | b',' | b'}' | b']')
        )
    }

    fn literal(&mut self, pos: usize, word: &[u8]) -> bool {
        self.line[pos..].starts_with(word) && self.scalar_ends(pos + word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most [`MAX_NUMBER_BYTES`] long.
    fn number(&mut self, pos: usize) -> bool {
        let b = self.line;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = pos + usize::from(b[pos] == b'-');
        i = match b.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return false,
        };
        if b.get(i) == Some(&b'.') {
            if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                return false;
            }
            i = digits(i + 1);
        }
        // An exponent, or a digit after a leading zero, is no scalar end.
        i - pos <= MAX_NUMBER_BYTES && self.scalar_ends(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use simd_json::prelude::*;

    /// What simd-json says: a JSON object, or not.
    fn simd_object(line: &[u8]) -> bool {
        let mut copy = line.to_vec();
        let mut buffers = simd_json::Buffers::new(64);
        let mut tape = simd_json::Tape::null();
        simd_json::fill_tape(&mut copy, &mut buffers, &mut tape).is_ok()
            && tape.as_value().value_type() == simd_json::ValueType::Object
    }

    #[test]
    fn accepts_plain_objects() {
        for line in [
            r#"{}"#,
            r#" { "a" : 1 } "#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"line\none\t\"q\" \\ \/ \b\f\r","is_error":false}]},"n":-0.5,"z":0,"x":null,"t":true,"f":false,"e":[],"o":{},"deep":[[[{"k":[1,2,3]}]]]}"#,
            "{\"text\":\"caf\u{e9} \u{1F600} \u{4e2d}\u{6587}\"}",
            "{\"a\":\"\"}\r",
        ] {
            assert!(proves_plain_object(line.as_bytes()), "{line}");
            assert!(simd_object(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_vouch_for() {
        for line in [
            "",
            "   ",
            "[]",
            "\"s\"",
            "1",
            "{",
            "}",
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1}"#,
            r#"{"a":{]}"#,
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{"b":2}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e5}"#,
            r#"{"a":12345678901234567890}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
            r#"{"a":NaN}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"unterminated}"#,
            "{\"a\":\"tab\tinside\"}",
            "{\"a\":\"nul\0inside\"}",
            "{\"a\":1}\u{c}",
            r#"{"usage":{"input_tokens":1}}"#,
            r#"{"k":"usage"}"#,
        ] {
            assert!(!proves_plain_object(line.as_bytes()), "{line:?}");
        }
        assert!(!proves_plain_object(b"{\"a\":\"\xff\"}"));
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(!proves_plain_object(deep.as_bytes()));
        let ok = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(proves_plain_object(ok.as_bytes()));
    }

    /// The escape scanner's masks over `bytes` (a multiple of 64 long).
    fn escaped_by_scanner(bytes: &[u8]) -> Vec<bool> {
        let mut scanner = EscapeScanner::default();
        let mut out = Vec::new();
        for block in bytes.chunks(64) {
            let block: &[u8; 64] = block.try_into().unwrap();
            let e = scanner.escaped(block_masks(block).backslash);
            out.extend((0..64).map(|i| e >> i & 1 == 1));
        }
        out
    }

    /// Byte by byte: a byte is escaped when the byte before is a backslash
    /// that is not itself escaped.
    fn escaped_reference(bytes: &[u8]) -> Vec<bool> {
        let mut prev_escapes = false;
        bytes
            .iter()
            .map(|&c| {
                let escaped = prev_escapes;
                prev_escapes = c == b'\\' && !escaped;
                escaped
            })
            .collect()
    }

    #[test]
    fn escapes_across_block_boundaries() {
        for run in 0..140 {
            for at in [0usize, 1, 30, 62, 63, 64, 65, 126, 127] {
                let mut b = vec![b'a'; 256];
                for c in b.iter_mut().skip(at).take(run) {
                    *c = b'\\';
                }
                assert_eq!(
                    escaped_by_scanner(&b),
                    escaped_reference(&b),
                    "run {run} at {at}"
                );
            }
        }
    }

    /// Text made of JSON's own punctuation, so that random strings are often
    /// nearly valid.
    fn jsonish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("{".to_string()),
                Just("}".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just(",".to_string()),
                Just(":".to_string()),
                Just("\"".to_string()),
                Just("\"k\":".to_string()),
                Just("\\".to_string()),
                Just("\\n".to_string()),
                Just(" ".to_string()),
                Just("true".to_string()),
                Just("nul".to_string()),
                Just("-".to_string()),
                Just("0".to_string()),
                Just("12".to_string()),
                Just(".5".to_string()),
                Just("e3".to_string()),
                Just("é".to_string()),
                Just("\t".to_string()),
                "[a-z]{1,3}",
            ],
            0..24,
        )
        .prop_map(|parts| format!("{{{}", parts.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Never vouches for a line simd-json rejects.
        #[test]
        fn vouches_only_for_what_simd_json_accepts(s in jsonish()) {
            if proves_plain_object(s.as_bytes()) {
                prop_assert!(simd_object(s.as_bytes()), "{s:?}");
            }
        }

        /// Near-valid lines (a valid object with a few bytes deleted, inserted
        /// or replaced): never vouched for unless simd-json accepts them.
        #[test]
        fn vouches_only_for_what_simd_json_accepts_after_edits(
            v in plain_value(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(&b"{}[],:\"\\ 0-.eE\tx\x01"[..])), 1..4),
        ) {
            let mut line = serde_json::to_vec(&serde_json::json!({ "k": v })).unwrap();
            for (at, op, byte) in edits {
                let i = at.index(line.len() + 1);
                match op {
                    0 if i < line.len() => { line.remove(i); }
                    1 if i < line.len() => line[i] = byte,
                    _ => line.insert(i, byte),
                }
            }
            if proves_plain_object(&line) {
                prop_assert!(simd_object(&line), "{:?}", String::from_utf8_lossy(&line));
            }
        }

        /// Escaped bytes and block masks equal their byte-at-a-time
        /// references, whatever mix of backslashes and quotes.
        #[test]
        fn block_scan_equals_the_references(
            b in proptest::collection::vec(prop::sample::select(&b"\\\\\\\"a\x01\x1f \x7f\xc3"[..]), 192),
        ) {
            prop_assert_eq!(escaped_by_scanner(&b), escaped_reference(&b));
            for block in b.chunks(64) {
                let block: &[u8; 64] = block.try_into().unwrap();
                prop_assert_eq!(block_masks(block), block_masks_portable(block));
            }
        }

        /// Vouches for every serialized object of plain values.
        #[test]
        fn vouches_for_serialized_objects(v in plain_value(), k in "[a-z ]{0,4}") {
            let line = serde_json::to_string(&serde_json::json!({ k: v })).unwrap();
            prop_assume!(!line.contains("\"usage\""));
            prop_assert!(proves_plain_object(line.as_bytes()), "{line}");
        }
    }

    /// JSON values without exponents, `\u` escapes or the string `usage`.
    fn plain_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            (-1_000_000_000_000i64..1_000_000_000_000).prop_map(serde_json::Value::from),
            (-1000i32..1000, 0u32..100).prop_map(|(a, b)| serde_json::Value::from(
                format!("{a}.{b:02}").parse::<f64>().unwrap()
            )),
            "[ -~\t\n\r\"\\\\é中😀]{0,40}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z]{0,4}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
