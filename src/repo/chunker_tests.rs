use super::*;
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};

const SMALL: ChunkerParams = ChunkerParams {
    min: 1024,
    avg: 4096,
    max: 16384,
};

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn chunks(data: &[u8], params: ChunkerParams, seed: u64) -> Vec<Chunk> {
    Chunker::new(data, params, seed)
        .unwrap()
        .collect::<io::Result<Vec<_>>>()
        .unwrap()
}

/// A reader that returns at most `step` bytes per read, to exercise refilling.
struct Trickle<'a>(&'a [u8], usize);
impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(out.len()).min(self.1);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn cuts_where_fastcdc_with_level_and_seed_cuts() {
    let data = random(1 << 20, 1);
    for seed in [0u64, 7, 0xdead_beef_1234_5678] {
        let ours: Vec<(u64, usize)> = Chunker::new(Trickle(&data, 3000), SMALL, seed)
            .unwrap()
            .map(|c| c.map(|c| (c.offset, c.data.len())).unwrap())
            .collect();
        let theirs: Vec<(u64, usize)> = v2020::FastCDC::with_level_and_seed(
            &data,
            SMALL.min,
            SMALL.avg,
            SMALL.max,
            Normalization::Level1,
            seed,
        )
        .map(|c| (c.offset as u64, c.length))
        .collect();
        assert_eq!(ours, theirs, "seed {seed}");
    }
}

/// Chunks handed out as ranges of the window are the copied ones, cut for cut; chunks cut one
/// after the other from a window lie side by side in it (no copy); and chunks still held keep
/// their bytes while the chunker reads on through later windows.
#[test]
fn shared_chunks_are_ranges_of_the_window_and_stay_whole_while_held() {
    let data = random(1 << 20, 3);
    let want = chunks(&data, SMALL, 9);
    let mut cutter = Chunker::new(Trickle(&data, 5000), SMALL, 9).unwrap();
    let (mut got, mut held, mut adjacent) = (Vec::new(), Vec::new(), 0);
    let mut last: Option<SharedChunk> = None;
    while let Some(c) = cutter.next_shared() {
        let c = c.unwrap();
        got.push(Chunk {
            offset: c.offset,
            data: c.data.to_vec(),
        });
        if let Some(l) = &last {
            adjacent += usize::from(l.data.as_ptr().wrapping_add(l.data.len()) == c.data.as_ptr());
        }
        if c.offset % 5 == 0 || held.len() < 3 {
            held.push(c.clone());
        }
        last = Some(c);
    }
    assert_eq!(got, want);
    assert!(
        adjacent * 2 > want.len(),
        "{adjacent} of {} side by side",
        want.len()
    );
    for h in &held {
        let at = h.offset as usize;
        assert_eq!(&h.data[..], &data[at..at + h.data.len()]);
    }
}

/// Chunks cut into reused buffers are the same chunks; each buffer given back is taken again,
/// and the pool keeps no more than it was told.
#[test]
fn reused_buffers_give_the_same_chunks() {
    let data = random(1 << 20, 2);
    let want = chunks(&data, SMALL, 5);
    let pool = Buffers::new(2);
    let mut got = Vec::new();
    let mut cutter = Chunker::new(&data[..], SMALL, 5)
        .unwrap()
        .with_buffers(pool.clone());
    let mut reused = 0;
    while let Some(c) = cutter.next() {
        let c = c.unwrap();
        got.push((c.offset, c.data.clone()));
        let ptr = c.data.as_ptr();
        pool.give(c.data);
        assert_eq!(pool.spare(), 1);
        let next = cutter.next();
        if let Some(Ok(n)) = next {
            reused += usize::from(n.data.as_ptr() == ptr);
            got.push((n.offset, n.data.clone()));
            pool.give(n.data);
        }
    }
    let want: Vec<(u64, Vec<u8>)> = want.into_iter().map(|c| (c.offset, c.data)).collect();
    assert_eq!(got, want);
    assert!(reused > 0);
    for _ in 0..5 {
        pool.give(vec![0; 10]);
    }
    assert_eq!(pool.spare(), 2);
    pool.give(Vec::new());
    assert_eq!((pool.take().len(), pool.take().len()), (0, 0));
    assert_eq!(pool.spare(), 0);
}

/// A buffer is taken by best fit: the smallest spare that holds the bytes, else the largest
/// spare, so buffers keep near the size of what they hold.
#[test]
fn buffers_are_taken_by_best_fit() {
    let pool = Buffers::new(4);
    for cap in [1 << 20, 4 << 20, 2 << 20] {
        pool.give(Vec::with_capacity(cap));
    }
    let fit = pool.take_for(1_500_000);
    assert!(
        (2 << 20..4 << 20).contains(&fit.capacity()),
        "{}",
        fit.capacity()
    );
    let small = pool.take_for(1000);
    assert!(small.capacity() < 2 << 20, "{}", small.capacity());
    let last = pool.take_for(8 << 20);
    assert!(
        last.capacity() >= 4 << 20,
        "the largest spare when none holds the bytes"
    );
    assert_eq!(
        pool.take_for(1).capacity(),
        0,
        "a new one when none is spare"
    );
}

#[test]
fn different_seeds_cut_differently() {
    let data = random(1 << 20, 2);
    let a: Vec<u64> = chunks(&data, SMALL, 1).iter().map(|c| c.offset).collect();
    let b: Vec<u64> = chunks(&data, SMALL, 2).iter().map(|c| c.offset).collect();
    assert_ne!(a, b);
    let common = a.iter().filter(|o| b.contains(o)).count();
    assert!(
        common < a.len() / 4,
        "{common} of {} boundaries shared",
        a.len()
    );
}

#[test]
fn empty_input_has_no_chunks() {
    assert!(chunks(&[], SMALL, 1).is_empty());
}

#[test]
fn zeros_cut_at_max() {
    let data = vec![0u8; 5 * SMALL.max as usize + 10];
    let c = chunks(&data, SMALL, 0);
    assert_eq!(c.len(), 6);
    assert!(c[..5].iter().all(|c| c.data.len() == SMALL.max as usize));
}

#[test]
fn bad_params_are_an_error_not_a_panic() {
    for p in [
        ChunkerParams {
            min: 0,
            avg: 4096,
            max: 16384,
        },
        ChunkerParams {
            min: 8192,
            avg: 4096,
            max: 16384,
        },
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: u32::MAX,
        },
        ChunkerParams {
            min: 1024,
            avg: 65536,
            max: 16384,
        },
    ] {
        let e = Chunker::new(&[][..], p, 0).err().unwrap();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
    ChunkerParams::default().validate().unwrap();
}

#[test]
fn a_read_error_is_yielded_once() {
    struct Fails;
    impl Read for Fails {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk gone"))
        }
    }
    let mut c = Chunker::new(Fails, SMALL, 0).unwrap();
    assert!(c.next().unwrap().is_err());
    assert!(c.next().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn chunks_concatenate_to_the_input_within_bounds(
        len in 0usize..200_000, seed in any::<u64>(), step in 1usize..70_000,
    ) {
        let data = random(len, seed);
        let c: Vec<Chunk> = Chunker::new(Trickle(&data, step), SMALL, seed)
            .unwrap().collect::<io::Result<_>>().unwrap();
        let mut joined = Vec::new();
        for (i, ch) in c.iter().enumerate() {
            prop_assert_eq!(ch.offset, joined.len() as u64);
            prop_assert!(ch.data.len() <= SMALL.max as usize);
            if i + 1 < c.len() {
                prop_assert!(ch.data.len() >= SMALL.min as usize);
            }
            joined.extend_from_slice(&ch.data);
        }
        prop_assert_eq!(joined, data);
    }

    #[test]
    fn boundaries_are_stable_under_an_insertion(
        seed in any::<u64>(), at in 100_000usize..400_000, ins in 1usize..20_000,
    ) {
        let data = random(500_000, seed);
        let mut edited = data[..at].to_vec();
        edited.extend_from_slice(&random(ins, seed ^ 1));
        edited.extend_from_slice(&data[at..]);
        let before = chunks(&data, SMALL, seed);
        let after = chunks(&edited, SMALL, seed);
        // Content positions of the cuts, the edited file's mapped back past the insertion.
        let (at, ins) = (at as u64, ins as u64);
        let cuts_before: std::collections::BTreeSet<u64> =
            before.iter().map(|c| c.offset + c.data.len() as u64).collect();
        let cuts_after: std::collections::BTreeSet<u64> = after
            .iter()
            .map(|c| c.offset + c.data.len() as u64)
            .filter_map(|e| if e <= at { Some(e) } else if e >= at + ins { Some(e - ins) } else { None })
            .collect();
        // Chunks ending before the insertion are untouched (strictly before: FastCDC 2020 rolls
        // two bytes a step, so a cut may have looked at the byte just after it).
        for c in before.iter().filter(|c| c.offset + (c.data.len() as u64) < at) {
            prop_assert!(after.iter().any(|a| a.offset == c.offset && a.data == c.data));
        }
        // The cut is a function of the bytes since the previous cut only, so from the first cut
        // both share past the insertion (the end of the file at the latest) every chunk is the
        // same, shifted by the insertion.
        let resync = *cuts_before
            .range(at + 1..)
            .find(|e| cuts_after.contains(e))
            .expect("the end of the file is a cut in both");
        for c in before.iter().filter(|c| c.offset >= resync) {
            prop_assert!(
                after.iter().any(|a| a.offset == c.offset + ins && a.data == c.data),
                "chunk at {} lost after resynchronising at {}", c.offset, resync
            );
        }
        // And that cut comes soon: a run of many chunks without one is vanishingly unlikely
        // (each cut of the original is shared with a fair chance), so most chunks survive.
        let kept = before.iter().filter(|c| c.offset >= resync || c.offset + (c.data.len() as u64) < at).count();
        prop_assert!(kept * 2 >= before.len(), "{kept} of {} kept, resynchronised at {resync}", before.len());
        prop_assert!(before.len() > 10);
    }
}
