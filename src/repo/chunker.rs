//! Content-defined chunking (docs/format.md, "Chunks"): FastCDC 2020 with a seeded gear table,
//! streamed over any reader with memory bounded by a few windows of 1.5 times the maximum chunk size.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use fastcdc::v2020::{self, Normalization};
use serde::{Deserialize, Serialize};

/// The chunker parameters of a repository's config (`"chunker":{"min":..,"avg":..,"max":..}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 1 MiB, 1 MiB, 8 MiB (docs/format.md 2.1). The gear hash runs only past the minimum, so a
    /// minimum as large as the average cuts its cost by about 40% beside 512 KiB (README,
    /// "Format 2 figures"); chunks average about 1.45 MiB.
    fn default() -> Self {
        ChunkerParams {
            min: 1024 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

/// Chunker parameters that fastcdc would refuse (it panics on them), as read from a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the repository config's chunker sizes (min {min}, avg {avg}, max {max}) are out of range: \
     they need {}..={} <= avg in {}..={} <= max in {}..={}, with min <= avg <= max; \
     the config is damaged or written by another tool",
    v2020::MINIMUM_MIN,
    v2020::MINIMUM_MAX,
    v2020::AVERAGE_MIN,
    v2020::AVERAGE_MAX,
    v2020::MAXIMUM_MIN,
    v2020::MAXIMUM_MAX
)]
pub struct BadChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkerParams {
    /// Checks the bounds fastcdc asserts, so a damaged config is an error, not a panic.
    pub fn validate(&self) -> Result<(), BadChunkerParams> {
        let ok = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&self.min)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&self.avg)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(BadChunkerParams {
                min: self.min,
                avg: self.avg,
                max: self.max,
            })
        }
    }
}

/// Byte buffers given back for reuse, shared between threads: a chunk's, a compressed body's or
/// a pack's buffer goes back here once its bytes are no longer needed and the next one takes it,
/// so a transfer's memory is allocated (and zeroed by the kernel) once, not once per chunk.
/// At most `keep` buffers wait here; more are freed.
#[derive(Clone, Debug)]
pub struct Buffers {
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    keep: usize,
}

impl Buffers {
    /// A pool keeping at most `keep` spare buffers.
    pub fn new(keep: usize) -> Self {
        Buffers {
            spare: Arc::new(Mutex::new(Vec::with_capacity(keep))),
            keep,
        }
    }

    /// A spare buffer (empty, unless given back by [`Buffers::give_as_is`]), or a new one.
    pub fn take(&self) -> Vec<u8> {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        spare.unwrap_or_default()
    }

    /// An empty buffer for `len` bytes: the spare one with the least capacity that holds them,
    /// else the largest spare (which grows), else a new one. Taking the best fit keeps each
    /// buffer near the size of what it holds, where taking any would grow them all, over a
    /// transfer, to its largest chunk.
    pub fn take_for(&self, len: usize) -> Vec<u8> {
        let Ok(mut spare) = self.spare.lock() else {
            return Vec::new();
        };
        let fits = (0..spare.len())
            .filter(|&i| spare[i].capacity() >= len)
            .min_by_key(|&i| spare[i].capacity());
        let pick = fits.or_else(|| (0..spare.len()).max_by_key(|&i| spare[i].capacity()));
        pick.map(|i| spare.swap_remove(i)).unwrap_or_default()
    }

    /// Gives `buf` back (emptied), or frees it when enough are waiting.
    pub fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        self.give_as_is(buf);
    }

    /// [`Buffers::give`] keeping `buf`'s bytes, for a taker that overwrites them before they
    /// count (a pack writer): its room is then not zeroed again.
    pub fn give_as_is(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        if let Ok(mut s) = self.spare.lock() {
            if s.len() < self.keep {
                s.push(buf);
            }
        }
    }

    /// Spare buffers waiting.
    pub fn spare(&self) -> usize {
        self.spare.lock().map_or(0, |s| s.len())
    }
}

/// One chunk: its offset in the stream and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The chunker's window of the input, shared by the chunks cut from it: it goes back to its
/// pool once the last of them is dropped.
struct Window {
    bytes: Vec<u8>,
    pool: Buffers,
}

impl Drop for Window {
    fn drop(&mut self) {
        self.pool.give_as_is(std::mem::take(&mut self.bytes));
    }
}

/// A chunk's bytes where the chunker read them: a range of its window, no copy.
#[derive(Clone)]
pub struct ChunkBytes {
    window: Arc<Window>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for ChunkBytes {
    // The range, not the window's megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkBytes({}..{})", self.start, self.end)
    }
}

impl std::ops::Deref for ChunkBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.window.bytes[self.start..self.end]
    }
}

/// [`Chunk`] with its bytes in the chunker's window ([`Chunker::next_shared`]).
#[derive(Debug, Clone)]
pub struct SharedChunk {
    pub offset: u64,
    pub data: ChunkBytes,
}

/// A streaming chunker over a reader. Cuts exactly where
/// `FastCDC::with_level_and_seed(.., Normalization::Level1, seed)` cuts the whole input (where
/// the same `cut_gear` cuts a window of `max` bytes or the rest of the input). It reads into
/// windows of `max + max / 2` bytes, each read full at once; chunks are ranges of a window
/// ([`Chunker::next_shared`]) or copies ([`Iterator`]). Only a chunk that runs past a window's
/// end is copied (its first part, into the next window), so about one chunk in eight.
/// Yields `io::Result<Chunk>`; stops after an error.
pub struct Chunker<R: Read> {
    source: R,
    window: Arc<Window>,
    /// Start of the unconsumed bytes in the window.
    pos: usize,
    /// End of the valid bytes in the window.
    len: usize,
    offset: u64,
    eof: bool,
    failed: bool,
    min: usize,
    avg: usize,
    max: usize,
    masks: [u64; 4],
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    /// Where each chunk's buffer comes from, for copied chunks.
    buffers: Option<Buffers>,
    /// Windows given back by the chunks that shared them.
    windows: Buffers,
}

impl<R: Read> Chunker<R> {
    /// A chunker with the repository's parameters and seed ([`super::crypto::Keys::chunker_seed`]).
    pub fn new(source: R, params: ChunkerParams, seed: u64) -> Result<Self, BadChunkerParams> {
        params.validate()?;
        // The masks FastCDC::with_level_and_seed picks for Normalization::Level1.
        let bits = v2020::logarithm2(params.avg);
        let level = Normalization::Level1.bits();
        let mask_s = v2020::MASKS[(bits + level) as usize];
        let mask_l = v2020::MASKS[(bits - level) as usize];
        let (gear, gear_ls) = v2020::get_gear_with_seed(seed);
        // Two windows: the one being cut and the one the chunks still in the pipeline hold.
        let windows = Buffers::new(2);
        Ok(Chunker {
            source,
            window: Arc::new(Window {
                bytes: Vec::new(),
                pool: windows.clone(),
            }),
            pos: 0,
            len: 0,
            offset: 0,
            eof: false,
            failed: false,
            min: params.min as usize,
            avg: params.avg as usize,
            max: params.max as usize,
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
            gear,
            gear_ls,
            buffers: None,
            windows,
        })
    }

    /// Takes each copied chunk's buffer from `buffers` (where the caller gives it back when done).
    pub fn with_buffers(mut self, buffers: Buffers) -> Self {
        self.buffers = Some(buffers);
        self
    }

    /// A window's size: room for a chunk of `max` bytes beside the unconsumed start of one
    /// that ran past the last window's end (always under `max`).
    fn window_size(&self) -> usize {
        self.max + self.max / 2
    }

    /// Moves the unconsumed bytes to the front of a window of the chunker's own (the current
    /// one's buffer when no chunk shares it any more, else a spare), then reads until it is full
    /// or the input ends.
    fn refill(&mut self) -> io::Result<()> {
        let keep = self.len - self.pos;
        let size = self.window_size();
        let mut bytes = match Arc::get_mut(&mut self.window) {
            Some(w) => {
                let mut bytes = std::mem::take(&mut w.bytes);
                bytes.resize(size, 0);
                bytes.copy_within(self.pos..self.len, 0);
                bytes
            }
            None => {
                let mut bytes = self.windows.take();
                // Zeroed only where the buffer never held anything: a reused window is full size.
                bytes.resize(size, 0);
                bytes[..keep].copy_from_slice(&self.window.bytes[self.pos..self.len]);
                bytes
            }
        };
        self.pos = 0;
        self.len = keep;
        let mut read = Ok(());
        while !self.eof && self.len < size {
            match self.source.read(&mut bytes[self.len..size]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        self.window = Arc::new(Window {
            bytes,
            pool: self.windows.clone(),
        });
        read
    }

    /// Where `cut_gear` cuts the unconsumed bytes.
    fn cut(&self) -> usize {
        let window = &self.window.bytes[self.pos..self.len];
        let [mask_s, mask_l, mask_s_ls, mask_l_ls] = self.masks;
        let (_, cut) = v2020::cut_gear(
            window,
            self.min,
            self.avg,
            self.max,
            mask_s,
            mask_l,
            mask_s_ls,
            mask_l_ls,
            &self.gear,
            &self.gear_ls,
        );
        // cut_gear returns 1..=window.len() for a non-empty window; guard anyway.
        cut.clamp(1, window.len())
    }

    /// The next cut (0 at the end), the one `cut_gear` makes on `max` bytes or the rest of the
    /// input. A cut found in fewer bytes is that cut when there are more than `avg` of them:
    /// `cut_gear` scans the same bytes in the same order with the same masks. Only when there
    /// is none are more bytes read (a chunk running past the window's end) and it looks again.
    fn next_cut(&mut self) -> io::Result<usize> {
        loop {
            let window = self.len - self.pos;
            if self.eof || window >= self.max {
                return Ok(if window == 0 { 0 } else { self.cut() });
            }
            if window > self.avg {
                let cut = self.cut();
                if cut < window {
                    return Ok(cut);
                }
            }
            self.refill()?;
        }
    }

    /// The next chunk as a range of the window, no copy; `None` at the end. The window is
    /// reused once every chunk of it is dropped, so memory stays about two windows.
    pub fn next_shared(&mut self) -> Option<io::Result<SharedChunk>> {
        if self.failed {
            return None;
        }
        let cut = match self.next_cut() {
            Ok(0) => return None,
            Ok(cut) => cut,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let chunk = SharedChunk {
            offset: self.offset,
            data: ChunkBytes {
                window: Arc::clone(&self.window),
                start: self.pos,
                end: self.pos + cut,
            },
        };
        self.pos += cut;
        self.offset += cut as u64;
        Some(Ok(chunk))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Chunk>;

    /// [`Chunker::next_shared`], copied into a buffer of its own.
    fn next(&mut self) -> Option<Self::Item> {
        let shared = self.next_shared()?;
        Some(shared.map(|c| {
            let mut data = self
                .buffers
                .as_ref()
                .map(|b| b.take_for(c.data.len()))
                .unwrap_or_default();
            data.extend_from_slice(&c.data);
            Chunk {
                offset: c.offset,
                data,
            }
        }))
    }
}

#[cfg(test)]
#[path = "chunker_tests.rs"]
mod tests;
