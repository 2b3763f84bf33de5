//! The part layout of a file: which part index covers which byte range.
//!
//! A layout is a list of segments; inside a segment parts have one size, so index `i` maps to a
//! fixed offset and length. It is persisted in `file.json`, so the same index always means the
//! same bytes, even after a 413 forced smaller parts half-way: then the ranges not yet stored get
//! new segments with new indices, appended after the old ones, which stay, so a part found on
//! Discord by its name can always be placed. Later segments win over earlier ones where they
//! overlap: the parts a layout plans are those no later segment covers (see [`planned`]).

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
                index: self.first_index.saturating_add(k),
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

/// Every part of a layout, in offset order, superseded ones included.
pub fn spans(layout: &[Segment]) -> Vec<PartSpan> {
    let mut all: Vec<PartSpan> = layout.iter().flat_map(|s| s.parts()).collect();
    all.sort_by_key(|p| p.offset);
    all
}

/// The parts a layout plans, in offset order: those of each segment that no later segment
/// overlaps. After [`relayout`] that is the parts stored before the shrink plus the new parts
/// for the gaps, a tiling of the file.
pub fn planned(layout: &[Segment]) -> Vec<PartSpan> {
    let mut all: Vec<PartSpan> = layout
        .iter()
        .enumerate()
        .flat_map(|(i, seg)| {
            let later = &layout[i + 1..];
            seg.parts()
                .filter(move |p| !later.iter().any(|l| p.offset < l.end && l.offset < p.end()))
        })
        .collect();
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

/// The layout after a shrink: `old` kept whole, then segments for the byte ranges `stored` does
/// not cover, in parts of `part_size`, numbered after every index `old` used. `stored` are the
/// (offset, length) pairs of the parts Discord holds, each a part `old` plans.
pub fn relayout(old: &[Segment], stored: &[(u64, u64)], size: u64, part_size: u64) -> Vec<Segment> {
    let mut first_index = next_index(old);
    let mut segments = old.to_vec();
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

    fn span(index: u64, offset: u64, length: u64) -> PartSpan {
        PartSpan {
            index,
            offset,
            length,
        }
    }

    #[test]
    fn relayout_fills_gaps_with_fresh_indices_and_keeps_the_old_segments() {
        let old = initial(100, 30); // 0..30 #0, 30..60 #1, 60..90 #2, 90..100 #3
        let stored = [(0, 30), (60, 30)];
        let new = relayout(&old, &stored, 100, 20);
        assert_eq!(
            new[0], old[0],
            "the old segment stays, so #0 and #2 can be placed"
        );
        assert_eq!(
            planned(&new),
            vec![
                span(0, 0, 30),
                span(4, 30, 20),
                span(5, 50, 10),
                span(2, 60, 30),
                span(6, 90, 10),
            ]
        );
        assert_eq!(spans(&new).len(), 4 + 3, "every index keeps its place");
    }

    /// Part `index` placed by a segment lookup, as `FileManifest::span` does it.
    fn placed(layout: &[Segment], index: u64) -> Option<PartSpan> {
        layout
            .iter()
            .find(|s| index >= s.first_index && index - s.first_index < s.count())
            .and_then(|s| s.parts().nth((index - s.first_index) as usize))
    }

    proptest! {
        /// Several shrinks, each storing some of the planned parts first: the plan always
        /// tiles the file, keeps every stored part, never reuses an index, and every part ever
        /// planned can still be placed by its index.
        #[test]
        fn parts_tile_the_file_exactly_across_shrinks(
            size in 0u64..5000,
            ps in 1u64..700,
            rounds in proptest::collection::vec((0usize..20, 1u64..300), 1..4),
        ) {
            let mut layout = initial(size, ps);
            let mut stored: Vec<PartSpan> = Vec::new();
            let mut ever: Vec<PartSpan> = spans(&layout);
            for (cut, ps2) in rounds {
                // Store every other pending part among the first `cut`, then shrink.
                let pending: Vec<PartSpan> = planned(&layout)
                    .into_iter()
                    .filter(|p| !stored.contains(p))
                    .collect();
                stored.extend(pending.iter().take(cut).step_by(2));
                let pairs: Vec<(u64, u64)> = stored.iter().map(|p| (p.offset, p.length)).collect();
                let before = next_index(&layout);
                let next = relayout(&layout, &pairs, size, ps2);
                prop_assert_eq!(&next[..layout.len()], &layout[..]);
                for p in spans(&next[layout.len()..]) {
                    prop_assert!(p.index >= before, "index {} reused", p.index);
                }
                layout = next;
                ever.extend(spans(&layout));
                let plan = planned(&layout);
                let mut at = 0;
                for p in &plan {
                    prop_assert_eq!(p.offset, at);
                    prop_assert!(p.length > 0);
                    at = p.end();
                }
                prop_assert_eq!(at, size);
                for p in &stored {
                    prop_assert!(plan.contains(p), "stored part {:?} is planned", p);
                }
            }
            for p in ever {
                prop_assert_eq!(placed(&layout, p.index), Some(p));
            }
        }
    }
}
