use super::*;
use crate::catalog::{ChunkRef, PackRef};
use crate::repo::crypto::{ObjectKind, RepoId};
use crate::repo::keys::MasterKey;

fn keys() -> Keys {
    Keys::derive(&MasterKey::random(), RepoId::random())
}

fn entry(chunks: usize, packs: usize) -> Entry {
    let packs: Vec<PackRef> = (0..packs)
        .map(|p| PackRef {
            channel_id: 7,
            message_id: 100 + p as u64,
            attachment_id: 200 + p as u64,
            pack_id: [p as u8; 16],
            size: 10_000_000,
        })
        .collect();
    let chunks: Vec<ChunkRef> = (0..chunks)
        .map(|c| ChunkRef {
            id: [(c % 251) as u8; 32],
            pack: (c % packs.len()) as u32,
            offset: 1000 * c as u64 % 9_000_000,
            sealed_len: 1040,
            plain_len: 1000,
            flags: 0,
        })
        .collect();
    Entry {
        format: ENTRY_FORMAT,
        kind: "entry".into(),
        id: "k3f9x2ab7q".into(),
        version: 1,
        name: "movie.mkv".into(),
        size: 1000 * chunks.len() as u64,
        mtime: OffsetDateTime::UNIX_EPOCH,
        mode: Some(0o644),
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        created_at: OffsetDateTime::UNIX_EPOCH,
        hidden: false,
        packs,
        chunks,
        pieces: Vec::new(),
    }
}

#[test]
fn a_small_entry_is_sealed_whole_and_opens_only_with_its_keys() {
    let k = keys();
    let e = entry(5, 2);
    let split = seal(&k, &e, 1 << 20).unwrap();
    assert!(split.pieces.is_empty());
    let head = split.head(&k, &[]).unwrap();
    assert_eq!(head.name, k.object_name(ObjectKind::Entry, &e.id, 1));
    assert_eq!(k.name_kind(&head.name), Some(ObjectKind::Entry));
    let text = String::from_utf8_lossy(&head.bytes);
    assert!(
        !text.contains("movie") && !text.contains("9f86d0"),
        "sealed"
    );
    match open(&k, &head.bytes).unwrap() {
        Opened::Entry(got) => {
            assert_eq!(got, e);
            got.check(&[7]).unwrap();
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        open(&keys(), &head.bytes),
        Err(EntryError::Open(_))
    ));
}

#[test]
fn a_large_entry_splits_into_pieces_that_join_back() {
    let k = keys();
    let e = entry(3000, 40);
    let split = seal(&k, &e, 64 * 1024).unwrap();
    assert!(split.pieces.len() > 1, "{} pieces", split.pieces.len());
    assert!(split.pieces.iter().all(|p| p.bytes.len() <= 64 * 1024));
    let posted: Vec<(u64, u64, u64)> = (0..split.pieces.len() as u64)
        .map(|n| (7, 500 + n, 600 + n))
        .collect();
    let head = split.head(&k, &posted).unwrap();
    assert!(head.bytes.len() <= 64 * 1024);
    let Opened::Entry(h) = open(&k, &head.bytes).unwrap() else {
        panic!()
    };
    assert!(h.chunks.is_empty() && h.pieces.len() == split.pieces.len());
    assert_eq!(
        h.pieces[0].sha256,
        crate::hash::sha256_hex(&split.pieces[0].bytes)
    );
    let pieces: Vec<Piece> = split
        .pieces
        .iter()
        .map(|p| match open(&k, &p.bytes).unwrap() {
            Opened::Piece(p) => p,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut reversed = pieces.clone();
    reversed.reverse();
    assert!(
        join(h.clone(), reversed).is_err(),
        "pieces out of order are refused"
    );
    let joined = join(h, pieces).unwrap();
    joined.check(&[7]).unwrap();
    let resolve = |e: &Entry| {
        e.chunks
            .iter()
            .map(|c| (c.id, e.packs[c.pack as usize].message_id, c.offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(resolve(&joined), resolve(&e));
}

#[test]
fn checks_refuse_what_no_writer_produces() {
    let ok = entry(4, 2);
    ok.check(&[7]).unwrap();
    type Edit = Box<dyn Fn(&mut Entry)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("size", Box::new(|e| e.size += 1)),
        ("pack index", Box::new(|e| e.chunks[0].pack = 9)),
        (
            "outside",
            Box::new(|e| e.chunks[1].offset = e.packs[0].size),
        ),
        ("channel", Box::new(|e| e.packs[1].channel_id = 8)),
        ("name", Box::new(|e| e.name = "../etc/passwd".into())),
        ("id", Box::new(|e| e.id = "x".into())),
        ("sha", Box::new(|e| e.sha256 = "abc".into())),
    ];
    for (what, f) in cases {
        let mut e = ok.clone();
        f(&mut e);
        assert!(
            matches!(e.check(&[7]), Err(EntryError::Invalid(_))),
            "{what}"
        );
    }
}

#[test]
fn a_newer_entry_is_refused_as_newer() {
    let k = keys();
    let sealed = k.seal_entry(br#"{"format":3,"kind":"entry"}"#);
    assert!(matches!(open(&k, &sealed), Err(EntryError::Newer(3))));
    let sealed = k.seal_entry(b"not json");
    assert!(matches!(open(&k, &sealed), Err(EntryError::Json(_))));
}
