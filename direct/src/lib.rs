//! Writing bytes that arrive in file order around the page cache: a download's plaintext in
//! dstore, an attachment's body in its emulator.
//!
//! A buffered write copies every byte into a page-cache page the kernel first allocates and
//! zeroes, then writes back later; for a large download that copy is most of its CPU time
//! (3.3 CPU-s per GiB where direct writes of the same bytes take 0.13, `dd` on this project's
//! benchmark machine). [`InOrderWriter`] gathers contiguous bytes in one aligned staging buffer
//! and writes it whole with `O_DIRECT`; only the unaligned ends of a run (the file's last bytes,
//! or the edges of chunks an earlier run already wrote) go through the page cache. Where the
//! file system refuses `O_DIRECT`, every write is buffered.
//!
//! Hand-written: no maintained crate offers an aligned, ordered `O_DIRECT` writer that falls
//! back to buffered writes (the `direct-io` crates read, or require aligned callers).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

/// Offsets, lengths and memory of direct writes are multiples of this: the largest logical
/// block size of common devices (4 KiB sectors), so it suits every one.
pub const ALIGN: usize = 4096;

/// The default staging buffer: large writes keep the device busy, and it stays small next to a
/// download's window.
pub const STAGE: usize = 8 * 1024 * 1024;

/// Writes runs of contiguous bytes to a file, direct where it can.
pub struct InOrderWriter {
    buffered: Arc<File>,
    direct: Option<File>,
    /// `stage[head..head + cap]` is aligned in memory; `stage_at` is the (aligned) file offset
    /// of its first byte and `staged` how many bytes it holds.
    stage: Vec<u8>,
    head: usize,
    cap: usize,
    stage_at: u64,
    staged: usize,
    /// Bytes written with `O_DIRECT`, for tests and figures.
    direct_bytes: u64,
}

impl InOrderWriter {
    /// A writer into `file`, whose name is `path`: a second descriptor with `O_DIRECT` is
    /// opened on the same file (checked by device and inode), or every write is buffered.
    pub fn new(file: Arc<File>, path: &Path) -> InOrderWriter {
        Self::with_stage(file, path, STAGE)
    }

    /// [`InOrderWriter::new`] with a staging buffer of `stage` bytes (rounded up to [`ALIGN`]).
    pub fn with_stage(file: Arc<File>, path: &Path, stage: usize) -> InOrderWriter {
        let direct = open_direct(&file, path);
        Self::with_direct(file, direct, stage.max(1).next_multiple_of(ALIGN))
    }

    /// A writer whose every write goes through `file` (buffered).
    #[cfg(test)]
    pub fn buffered(file: Arc<File>) -> InOrderWriter {
        Self::with_direct(file, None, 0)
    }

    fn with_direct(buffered: Arc<File>, direct: Option<File>, size: usize) -> InOrderWriter {
        let (stage, head, cap) = if direct.is_some() {
            let stage = vec![0u8; size + ALIGN];
            let head = stage.as_ptr().align_offset(ALIGN).min(ALIGN);
            (stage, head, size)
        } else {
            (Vec::new(), 0, 0)
        };
        InOrderWriter {
            buffered,
            direct,
            stage,
            head,
            cap,
            stage_at: 0,
            staged: 0,
            direct_bytes: 0,
        }
    }

    /// Bytes written with `O_DIRECT` so far.
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes
    }

    /// Writes `data` at `at`. Bytes that continue the previous write are staged; any others
    /// first flush what is staged.
    pub fn write_at(&mut self, mut data: &[u8], mut at: u64) -> io::Result<()> {
        if self.direct.is_none() {
            return self.buffered.write_all_at(data, at);
        }
        if self.staged > 0 && at != self.stage_at + self.staged as u64 {
            self.flush()?;
        }
        if self.staged == 0 {
            // A run starts: its bytes up to the next aligned offset go through the page cache.
            let to_aligned = (ALIGN as u64 - at % ALIGN as u64) % ALIGN as u64;
            let head = (to_aligned as usize).min(data.len());
            if head > 0 {
                self.buffered.write_all_at(&data[..head], at)?;
                data = &data[head..];
                at += head as u64;
            }
            self.stage_at = at;
        }
        while !data.is_empty() {
            let room = self.cap - self.staged;
            let n = room.min(data.len());
            let from = self.head + self.staged;
            self.stage[from..from + n].copy_from_slice(&data[..n]);
            self.staged += n;
            data = &data[n..];
            if self.staged == self.cap {
                self.write_stage(self.cap)?;
                self.stage_at += self.cap as u64;
                self.staged = 0;
            }
        }
        Ok(())
    }

    /// Room in the stage for the `len` bytes at `at`, for a caller that produces them in place
    /// (a chunk decrypted straight into it) instead of handing them to [`write_at`]: they count
    /// only once [`commit`] says so, so bytes that failed a check after they were produced are
    /// never written. `None` when they cannot be staged whole (buffered writes, a run that
    /// would start at an unaligned offset, or more than the stage holds); the caller then
    /// writes them with [`write_at`].
    ///
    /// [`write_at`]: InOrderWriter::write_at
    /// [`commit`]: InOrderWriter::commit
    pub fn reserve(&mut self, at: u64, len: usize) -> io::Result<Option<&mut [u8]>> {
        if self.direct.is_none() || len > self.cap - ALIGN {
            return Ok(None);
        }
        if self.staged > 0 && at != self.stage_at + self.staged as u64 {
            self.flush()?;
        }
        if self.staged == 0 {
            if !at.is_multiple_of(ALIGN as u64) {
                return Ok(None);
            }
            self.stage_at = at;
        }
        if self.cap - self.staged < len {
            // The aligned part goes out now and the unaligned rest (less than ALIGN bytes)
            // moves to the stage's start, so the bytes fit behind it.
            let aligned = self.staged - self.staged % ALIGN;
            self.write_stage(aligned)?;
            let tail = self.head + aligned..self.head + self.staged;
            self.stage.copy_within(tail, self.head);
            self.stage_at += aligned as u64;
            self.staged -= aligned;
        }
        let from = self.head + self.staged;
        Ok(Some(&mut self.stage[from..from + len]))
    }

    /// Counts the first `len` bytes of the room the last [`reserve`] gave as written.
    ///
    /// [`reserve`]: InOrderWriter::reserve
    pub fn commit(&mut self, len: usize) -> io::Result<()> {
        debug_assert!(
            self.staged + len <= self.cap,
            "committed more than reserved"
        );
        self.staged = (self.staged + len).min(self.cap);
        if self.staged == self.cap {
            self.write_stage(self.cap)?;
            self.stage_at += self.cap as u64;
            self.staged = 0;
        }
        Ok(())
    }

    /// Writes out everything staged: its aligned part direct, the rest buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.staged == 0 {
            return Ok(());
        }
        let aligned = self.staged - self.staged % ALIGN;
        if aligned > 0 {
            self.write_stage(aligned)?;
        }
        if aligned < self.staged {
            let tail = &self.stage[self.head + aligned..self.head + self.staged];
            self.buffered
                .write_all_at(tail, self.stage_at + aligned as u64)?;
        }
        self.stage_at += self.staged as u64;
        self.staged = 0;
        Ok(())
    }

    /// Writes the first `len` (aligned) staged bytes at `stage_at`; where the file system
    /// refuses direct writes, through the page cache, and so every write after.
    fn write_stage(&mut self, len: usize) -> io::Result<()> {
        let bytes = &self.stage[self.head..self.head + len];
        if let Some(direct) = &self.direct {
            match direct.write_all_at(bytes, self.stage_at) {
                Ok(()) => {
                    self.direct_bytes += len as u64;
                    return Ok(());
                }
                // EINVAL: this file system or device does not take these direct writes. A
                // part of the buffer may be written; the buffered write below rewrites it all.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("direct writes refused ({e}); writing through the page cache");
                    self.direct = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.buffered.write_all_at(bytes, self.stage_at)
    }
}

impl Drop for InOrderWriter {
    /// What is staged is written out on the way out of an error or a cancel too, so a resumed
    /// download keeps it (it is checked against its chunk IDs before it is kept).
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::debug!("staged bytes not written on the way out: {e}");
        }
    }
}

/// A second descriptor on `file` (named `path`) with `O_DIRECT`, if the file system takes it
/// and the name still leads to the same file.
fn open_direct(file: &File, path: &Path) -> Option<File> {
    let direct = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let (ours, theirs) = (file.metadata().ok()?, direct.metadata().ok()?);
    ((ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino())).then_some(direct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn file_of(len: u64) -> (tempfile::TempDir, std::path::PathBuf, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(len).unwrap();
        (dir, path, Arc::new(file))
    }

    fn contents(file: &File, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    /// Runs of pieces of odd sizes at odd offsets, with gaps (chunks kept from an earlier run),
    /// land exactly where they belong, most of them written direct.
    #[test]
    fn ordered_runs_with_gaps_land_in_place_mostly_direct() {
        let len = 3 * STAGE + 12_345;
        let (_dir, path, file) = file_of(len as u64);
        let whole = bytes(len, 7);
        // The "earlier run" wrote [1_000_000, 1_700_001) itself: prefill and skip it.
        let gap = 1_000_000..1_700_001;
        file.write_all_at(&whole[gap.clone()], gap.start as u64)
            .unwrap();
        let mut w = InOrderWriter::new(file.clone(), &path);
        let mut at = 0usize;
        let mut size = 1usize;
        while at < len {
            let end = (at + size).min(len);
            let piece = at..end;
            if piece.end <= gap.start || piece.start >= gap.end {
                w.write_at(&whole[piece.clone()], at as u64).unwrap();
            } else {
                // Split around the gap.
                if piece.start < gap.start {
                    w.write_at(&whole[piece.start..gap.start], piece.start as u64)
                        .unwrap();
                }
                if piece.end > gap.end {
                    w.write_at(&whole[gap.end..piece.end], gap.end as u64)
                        .unwrap();
                }
            }
            at = end;
            size = size * 7 % 1_500_007 + 3;
        }
        w.flush().unwrap();
        let (direct, took_direct) = (w.direct_bytes(), w.direct.is_some());
        drop(w);
        assert!(contents(&file, len) == whole, "the file differs");
        // Where the file system takes direct writes (not every tmpfs does).
        if took_direct {
            assert!(
                direct > (len as u64) * 3 / 4,
                "only {direct} of {len} bytes were written direct"
            );
        }
    }

    #[test]
    fn buffered_writer_writes_the_same() {
        let len = STAGE + 5;
        let (_dir, _path, file) = file_of(len as u64);
        let whole = bytes(len, 3);
        let mut w = InOrderWriter::buffered(file.clone());
        for (i, piece) in whole.chunks(999_999).enumerate() {
            w.write_at(piece, (i * 999_999) as u64).unwrap();
        }
        assert_eq!(w.direct_bytes(), 0);
        drop(w);
        assert!(contents(&file, len) == whole);
    }

    /// Bytes produced in the room `reserve` gives land where `write_at` would put them, mixed
    /// with `write_at` and across stage refills; bytes reserved but never committed are not
    /// written, not even when the writer is dropped.
    #[test]
    fn reserved_room_lands_in_place_and_uncommitted_bytes_never_do() {
        let len = 2 * STAGE + 777_777;
        let (_dir, path, file) = file_of(len as u64);
        let whole = bytes(len, 5);
        let mut w = InOrderWriter::new(file.clone(), &path);
        let direct = w.direct.is_some();
        let (mut at, mut size, mut i) = (0usize, 4093usize, 0usize);
        while at < len {
            let end = (at + size).min(len);
            let piece = &whole[at..end];
            match w.reserve(at as u64, piece.len()).unwrap() {
                Some(room) if i % 5 == 3 => {
                    // Produced, then refused: garbage that must not reach the file, and the
                    // same bytes written the other way after.
                    room.fill(0xEE);
                    w.write_at(piece, at as u64).unwrap();
                }
                Some(room) => {
                    room.copy_from_slice(piece);
                    w.commit(piece.len()).unwrap();
                }
                None => {
                    // Only the start of a run at an unaligned offset (or no direct writes).
                    assert!(!direct || at % ALIGN != 0 || piece.len() > STAGE - ALIGN);
                    w.write_at(piece, at as u64).unwrap();
                }
            }
            at = end;
            size = size * 13 % 1_999_993 + 1;
            i += 1;
        }
        // Reserved past the end and dropped uncommitted.
        if let Some(room) = w.reserve(len as u64, 10).unwrap() {
            room.fill(0xEE);
        }
        let direct_bytes = w.direct_bytes();
        drop(w);
        assert!(contents(&file, len) == whole, "the file differs");
        assert_eq!(file.metadata().unwrap().len(), len as u64);
        if direct {
            assert!(direct_bytes > (len as u64) / 2, "{direct_bytes} direct");
        }
    }

    /// What is staged when the writer is dropped (an error or a cancel) is in the file.
    #[test]
    fn dropping_writes_out_what_is_staged() {
        let len = 2 * ALIGN + 100;
        let (_dir, path, file) = file_of(len as u64);
        let whole = bytes(len, 9);
        let mut w = InOrderWriter::new(file.clone(), &path);
        w.write_at(&whole, 0).unwrap();
        drop(w);
        assert!(contents(&file, len) == whole);
    }
}
