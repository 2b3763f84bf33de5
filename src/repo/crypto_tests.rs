//! Tests of sealing, IDs and names: round trips, tampering, and known answers computed outside
//! this code (published vectors, and HKDF computed with Python's hmac module).

use super::*;
use proptest::prelude::*;

fn master() -> MasterKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    MasterKey::from_bytes(k)
}

fn repo() -> RepoId {
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = 0xa0 + i as u8;
    }
    RepoId(id)
}

fn keys() -> Keys {
    Keys::derive(&master(), repo())
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

fn sealing(k: &Keys) -> &Sealing {
    k.sealing.as_ref().unwrap()
}

// ---- Known answers ----

/// HKDF-SHA256(ikm = 00..1f, salt = a0..af, info) computed independently with Python's hmac:
/// `prk = hmac(salt, ikm); okm = hmac(prk, info || 0x01)`.
const KAT_ID_KEY: &str = "e163a4b4bd840f9d6390abe3a90c0195f0f3425fca3ed57267ef27659589e83b";
const KAT_DATA_KEY: &str = "af507d4918fb143e9ac5522c254349e06a122c95c59440fcf8be8a1511e99ccd";
const KAT_CAT_KEY: &str = "20548f09cb68e2bd7f88cc24c84ce0f9c5b0b1fa768e7b808db3a44d9c4beb6f";
const KAT_NAME_KEY: &str = "0f70bc5d0fac95557366ddd06fe06f0883189636a9ae66ab7eb28c810b1c339b";
const KAT_CHUNKER_SEED: u64 = 12293393912967798670;

#[test]
fn subkeys_match_independent_hkdf() {
    let k = keys();
    assert_eq!(sealing(&k).id_key, unhex::<32>(KAT_ID_KEY));
    assert_eq!(k.name_key, unhex::<32>(KAT_NAME_KEY));
    assert_eq!(k.chunker_seed(), KAT_CHUNKER_SEED);
    // The AEAD keys are inside their ciphers: compare what they seal under one nonce.
    let nonce = [7u8; NONCE_LEN];
    for (aead, want) in [
        (&sealing(&k).data, KAT_DATA_KEY),
        (&sealing(&k).catalogue, KAT_CAT_KEY),
    ] {
        let reference = XChaCha::new(unhex::<32>(want));
        assert_eq!(
            seal_with_nonce(aead, b"ad", b"body", &nonce),
            seal_with_nonce(&reference, b"ad", b"body", &nonce)
        );
    }
}

#[test]
fn subkeys_are_distinct_and_depend_on_master_and_repo() {
    let k = keys();
    let s = sealing(&k);
    let all = [
        s.id_key,
        k.name_key,
        unhex::<32>(KAT_DATA_KEY),
        unhex::<32>(KAT_CAT_KEY),
    ];
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert_ne!(all[i], all[j]);
        }
    }
    let other_repo = Keys::derive(&master(), RepoId([1; 16]));
    let other_master = Keys::derive(&MasterKey::from_bytes([9; 32]), repo());
    for o in [other_repo, other_master] {
        assert_ne!(sealing(&o).id_key, s.id_key);
        assert_ne!(o.name_key, k.name_key);
        assert_ne!(o.chunker_seed(), k.chunker_seed());
    }
}

/// Whole sealed objects computed independently in Python (HKDF with `hmac`, HChaCha20 written out
/// from draft-irtf-cfrg-xchacha section 2.2, ChaCha20-Poly1305 from `cryptography`), with the
/// master key and repo_id above and the nonce 0x11 * 24.
const KAT_NONCE: [u8; NONCE_LEN] = [0x11; NONCE_LEN];
const KAT_BLOB: &str = "111111111111111111111111111111111111111111111111\
                        f0cc300efffb319027af2927cbdd923c79be6fe934ae1a8112d6";
const KAT_HEADER: &str = "111111111111111111111111111111111111111111111111\
                          91a44560942ed9656f0467681cae3a32c222234ba3";
const KAT_ENTRY: &str = "111111111111111111111111111111111111111111111111\
                         291a7b4848420795072f0481802be8ff89cd0cf4d4fcf294f1b307b4";

#[test]
fn sealed_objects_match_an_independent_implementation() {
    let k = keys();
    let s = sealing(&k);
    let cid = [0x22u8; 32];
    let blob = hex::decode(KAT_BLOB).unwrap();
    assert_eq!(k.open_blob(&cid, 1, &blob).unwrap(), b"chunk body");
    assert_eq!(
        seal_with_nonce(&s.data, &k.blob_ad(&cid, 1), b"chunk body", &KAT_NONCE),
        blob
    );
    let header = hex::decode(KAT_HEADER).unwrap();
    assert_eq!(k.open_header(&header).unwrap(), b"\x02\0\0\0\0");
    assert_eq!(
        seal_with_nonce(&s.data, &k.ad(AD_HEADER), b"\x02\0\0\0\0", &KAT_NONCE),
        header
    );
    let entry = hex::decode(KAT_ENTRY).unwrap();
    assert_eq!(k.open_entry(&entry).unwrap(), br#"{"name":"a"}"#);
    assert_eq!(
        seal_with_nonce(
            &s.catalogue,
            &k.ad(AD_ENTRY),
            br#"{"name":"a"}"#,
            &KAT_NONCE
        ),
        entry
    );
}

/// draft-irtf-cfrg-xchacha-03, appendix A.3.1.
#[test]
fn xchacha20poly1305_matches_draft_vector() {
    let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
    let nonce: [u8; 24] = core::array::from_fn(|i| 0x40 + i as u8);
    let ad = [
        0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    ];
    let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ciphertext = "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
                      731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
                      2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
                      21f9664c97637da9768812f615c68b13b52e";
    let tag = "c0875924c1c7987947deafd8780acf49";
    let aead = XChaCha::new(key);
    let sealed = seal_with_nonce(&aead, &ad, plain, &nonce);
    let want = format!("{}{ciphertext}{tag}", hex::encode(nonce));
    assert_eq!(hex::encode(&sealed), want);
    assert_eq!(open(&aead, &ad, &sealed).unwrap(), plain);
}

/// BLAKE3 test_vectors.json: key "whats the Elvish word for friend", inputs of 0 and 1 bytes.
#[test]
fn blake3_keyed_matches_published_vectors() {
    let key = b"whats the Elvish word for friend";
    assert_eq!(
        blake3::keyed_hash(key, &[]).to_hex().as_str(),
        "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"
    );
    assert_eq!(
        blake3::keyed_hash(key, &[0]).to_hex().as_str(),
        "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"
    );
}

#[test]
fn chunk_id_is_keyed_blake3_or_sha256() {
    let k = keys();
    assert_eq!(
        k.chunk_id(b"abc"),
        *blake3::keyed_hash(&unhex::<32>(KAT_ID_KEY), b"abc").as_bytes()
    );
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    let plain = Keys::unencrypted(repo(), 5);
    assert_eq!(
        hex::encode(plain.chunk_id(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_ne!(k.chunk_id(b"abc"), plain.chunk_id(b"abc"));
    assert!(k.verify_chunk(&k.chunk_id(b"abc"), b"abc").is_ok());
    assert_eq!(
        k.verify_chunk(&k.chunk_id(b"abc"), b"abd"),
        Err(CryptoError::ChunkId)
    );
}

#[test]
fn pack_id_is_a_truncated_keyed_hash_of_the_length_and_the_sealed_header() {
    let k = keys();
    // blobs "BLOBS", sealed header "HDR", trailer header_len = 3.
    let pack = [&b"BLOBS"[..], b"HDR", &3u32.to_le_bytes()].concat();
    let mut tail = b"pack".to_vec();
    tail.extend_from_slice(&(pack.len() as u64).to_le_bytes());
    tail.extend_from_slice(b"HDR");
    tail.extend_from_slice(&3u32.to_le_bytes());
    let keyed = |m: &[u8]| {
        let mut h = blake3::Hasher::new_keyed(&unhex::<32>(KAT_ID_KEY));
        h.update(m);
        h.finalize().as_bytes()[..16].to_vec()
    };
    assert_eq!(k.pack_id(&pack)[..], keyed(&tail)[..]);
    let plain = Keys::unencrypted(repo(), 5);
    let sha = ring::digest::digest(&ring::digest::SHA256, &tail);
    assert_eq!(plain.pack_id(&pack)[..], sha.as_ref()[..16]);

    // A blob's bytes are checked by its own tag, not by the pack ID; the header, the trailer
    // and the length are.
    let mut blob = pack.clone();
    blob[0] ^= 1;
    assert_eq!(k.pack_id(&blob), k.pack_id(&pack));
    let mut header = pack.clone();
    header[6] ^= 1;
    assert_ne!(k.pack_id(&header), k.pack_id(&pack));
    let longer = [&b"XBLOBS"[..], b"HDR", &3u32.to_le_bytes()].concat();
    assert_ne!(k.pack_id(&longer), k.pack_id(&pack));

    // A trailer pointing outside the pack, or no trailer at all: the whole pack is hashed.
    let bad = [&b"AB"[..], &9u32.to_le_bytes()].concat();
    let mut whole = b"pack".to_vec();
    whole.extend_from_slice(&(bad.len() as u64).to_le_bytes());
    whole.extend_from_slice(&bad);
    assert_eq!(k.pack_id(&bad)[..], keyed(&whole)[..]);
    let mut short = b"pack".to_vec();
    short.extend_from_slice(&2u64.to_le_bytes());
    short.extend_from_slice(b"AB");
    assert_eq!(k.pack_id(b"AB")[..], keyed(&short)[..]);
}

// ---- Seal and open ----

#[test]
fn sealed_blob_has_the_layout_and_associated_data_of_the_format() {
    let k = keys();
    let id = k.chunk_id(b"plain");
    let sealed = k.seal_blob(&id, 1, b"body");
    assert_eq!(sealed.len(), 4 + SEAL_OVERHEAD);
    let mut ad = b"dstore v2 chunk".to_vec();
    ad.extend_from_slice(&repo().0);
    ad.extend_from_slice(&id);
    ad.push(1);
    let reference = XChaCha::new(unhex::<32>(KAT_DATA_KEY));
    assert_eq!(open(&reference, &ad, &sealed).unwrap(), b"body");

    let mut hd = b"dstore v2 pack header".to_vec();
    hd.extend_from_slice(&repo().0);
    assert_eq!(open(&reference, &hd, &k.seal_header(b"h")).unwrap(), b"h");

    let mut ed = b"dstore v2 entry".to_vec();
    ed.extend_from_slice(&repo().0);
    let cat = XChaCha::new(unhex::<32>(KAT_CAT_KEY));
    assert_eq!(open(&cat, &ed, &k.seal_entry(b"{}")).unwrap(), b"{}");
}

#[test]
fn seal_blob_into_appends_to_a_pack() {
    for k in [keys(), Keys::unencrypted(repo(), 1)] {
        let (a, b) = (k.chunk_id(b"first"), k.chunk_id(b"second"));
        let mut pack = b"prefix".to_vec();
        let la = k.seal_blob_into(&a, 0, b"first", &mut pack);
        let lb = k.seal_blob_into(&b, 1, b"second", &mut pack);
        assert_eq!((la, lb), (5 + k.overhead(), 6 + k.overhead()));
        assert_eq!(pack.len(), 6 + la + lb);
        assert_eq!(&pack[..6], b"prefix");
        assert_eq!(k.open_blob(&a, 0, &pack[6..6 + la]).unwrap(), b"first");
        assert_eq!(k.open_blob(&b, 1, &pack[6 + la..]).unwrap(), b"second");
    }
}

#[test]
fn seal_blob_to_writes_a_blob_open_blob_opens_and_refuses_a_wrong_room() {
    for k in [keys(), Keys::unencrypted(repo(), 1)] {
        let id = k.chunk_id(b"body");
        let mut out = vec![7u8; 4 + k.overhead()];
        k.seal_blob_to(&id, 1, b"body", &mut out).unwrap();
        assert_eq!(k.open_blob(&id, 1, &out).unwrap(), b"body");
        assert!(k.open_blob(&id, 0, &out).is_err() || !k.encrypted());
        let mut short = vec![0u8; 3 + k.overhead()];
        assert!(k.seal_blob_to(&id, 1, b"body", &mut short).is_err());
    }
}

#[test]
fn nonces_are_fresh_each_seal() {
    let k = keys();
    let id = k.chunk_id(b"x");
    let a = k.seal_blob(&id, 0, b"x");
    let b = k.seal_blob(&id, 0, b"x");
    assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    assert_ne!(a, b);
}

#[test]
fn blob_opens_only_under_its_id_flags_and_repository() {
    let k = keys();
    let id = k.chunk_id(b"data");
    let sealed = k.seal_blob(&id, 0, b"data");
    assert_eq!(k.open_blob(&id, 0, &sealed).unwrap(), b"data");
    let other_id = k.chunk_id(b"other");
    assert_eq!(k.open_blob(&other_id, 0, &sealed), Err(CryptoError::Chunk));
    assert_eq!(k.open_blob(&id, 1, &sealed), Err(CryptoError::Chunk));
    let other_repo = Keys::derive(&master(), RepoId([3; 16]));
    assert_eq!(
        other_repo.open_blob(&id, 0, &sealed),
        Err(CryptoError::Chunk)
    );
    let other_master = Keys::derive(&MasterKey::from_bytes([3; 32]), repo());
    assert_eq!(
        other_master.open_blob(&id, 0, &sealed),
        Err(CryptoError::Chunk)
    );
}

#[test]
fn kinds_of_sealed_box_do_not_open_as_each_other() {
    let k = keys();
    let header = k.seal_header(b"header");
    let entry = k.seal_entry(b"entry");
    assert_eq!(k.open_entry(&header), Err(CryptoError::Entry));
    assert_eq!(k.open_header(&entry), Err(CryptoError::Header));
    let id = [0u8; 32];
    assert_eq!(k.open_blob(&id, 0, &header), Err(CryptoError::Chunk));
    let other = Keys::derive(&master(), RepoId([5; 16]));
    assert_eq!(other.open_header(&header), Err(CryptoError::Header));
    assert_eq!(other.open_entry(&entry), Err(CryptoError::Entry));
}

#[test]
fn short_input_is_an_error_not_a_panic() {
    let k = keys();
    for len in 0..=SEAL_OVERHEAD {
        let junk = vec![0u8; len];
        assert_eq!(k.open_blob(&[0; 32], 0, &junk), Err(CryptoError::Chunk));
        assert_eq!(k.open_header(&junk), Err(CryptoError::Header));
        assert_eq!(k.open_entry(&junk), Err(CryptoError::Entry));
    }
    // The empty body seals to exactly the overhead and opens back.
    let sealed = k.seal_entry(b"");
    assert_eq!(sealed.len(), SEAL_OVERHEAD);
    assert_eq!(k.open_entry(&sealed).unwrap(), b"");
}

#[test]
fn unencrypted_scheme_stores_bodies_as_they_are() {
    let k = Keys::unencrypted(repo(), 42);
    assert!(!k.encrypted());
    assert_eq!(k.overhead(), 0);
    assert_eq!(k.chunker_seed(), 42);
    let id = k.chunk_id(b"data");
    assert_eq!(k.seal_blob(&id, 1, b"data"), b"data");
    assert_eq!(k.open_blob(&id, 1, b"data").unwrap(), b"data");
    assert_eq!(k.seal_header(b"h"), b"h");
    assert_eq!(k.seal_entry(b"{}"), b"{}");
    assert!(keys().encrypted());
    assert_eq!(keys().overhead(), SEAL_OVERHEAD);
}

#[test]
fn debug_shows_no_key_material() {
    let k = keys();
    let shown = format!("{k:?}");
    assert!(shown.contains(&repo().to_hex()), "{shown}");
    for secret in [KAT_ID_KEY, KAT_DATA_KEY, KAT_CAT_KEY, KAT_NAME_KEY] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(&secret[..8]), "{shown}");
    }
    assert!(!shown.contains(&KAT_CHUNKER_SEED.to_string()), "{shown}");
    assert_eq!(format!("{:?}", master()), "MasterKey(<redacted>)");
}

#[test]
fn keys_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Keys>();
    check::<MasterKey>();
}

#[test]
fn repo_id_hex_round_trips() {
    let id = RepoId::random();
    assert_eq!(RepoId::from_hex(&id.to_hex()), Some(id));
    assert_eq!(id.to_hex().len(), 32);
    assert_eq!(RepoId::from_hex("abc"), None);
    assert_eq!(RepoId::from_hex(&"zz".repeat(16)), None);
    assert_ne!(RepoId::random(), id);
}

// ---- Names ----

#[test]
fn object_names_follow_the_format() {
    let k = keys();
    let name = k.object_name(ObjectKind::Pack, "k3f9x2", 7);
    assert_eq!(name.len(), OBJECT_NAME_LEN);
    assert!(name.ends_with(".bin"));
    assert!(name[..48]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // r and t recomputed from the definition with the independently derived name key.
    let nk = unhex::<32>(KAT_NAME_KEY);
    let mut h = blake3::Hasher::new_keyed(&nk);
    h.update(b"pack\0k3f9x2\0");
    h.update(&7u64.to_le_bytes());
    let r = &h.finalize().as_bytes()[..16].to_vec();
    let mut h = blake3::Hasher::new_keyed(&nk);
    h.update(b"tag\0pack\0");
    h.update(r);
    let t = &h.finalize().as_bytes()[..8].to_vec();
    assert_eq!(name, format!("{}{}.bin", hex::encode(r), hex::encode(t)));
}

#[test]
fn object_names_are_deterministic_and_distinct() {
    let k = keys();
    let a = k.object_name(ObjectKind::Pack, "f1", 0);
    assert_eq!(a, keys().object_name(ObjectKind::Pack, "f1", 0));
    let others = [
        k.object_name(ObjectKind::Pack, "f1", 1),
        k.object_name(ObjectKind::Pack, "f2", 0),
        k.object_name(ObjectKind::Entry, "f1", 0),
        k.object_name(ObjectKind::Piece, "f1", 0),
        // The separators keep ("f", "1...") apart from ("f1", ...).
        k.object_name(ObjectKind::Pack, "f1\0", 0),
    ];
    for o in &others {
        assert_ne!(&a, o);
    }
    assert!(!a.contains("f1"));
}

#[test]
fn a_key_holder_tells_kinds_apart_by_name() {
    let k = keys();
    for kind in ObjectKind::ALL {
        for i in [0, 1, u64::MAX] {
            assert_eq!(k.name_kind(&k.object_name(kind, "file", i)), Some(kind));
        }
    }
}

#[test]
fn names_from_other_keys_or_tools_are_not_recognised() {
    let k = keys();
    let other = Keys::derive(&master(), RepoId([8; 16]));
    let foreign = other.object_name(ObjectKind::Entry, "file", 0);
    assert_eq!(k.name_kind(&foreign), None);
    assert_eq!(
        Keys::unencrypted(repo(), 1).name_kind(&k.object_name(ObjectKind::Pack, "f", 0)),
        None
    );
    let good = k.object_name(ObjectKind::Pack, "f", 0);
    let mut flipped = good.clone().into_bytes();
    flipped[40] = if flipped[40] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        "",
        ".bin",
        "dstore-config.json",
        "part-0001.bin",
        &good[..good.len() - 4],
        &format!("{}.json", &good[..48]),
        &good.to_uppercase().replace(".BIN", ".bin"),
        &format!("a{good}"),
        &flipped,
        "ééééééééééééééééééééééééééééééééééééééééééééééééééééé.bin",
    ] {
        assert_eq!(k.name_kind(bad), None, "{bad}");
    }
}

#[test]
fn unencrypted_names_use_the_zero_key() {
    let k = Keys::unencrypted(repo(), 1);
    let mut h = blake3::Hasher::new_keyed(&[0u8; 32]);
    h.update(b"entry\0f\0");
    h.update(&3u64.to_le_bytes());
    let name = k.object_name(ObjectKind::Entry, "f", 3);
    assert_eq!(name[..32], hex::encode(&h.finalize().as_bytes()[..16]));
    assert_eq!(k.name_kind(&name), Some(ObjectKind::Entry));
}

// ---- Properties ----

fn flip(sealed: &[u8], at: usize, bit: u8) -> Vec<u8> {
    let mut v = sealed.to_vec();
    let i = at % v.len();
    v[i] ^= 1 << (bit % 8);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn blob_round_trips(body in proptest::collection::vec(any::<u8>(), 0..4096), flags in 0u8..2) {
        let k = keys();
        let id = k.chunk_id(&body);
        let sealed = k.seal_blob(&id, flags, &body);
        prop_assert_eq!(sealed.len(), body.len() + SEAL_OVERHEAD);
        prop_assert_eq!(k.open_blob(&id, flags, &sealed).unwrap(), body);
    }

    #[test]
    fn header_and_entry_round_trip(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let k = keys();
        prop_assert_eq!(k.open_header(&k.seal_header(&body)).unwrap(), body.clone());
        prop_assert_eq!(k.open_entry(&k.seal_entry(&body)).unwrap(), body);
    }

    #[test]
    fn any_flipped_bit_is_detected(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        at in any::<usize>(),
        bit in any::<u8>(),
    ) {
        let k = keys();
        let id = k.chunk_id(&body);
        let sealed = k.seal_blob(&id, 0, &body);
        prop_assert_eq!(k.open_blob(&id, 0, &flip(&sealed, at, bit)), Err(CryptoError::Chunk));
        let header = k.seal_header(&body);
        prop_assert_eq!(k.open_header(&flip(&header, at, bit)), Err(CryptoError::Header));
        let entry = k.seal_entry(&body);
        prop_assert_eq!(k.open_entry(&flip(&entry, at, bit)), Err(CryptoError::Entry));
    }

    #[test]
    fn truncation_or_extension_is_detected(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let k = keys();
        let id = k.chunk_id(&body);
        let sealed = k.seal_blob(&id, 0, &body);
        let cut = 1 + cut % (sealed.len() - 1);
        prop_assert_eq!(k.open_blob(&id, 0, &sealed[..cut]), Err(CryptoError::Chunk));
        prop_assert_eq!(k.open_blob(&id, 0, &sealed[cut..]), Err(CryptoError::Chunk));
        let mut longer = sealed.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(k.open_blob(&id, 0, &longer), Err(CryptoError::Chunk));
    }

    #[test]
    fn wrong_id_or_flags_is_detected(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        other in any::<[u8; 32]>(),
        flags in any::<u8>(),
        wrong_flags in any::<u8>(),
    ) {
        prop_assume!(flags != wrong_flags);
        let k = keys();
        let id = k.chunk_id(&body);
        prop_assume!(other != id);
        let sealed = k.seal_blob(&id, flags, &body);
        prop_assert_eq!(k.open_blob(&other, flags, &sealed), Err(CryptoError::Chunk));
        prop_assert_eq!(k.open_blob(&id, wrong_flags, &sealed), Err(CryptoError::Chunk));
    }
}

/// `open_blob_in_place` opens what `seal_blob` made, refusing a wrong ID, flags or a flipped bit.
#[test]
fn in_place_opening_is_the_copying_one() {
    for k in [keys(), Keys::unencrypted(repo(), 1)] {
        let id = k.chunk_id(b"in place");
        let mut sealed = k.seal_blob(&id, 0, b"in place");
        let mut copy = sealed.clone();
        let range = k.open_blob_in_place(&id, 0, &mut sealed).unwrap();
        assert_eq!(&sealed[range], b"in place");
        if k.encrypted() {
            assert_eq!(
                k.open_blob_in_place(&id, 1, &mut copy.clone()),
                Err(CryptoError::Chunk)
            );
            copy[NONCE_LEN] ^= 1;
            assert_eq!(
                k.open_blob_in_place(&id, 0, &mut copy),
                Err(CryptoError::Chunk)
            );
            for len in 0..SEAL_OVERHEAD {
                assert_eq!(
                    k.open_blob_in_place(&id, 0, &mut vec![0u8; len]),
                    Err(CryptoError::Chunk)
                );
            }
        }
    }
}
