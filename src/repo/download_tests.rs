use super::*;

fn c(pack: u32, offset: u64, sealed_len: u32, plain_len: u32) -> ChunkRef {
    ChunkRef {
        id: [offset as u8; 32],
        pack,
        offset,
        sealed_len,
        plain_len,
        flags: 0,
    }
}

fn spans(groups: &[Group]) -> Vec<(u32, Range<u64>, Vec<usize>)> {
    groups
        .iter()
        .map(|g| {
            let idx = g.pieces.iter().map(|p| p.index).collect();
            (g.pack, g.range.clone(), idx)
        })
        .collect()
}

#[test]
fn adjacent_chunks_of_one_pack_share_a_request_in_file_order() {
    let chunks = [
        c(0, 0, 100, 90),
        c(0, 100, 50, 40),
        c(1, 0, 70, 60),
        c(1, 70, 30, 20),
        // Back in pack 0, but not where the last group of pack 0 ended.
        c(0, 300, 10, 10),
        c(0, 310, 10, 10),
        // Adjacent in the pack, but before the previous chunk: its own request.
        c(0, 290, 10, 10),
        // A repeated chunk: fetched again where it occurs.
        c(0, 0, 100, 90),
    ];
    let g = group(&chunks, MAX_RANGE);
    assert_eq!(
        spans(&g),
        vec![
            (0, 0..150, vec![0, 1]),
            (1, 0..100, vec![2, 3]),
            (0, 300..320, vec![4, 5]),
            (0, 290..300, vec![6]),
            (0, 0..100, vec![7]),
        ]
    );
    let offsets: Vec<u64> = g
        .iter()
        .flat_map(|g| g.pieces.iter().map(|p| p.file_offset))
        .collect();
    assert_eq!(offsets, vec![0, 90, 130, 190, 210, 220, 230, 240]);
}

#[test]
fn requests_stay_within_the_cap_in_sealed_and_in_plain_bytes() {
    let sealed: Vec<ChunkRef> = (0..10).map(|i| c(0, i * 40, 40, 10)).collect();
    let g = group(&sealed, 100);
    assert_eq!(
        spans(&g),
        vec![
            (0, 0..80, vec![0, 1]),
            (0, 80..160, vec![2, 3]),
            (0, 160..240, vec![4, 5]),
            (0, 240..320, vec![6, 7]),
            (0, 320..400, vec![8, 9]),
        ]
    );
    // Compressed chunks: few sealed bytes, many plain ones.
    let plain: Vec<ChunkRef> = (0..6).map(|i| c(0, i * 10, 10, 40)).collect();
    let g = group(&plain, 100);
    assert_eq!(g.len(), 3);
    assert!(g.iter().all(|g| g.plain_len() <= 100));
    // A chunk larger than the cap is a request alone.
    let big = [c(0, 0, 10, 10), c(0, 10, 500, 500), c(0, 510, 10, 10)];
    assert_eq!(
        spans(&group(&big, 100)),
        vec![
            (0, 0..10, vec![0]),
            (0, 10..510, vec![1]),
            (0, 510..520, vec![2])
        ]
    );
    assert!(group(&[], 100).is_empty());
}

fn manifest(chunks: Vec<ChunkRef>, size: u64) -> FileManifest {
    let mut f = FileManifest::fixture("abcdefghjk", size, 0);
    f.format = 2;
    f.layout.clear();
    f.sha256 = Some("0".repeat(64));
    f.packs = vec![PackRef {
        channel_id: 7,
        message_id: 1,
        attachment_id: 2,
        pack_id: [0; 16],
        size: 1000,
    }];
    f.chunks = chunks;
    f
}

#[test]
fn damaged_records_are_refused_before_any_request() {
    let ok = manifest(vec![c(0, 0, 100, 90), c(0, 100, 900, 10)], 100);
    check_manifest(&ok, &[7]).unwrap();
    let why = |f: &FileManifest, channels: &[u64]| match check_manifest(f, channels) {
        Err(RebuildError::Manifest { why, .. }) => why,
        other => panic!("{other:?}"),
    };
    assert!(why(&ok, &[8]).contains("not one of the configured channels"));
    let f = manifest(vec![c(1, 0, 100, 100)], 100);
    assert!(why(&f, &[7]).contains("names pack 1"));
    let f = manifest(vec![c(0, 950, 100, 100)], 100);
    assert!(why(&f, &[7]).contains("has only 1000 bytes"));
    let f = manifest(vec![c(0, u64::MAX - 5, 100, 100)], 100);
    assert!(why(&f, &[7]).contains("has only 1000 bytes"));
    let f = manifest(vec![c(0, 0, 100, 90)], 100);
    assert!(why(&f, &[7]).contains("hold 90 bytes"));
    let mut f = manifest(vec![c(0, 0, 100, 100)], 100);
    f.chunks[0].flags = 0x02;
    assert!(why(&f, &[7]).contains("newer dstore"));
    let mut f = manifest(vec![c(0, 0, 100, 100)], 100);
    f.sha256 = None;
    assert!(why(&f, &[7]).contains("SHA-256"));
    let text = check_manifest(&f, &[7]).unwrap_err().to_string();
    assert!(text.contains("recover"), "{text}");
}
