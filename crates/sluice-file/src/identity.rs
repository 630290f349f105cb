//! File identity: device, inode and a fingerprint of the leading bytes.
//!
//! The fingerprint is a hash of the first `len` bytes of the file, where
//! `len` is the smaller of `fingerprint_bytes` and the file's size when it
//! was taken, so a short file is known by device and inode plus whatever
//! head it has, and the fingerprint grows with the file. Two files are the
//! same when device and inode are equal and the file's first `len` bytes
//! still hash to the fingerprint: inode reuse with other content, or a
//! truncated and rewritten file, are therefore new files. The hash is
//! FNV-1a 64, stable across versions because it is stored in checkpoints.
//! Touches files only through the handles and paths it is given (reads).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Hash of a file's first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

/// Where a file is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub path: Arc<str>,
    pub dev: u64,
    pub ino: u64,
    pub fp: Fingerprint,
}

/// FNV-1a, 64 bits.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Reads up to `max` leading bytes (fewer if the file is shorter).
pub fn read_head(file: &File, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

impl Fingerprint {
    /// The fingerprint of a head read with [`read_head`].
    pub fn of(head: &[u8]) -> Fingerprint {
        Fingerprint {
            len: head.len() as u32,
            hash: fnv1a(head),
        }
    }

    /// Whether `head` (the file's current leading bytes) starts with the
    /// bytes this fingerprint was taken of.
    pub fn matches(&self, head: &[u8]) -> bool {
        let len = self.len as usize;
        head.len() >= len && fnv1a(&head[..len]) == self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_file_still_matches_and_other_content_does_not() {
        let fp = Fingerprint::of(b"hello\n");
        assert!(fp.matches(b"hello\nworld\n"));
        assert!(!fp.matches(b"hellO\nworld\n"));
        assert!(!fp.matches(b"hel"));
        assert!(Fingerprint::of(b"").matches(b"anything"));
    }
}
