//! Line splitting for one file: bytes read are appended to a carry buffer,
//! complete lines are cut out of it as `Bytes` slices of the read buffer
//! (no copy per line), `\r\n` loses its `\r`, a line longer than
//! `max_line_bytes` is truncated (flagged) or skipped and never stalls the
//! file, and a last line without newline is held until its newline comes or
//! the partial-line timeout emits it. Invalid UTF-8 passes through as bytes.
//! Touches the file handle it is given (positional reads) and memory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::Oversized;

/// Bytes before the read position re-read with every read.
const TAIL: usize = 16;

/// What a [`Splitter::fill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Bytes taken in (0 at end of file).
    Read(usize),
    /// The bytes before the read position changed: truncated or rewritten.
    Changed,
}

/// A line cut out of a file.
#[derive(Debug, Clone)]
pub struct Line {
    pub value: Bytes,
    /// Offset of the line's first byte in the file.
    pub offset: u64,
    pub truncated: bool,
}

/// Splitting state of one file.
#[derive(Debug)]
pub struct Splitter {
    max: usize,
    oversized: Oversized,
    carry: BytesMut,
    /// File offset where `carry` starts: everything before is consumed.
    consumed: u64,
    /// Inside the rest of an oversized line: drop up to its newline.
    discarding: bool,
    /// A partial line was emitted by timeout: a newline right after it ends
    /// it rather than making an empty line.
    skip_newline: bool,
    partial_since: Option<Instant>,
    /// The last bytes before the read position (`tail_len` of them).
    tail: [u8; TAIL],
    tail_len: usize,
    /// Oversized lines seen (truncated or skipped).
    pub oversized_count: u64,
}

impl Splitter {
    pub fn new(max: usize, oversized: Oversized, offset: u64) -> Splitter {
        Splitter {
            max,
            oversized,
            carry: BytesMut::new(),
            consumed: offset,
            discarding: false,
            skip_newline: false,
            partial_since: None,
            tail: [0; TAIL],
            tail_len: 0,
            oversized_count: 0,
        }
    }

    /// Everything before this offset was turned into lines (or dropped).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Next byte to read from the file.
    pub fn read_pos(&self) -> u64 {
        self.consumed + self.carry.len() as u64
    }

    /// Since when a partial last line has been held, if one is.
    pub fn partial_since(&self) -> Option<Instant> {
        self.partial_since
    }

    /// Bytes held (partial line).
    pub fn held(&self) -> usize {
        self.carry.len()
    }

    /// Starts over at `offset` (truncation): held bytes are dropped.
    pub fn reset(&mut self, offset: u64) {
        self.carry = BytesMut::new();
        self.consumed = offset;
        self.discarding = false;
        self.skip_newline = false;
        self.partial_since = None;
        self.tail_len = 0;
    }

    /// The next byte ends a line already emitted (a partial line emitted
    /// by timeout before a restart): a newline there makes no empty line.
    pub fn skip_next_newline(&mut self) {
        self.skip_newline = true;
    }

    /// Frees the buffer when nothing is held (idle files cost no memory).
    pub fn shrink(&mut self) {
        if self.carry.is_empty() {
            self.carry = BytesMut::new();
        }
    }

    /// Reads up to `want` bytes at [`read_pos`](Self::read_pos), re-reading
    /// in the same call the last bytes before it: if those changed, the
    /// file was truncated or rewritten and nothing is taken in.
    pub fn fill(&mut self, file: &File, want: usize, check: bool) -> std::io::Result<Fill> {
        if self.carry.capacity() - self.carry.len() < want {
            let held = self.carry.len();
            let cap = (held + want).max(held * 2);
            let mut fresh = BytesMut::with_capacity(cap);
            fresh.extend_from_slice(&self.carry);
            self.carry = fresh;
        }
        if self.tail_len as u64 > self.read_pos() {
            self.tail_len = 0;
        }
        let k = if check { self.tail_len } else { 0 };
        let mut overlap = [0u8; TAIL];
        let mut checked = k == 0;
        let mut got = 0;
        while got < want {
            let pos = self.read_pos();
            let spare = self.carry.spare_capacity_mut();
            if checked {
                // SAFETY: as below, without the overlap.
                let n = unsafe {
                    libc::pread(
                        file.as_raw_fd(),
                        spare.as_mut_ptr().cast(),
                        want - got,
                        pos as libc::off_t,
                    )
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    break;
                }
                // SAFETY: the kernel initialised these `n` bytes.
                unsafe { self.carry.set_len(self.carry.len() + n as usize) };
                got += n as usize;
                continue;
            }
            let iov = [
                libc::iovec {
                    iov_base: overlap.as_mut_ptr().cast(),
                    iov_len: k,
                },
                libc::iovec {
                    iov_base: spare.as_mut_ptr().cast(),
                    iov_len: want - got,
                },
            ];
            let start = pos - k as u64;
            // SAFETY: preadv writes at most `k` bytes into `overlap` (its
            // length is TAIL >= k) and at most `want - got` bytes into the
            // spare capacity, which holds at least that many (reserved
            // above); only the bytes it reports are used or exposed.
            let n =
                unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), 2, start as libc::off_t) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n < k || overlap[..k] != self.tail[..k] {
                return Ok(Fill::Changed);
            }
            checked = true;
            let n = n - k;
            if n == 0 {
                break;
            }
            // SAFETY: the kernel initialised these `n` bytes.
            unsafe { self.carry.set_len(self.carry.len() + n) };
            got += n;
        }
        self.remember_tail(got);
        Ok(Fill::Read(got))
    }

    /// Keeps the last `TAIL` bytes before the read position.
    fn remember_tail(&mut self, got: usize) {
        if got == 0 {
            return;
        }
        let new = &self.carry[self.carry.len() - got..];
        if got >= TAIL {
            self.tail.copy_from_slice(&new[got - TAIL..]);
            self.tail_len = TAIL;
            return;
        }
        let mut joined = [0u8; 2 * TAIL];
        joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        joined[self.tail_len..self.tail_len + got].copy_from_slice(new);
        let total = self.tail_len + got;
        let keep = total.min(TAIL);
        self.tail[..keep].copy_from_slice(&joined[total - keep..total]);
        self.tail_len = keep;
    }

    /// Cuts every complete line out of the held bytes.
    pub fn split(&mut self, now: Instant, emit: &mut impl FnMut(Line)) {
        if let Some(last) = memchr::memrchr(b'\n', &self.carry) {
            let chunk = self.carry.split_to(last + 1).freeze();
            let base = self.consumed;
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', &chunk) {
                let line_start = start;
                start = nl + 1;
                if std::mem::take(&mut self.skip_newline) && nl == line_start {
                    continue;
                }
                if std::mem::take(&mut self.discarding) {
                    continue;
                }
                let mut end = nl;
                if end > line_start && chunk[end - 1] == b'\r' {
                    end -= 1;
                }
                self.line(&chunk, line_start, end, base, emit);
            }
            self.consumed += chunk.len() as u64;
            self.partial_since = None;
        }
        if self.carry.is_empty() {
            return;
        }
        if self.carry.len() > self.max {
            // An oversized line still without newline: cut it now so the
            // file never stalls on it, drop the rest up to its newline.
            let end = self.read_pos();
            if !self.discarding {
                self.oversized_count += 1;
                if self.oversized == Oversized::Truncate {
                    emit(Line {
                        value: self.carry.split_to(self.max).freeze(),
                        offset: self.consumed,
                        truncated: true,
                    });
                }
                self.discarding = true;
            }
            self.consumed = end;
            self.carry = BytesMut::new();
            self.partial_since = None;
            return;
        }
        self.partial_since.get_or_insert(now);
    }

    fn line(&mut self, chunk: &Bytes, s: usize, e: usize, base: u64, emit: &mut impl FnMut(Line)) {
        let offset = base + s as u64;
        if e - s > self.max {
            self.oversized_count += 1;
            if self.oversized == Oversized::Truncate {
                emit(Line {
                    value: chunk.slice(s..s + self.max),
                    offset,
                    truncated: true,
                });
            }
            return;
        }
        emit(Line {
            value: chunk.slice(s..e),
            offset,
            truncated: false,
        });
    }

    /// Emits the held partial line, if any (timeout, or the file is gone).
    pub fn flush_partial(&mut self, emit: &mut impl FnMut(Line)) {
        self.partial_since = None;
        if self.carry.is_empty() {
            return;
        }
        let offset = self.consumed;
        self.consumed = self.read_pos();
        let held = std::mem::take(&mut self.carry).freeze();
        if std::mem::take(&mut self.discarding) {
            return;
        }
        let mut value = held;
        if value.last() == Some(&b'\r') {
            value.truncate(value.len() - 1);
        }
        self.skip_newline = true;
        emit(Line {
            value,
            offset,
            truncated: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn run(content: &[u8], max: usize, mode: Oversized) -> (Vec<(Vec<u8>, u64, bool)>, Splitter) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        let mut s = Splitter::new(max, mode, 0);
        let mut out = Vec::new();
        while s.fill(&f, 7, true).unwrap() != Fill::Read(0) {
            s.split(Instant::now(), &mut |l: Line| {
                out.push((l.value.to_vec(), l.offset, l.truncated))
            });
        }
        (out, s)
    }

    #[test]
    fn splits_strips_cr_and_holds_partial() {
        let (out, s) = run(b"ab\r\n\ncdef\nxyz", 100, Oversized::Truncate);
        assert_eq!(
            out,
            vec![
                (b"ab".to_vec(), 0, false),
                (b"".to_vec(), 4, false),
                (b"cdef".to_vec(), 5, false)
            ]
        );
        assert_eq!(s.consumed(), 10);
        assert_eq!(s.held(), 3);
    }

    #[test]
    fn oversized_lines_are_cut_or_skipped() {
        let (out, _) = run(b"0123456789abc\nok\n", 4, Oversized::Truncate);
        assert_eq!(
            out,
            vec![(b"0123".to_vec(), 0, true), (b"ok".to_vec(), 14, false)]
        );
        let (out, s) = run(b"0123456789abc\nok\n", 4, Oversized::Skip);
        assert_eq!(out, vec![(b"ok".to_vec(), 14, false)]);
        assert_eq!(s.oversized_count, 1);
    }
}

#[cfg(test)]
mod fill_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_rewrite_before_the_read_position_is_noticed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"first line\nsecond line\n").unwrap();
        let file = File::open(f.path()).unwrap();
        let mut s = Splitter::new(100, Oversized::Truncate, 0);
        assert_eq!(s.fill(&file, 4096, true).unwrap(), Fill::Read(23));
        s.split(Instant::now(), &mut |_| {});
        f.write_all(b"third\n").unwrap();
        assert_eq!(s.fill(&file, 4096, true).unwrap(), Fill::Read(6));
        s.split(Instant::now(), &mut |_| {});
        // Truncated and regrown past the read position with other bytes.
        std::fs::write(f.path(), b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n").unwrap();
        assert_eq!(s.fill(&file, 4096, true).unwrap(), Fill::Changed);
        assert_eq!(s.read_pos(), 29);
    }
}
