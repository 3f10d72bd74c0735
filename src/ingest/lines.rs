//! Where the complete JSONL lines of a buffer end (memchr).
//!
//! Only bytes up to and including the last `\n` are complete; whatever follows
//! is a half-written line that must wait for its newline (the writer may still
//! be in the middle of it).

/// Length of the complete-lines prefix of `buf`: everything up to and including
/// the last newline, or 0 when there is none.
pub fn complete_prefix_len(buf: &[u8]) -> usize {
    memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1)
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
}
