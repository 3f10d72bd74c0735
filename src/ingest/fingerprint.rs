//! File identity: device + inode + a hash of the file's first bytes.
//!
//! Device/inode follow a file through renames (rotation); the content hash
//! tells a reused inode from the file that had it before. A file shorter than
//! [`FINGERPRINT_BYTES`] is fingerprinted over what it has; the stored length
//! says how many bytes to compare, and the fingerprint is extended as the file
//! grows.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;

/// How many leading bytes identify a file.
pub const FINGERPRINT_BYTES: usize = 1024;

/// Device and inode of a file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileKey {
    /// The key of an open file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Hash of a file's first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Number of bytes hashed (≤ [`FINGERPRINT_BYTES`]).
    pub len: u32,
    /// xxh3 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// Fingerprint of an empty prefix.
    pub const EMPTY: Fingerprint = Fingerprint {
        len: 0,
        hash: 0x2d06800538d394c2, // xxh3_64 of ""
    };

    /// True when this fingerprint covers the full [`FINGERPRINT_BYTES`].
    pub fn is_complete(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }
}

/// Reads up to `len` leading bytes (from offset 0) and hashes them.
pub fn fingerprint_prefix(file: &File, len: usize) -> std::io::Result<Fingerprint> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let want = len.min(FINGERPRINT_BYTES);
    let mut got = 0;
    // pread: reading from 0 must not move the reader's position.
    while got < want {
        let n = file.read_at(&mut buf[got..want], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(of_prefix(&buf[..got]))
}

/// The fingerprint of a file whose first bytes are `head` (only its first
/// [`FINGERPRINT_BYTES`] count): what [`fingerprint_prefix`] gives, from
/// bytes already read.
pub fn of_prefix(head: &[u8]) -> Fingerprint {
    let head = &head[..head.len().min(FINGERPRINT_BYTES)];
    Fingerprint {
        len: head.len() as u32,
        hash: xxhash_rust::xxh3::xxh3_64(head),
    }
}

/// True when `file` still starts with the bytes `fp` was computed from.
pub fn still_matches(file: &File, fp: &Fingerprint) -> std::io::Result<bool> {
    let now = fingerprint_prefix(file, fp.len as usize)?;
    Ok(now.len == fp.len && now.hash == fp.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn empty_constant_is_the_hash_of_nothing() {
        assert_eq!(Fingerprint::EMPTY.hash, xxhash_rust::xxh3::xxh3_64(b""));
    }

    #[test]
    fn short_file_grows_and_still_matches() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n").unwrap();
        let f = File::open(&p).unwrap();
        let fp = fingerprint_prefix(&f, FINGERPRINT_BYTES).unwrap();
        assert_eq!(fp.len, 8);
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(&vec![b'x'; 5000]).unwrap();
        assert!(still_matches(&f, &fp).unwrap());
        let full = fingerprint_prefix(&f, FINGERPRINT_BYTES).unwrap();
        assert!(full.is_complete());
        assert_eq!(full, of_prefix(&std::fs::read(&p).unwrap()));
        std::fs::write(&p, b"{\"b\":2}\n").unwrap();
        assert!(!still_matches(&File::open(&p).unwrap(), &fp).unwrap());
    }
}
