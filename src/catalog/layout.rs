//! The part layout of a file: which part index covers which byte range.
//!
//! A layout is a list of segments; inside a segment parts have one size, so index `i` maps to a
//! fixed offset and length. It is persisted in `file.json`, so the same index always means the
//! same bytes, even after a 413 forced smaller parts half-way (then the ranges not yet stored get
//! a new segment with new indices), and a part found on Discord by its name can be placed.

use serde::{Deserialize, Serialize};

/// Parts of `part_size` bytes from `offset` to `end`, numbered from `first_index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub offset: u64,
    pub end: u64,
    pub part_size: u64,
    pub first_index: u64,
}

/// One planned part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartSpan {
    pub index: u64,
    pub offset: u64,
    pub length: u64,
}

impl PartSpan {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

impl Segment {
    /// How many parts the segment holds; none for a degenerate one (read from a damaged
    /// `file.json`), so a bad layout fails the tiling check instead of panicking.
    pub fn count(&self) -> u64 {
        if self.part_size == 0 || self.end <= self.offset {
            return 0;
        }
        (self.end - self.offset).div_ceil(self.part_size)
    }

    pub fn parts(&self) -> impl Iterator<Item = PartSpan> + '_ {
        (0..self.count()).map(move |k| {
            let offset = self.offset + k * self.part_size;
            PartSpan {
                index: self.first_index + k,
                offset,
                length: self.part_size.min(self.end - offset),
            }
        })
    }
}

/// The layout of a new file: one segment (no parts at all for an empty file).
pub fn initial(size: u64, part_size: u64) -> Vec<Segment> {
    if size == 0 {
        return Vec::new();
    }
    vec![Segment {
        offset: 0,
        end: size,
        part_size,
        first_index: 0,
    }]
}

/// Why a layout read from disk cannot describe a file of `size` bytes, if it cannot: a
/// segment outside the file, with no part size, or with indices past `u64::MAX`.
pub fn problem(layout: &[Segment], size: u64) -> Option<String> {
    layout.iter().find_map(|s| {
        let bad = s.part_size == 0
            || s.offset >= s.end
            || s.end > size
            || s.first_index.checked_add(s.count()).is_none();
        bad.then(|| {
            format!(
                "its layout has a segment {}..{} of {}-byte parts that does not fit a file of {size} bytes",
                s.offset, s.end, s.part_size
            )
        })
    })
}

/// Every part of a layout, in offset order.
pub fn spans(layout: &[Segment]) -> Vec<PartSpan> {
    let mut all: Vec<PartSpan> = layout.iter().flat_map(|s| s.parts()).collect();
    all.sort_by_key(|p| p.offset);
    all
}

/// The first index no segment uses.
pub fn next_index(layout: &[Segment]) -> u64 {
    layout
        .iter()
        .map(|s| s.first_index.saturating_add(s.count()))
        .max()
        .unwrap_or(0)
}

/// A new layout for the byte ranges `stored` does not cover, in parts of `part_size`, numbered
/// after every index `old` used. `stored` are (offset, length) pairs.
pub fn relayout(old: &[Segment], stored: &[(u64, u64)], size: u64, part_size: u64) -> Vec<Segment> {
    let mut first_index = next_index(old);
    let mut segments = Vec::new();
    for (start, end) in gaps(stored, size) {
        let seg = Segment {
            offset: start,
            end,
            part_size,
            first_index,
        };
        first_index += seg.count();
        segments.push(seg);
    }
    segments
}

/// The ranges of `[0, size)` not covered by `stored`.
pub fn gaps(stored: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = stored.iter().map(|&(o, l)| (o, o + l)).collect();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for (s, e) in sorted {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < size {
        out.push((at, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries_give_the_right_part_count() {
        let count = |size, ps| spans(&initial(size, ps)).len();
        assert_eq!(count(0, 10), 0);
        assert_eq!(count(1, 10), 1);
        assert_eq!(count(10, 10), 1);
        assert_eq!(count(11, 10), 2);
        assert_eq!(count(19, 10), 2);
        assert_eq!(count(20, 10), 2);
        let last = *spans(&initial(21, 10)).last().unwrap();
        assert_eq!((last.index, last.offset, last.length), (2, 20, 1));
    }

    #[test]
    fn relayout_fills_gaps_with_fresh_indices() {
        let old = initial(100, 30); // 0..30 #0, 30..60 #1, 60..90 #2, 90..100 #3
        let stored = [(0, 30), (60, 30)];
        let new = relayout(&old, &stored, 100, 20);
        let parts = spans(&new);
        assert_eq!(
            parts,
            vec![
                PartSpan {
                    index: 4,
                    offset: 30,
                    length: 20
                },
                PartSpan {
                    index: 5,
                    offset: 50,
                    length: 10
                },
                PartSpan {
                    index: 6,
                    offset: 90,
                    length: 10
                },
            ]
        );
    }

    proptest! {
        #[test]
        fn parts_tile_the_file_exactly(size in 0u64..5000, ps in 1u64..700, cut in 0usize..20, ps2 in 1u64..300) {
            let first = initial(size, ps);
            let all = spans(&first);
            // Store every other part among the first `cut`, then relayout the rest.
            let stored: Vec<(u64, u64)> = all.iter().take(cut).step_by(2).map(|p| (p.offset, p.length)).collect();
            let second = relayout(&first, &stored, size, ps2);
            let mut pieces: Vec<(u64, u64)> = stored.clone();
            pieces.extend(spans(&second).iter().map(|p| (p.offset, p.length)));
            pieces.sort_unstable();
            let mut at = 0;
            for (o, l) in pieces {
                prop_assert_eq!(o, at);
                prop_assert!(l > 0);
                at = o + l;
            }
            prop_assert_eq!(at, size);
            let used: Vec<u64> = all.iter().map(|p| p.index).collect();
            for p in spans(&second) {
                prop_assert!(!used.contains(&p.index));
            }
        }
    }
}
