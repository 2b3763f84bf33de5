//! Content-defined chunking (docs/format.md, "Chunks"): FastCDC 2020 with a seeded gear table,
//! streamed over any reader with memory bounded by about the maximum chunk size and two averages.

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
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        if let Ok(mut s) = self.spare.lock() {
            if s.len() < self.keep {
                s.push(buf);
            }
        }
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

/// A streaming chunker over a reader. Cuts exactly where
/// `FastCDC::with_level_and_seed(.., Normalization::Level1, seed)` cuts the whole input (where
/// the same `cut_gear` cuts a window of `max` bytes or the rest of the input), while holding at
/// most `max + min(2 * avg, max) + 1 MiB` bytes of it. Yields `io::Result<Chunk>`; stops after an error.
pub struct Chunker<R: Read> {
    source: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
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
    /// Where each chunk's buffer comes from.
    buffers: Option<Buffers>,
    /// The shorter window a cut is first looked for in (see [`Chunker::next_cut`]).
    quick: usize,
}

/// The most bytes read at a time beyond what the window needs.
const READ: usize = 1 << 20;

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
        let max = params.max as usize;
        let quick = (2 * params.avg as usize).min(max);
        Ok(Chunker {
            source,
            // Room for a window of `max` beyond the shorter one's bytes and one read: moving
            // the unconsumed bytes to the front then happens about every `max` bytes consumed.
            buf: vec![0; max + quick + READ],
            pos: 0,
            len: 0,
            offset: 0,
            eof: false,
            failed: false,
            min: params.min as usize,
            avg: params.avg as usize,
            max,
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
            gear,
            gear_ls,
            buffers: None,
            quick,
        })
    }

    /// Takes each chunk's buffer from `buffers` (where the caller gives it back when done).
    pub fn with_buffers(mut self, buffers: Buffers) -> Self {
        self.buffers = Some(buffers);
        self
    }

    /// Reads until the window holds `want` bytes or the input ends, at most [`READ`] more than
    /// that at a time.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while !self.eof && self.len - self.pos < want {
            if self.len == self.buf.len() {
                // Move the unconsumed bytes to the front. The window is usually about
                // `2 * avg` bytes, so this moves a small part of what was read.
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            }
            let need = want - (self.len - self.pos);
            let end = (self.len + need.max(READ)).min(self.buf.len());
            match self.source.read(&mut self.buf[self.len..end]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Where `cut_gear` cuts the window.
    fn cut(&self) -> usize {
        let window = &self.buf[self.pos..self.len];
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

    /// The next cut, the one `cut_gear` makes on a window of `max` bytes (or the rest of the
    /// input). It is first looked for in a shorter window of `2 * avg` bytes: `cut_gear` scans
    /// the same bytes in the same order with the same masks in both (the window is longer than
    /// `avg`), so a boundary it finds before the shorter window's end is the one it finds in the
    /// longer. Only when there is none is the window filled to `max` and scanned again.
    fn next_cut(&mut self) -> io::Result<usize> {
        self.fill(self.quick)?;
        let window = self.len - self.pos;
        if window == 0 || self.eof || window >= self.max {
            return Ok(if window == 0 { 0 } else { self.cut() });
        }
        if window > self.avg {
            let cut = self.cut();
            if cut < window {
                return Ok(cut);
            }
        }
        self.fill(self.max)?;
        Ok(self.cut())
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let cut = self.next_cut()?;
        if cut == 0 {
            return Ok(None);
        }
        let mut data = self
            .buffers
            .as_ref()
            .map(|b| b.take_for(cut))
            .unwrap_or_default();
        data.extend_from_slice(&self.buf[self.pos..self.pos + cut]);
        let chunk = Chunk {
            offset: self.offset,
            data,
        };
        self.pos += cut;
        self.offset += cut as u64;
        Ok(Some(chunk))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[path = "chunker_tests.rs"]
mod tests;
