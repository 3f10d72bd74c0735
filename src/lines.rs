//! Splitting a byte buffer into complete JSONL lines with memchr.
//!
//! Only bytes up to and including the last `\n` are complete; whatever follows
//! is a half-written line that must wait for its newline (the writer may still
//! be in the middle of it).

/// Length of the complete-lines prefix of `buf`: everything up to and including
/// the last newline, or 0 when there is none.
pub fn complete_prefix_len(buf: &[u8]) -> usize {
    memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1)
}

/// Splits `buf` (which should end in `\n`) into mutable line slices, each
/// paired with its offset inside `buf`. The newline, and a `\r` before it, are
/// not part of the slice. A trailing fragment without newline is ignored.
pub fn split_lines_mut(buf: &mut [u8]) -> Vec<(usize, &mut [u8])> {
    let mut out = Vec::with_capacity(buf.len() / 512 + 1);
    let mut rest = buf;
    let mut offset = 0usize;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let (line, tail) = rest.split_at_mut(nl + 1);
        let consumed = line.len();
        let mut end = nl;
        if end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
        out.push((offset, &mut line[..end]));
        offset += consumed;
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_stops_at_last_newline() {
        assert_eq!(complete_prefix_len(b""), 0);
        assert_eq!(complete_prefix_len(b"abc"), 0);
        assert_eq!(complete_prefix_len(b"a\nb"), 2);
        assert_eq!(complete_prefix_len(b"a\nb\n"), 4);
    }

    #[test]
    fn splits_with_offsets_and_crlf() {
        let mut buf = b"one\r\ntwo\n\nthree\npartial".to_vec();
        let lines = split_lines_mut(&mut buf);
        let got: Vec<(usize, Vec<u8>)> = lines.into_iter().map(|(o, l)| (o, l.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (0, b"one".to_vec()),
                (5, b"two".to_vec()),
                (9, b"".to_vec()),
                (10, b"three".to_vec())
            ]
        );
    }
}
