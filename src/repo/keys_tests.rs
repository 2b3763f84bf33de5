//! Tests of key files: round trips with small Argon2id costs, wrong passphrases, what the JSON
//! holds, and the default costs.

use super::*;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

/// Argon2id's smallest costs for one lane, so each derivation takes well under a millisecond.
const FAST: KdfParams = KdfParams {
    m_cost_kib: 8,
    t_cost: 1,
    p_cost: 1,
};

fn repo() -> RepoId {
    RepoId([0x11; 16])
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s)
}

#[test]
fn key_file_round_trips() {
    let master = MasterKey::random();
    let file = KeyFile::create(&master, &repo(), &pass("correct horse"), FAST).unwrap();
    let parsed = KeyFile::from_json(&file.to_json()).unwrap();
    assert_eq!(parsed, file);
    assert_eq!(
        parsed.open(&repo(), &pass("correct horse")).unwrap(),
        master
    );
}

#[test]
fn wrong_passphrase_is_one_clear_error() {
    let master = MasterKey::random();
    let file = KeyFile::create(&master, &repo(), &pass("right"), FAST).unwrap();
    let err = file.open(&repo(), &pass("wrong")).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the passphrase does not open this key file"
    );
    // A key file of another repository does not open here, even with its own passphrase.
    let err = file.open(&RepoId([0x22; 16]), &pass("right")).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase), "{err:?}");
}

#[test]
fn several_key_files_wrap_one_master_key() {
    let master = MasterKey::random();
    let a = KeyFile::create(&master, &repo(), &pass("alice"), FAST).unwrap();
    let b = KeyFile::create(&master, &repo(), &pass("bob"), FAST).unwrap();
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.file_name(), b.file_name());
    assert_eq!(a.open(&repo(), &pass("alice")).unwrap(), master);
    assert_eq!(b.open(&repo(), &pass("bob")).unwrap(), master);
    assert!(b.open(&repo(), &pass("alice")).is_err());
}

#[test]
fn key_file_json_has_the_format_fields_and_no_secret() {
    let master = MasterKey::random();
    let file = KeyFile::create(&master, &repo(), &pass("hunter2-passphrase"), FAST).unwrap();
    let json = String::from_utf8(file.to_json()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "format",
            "kdf",
            "m_cost_kib",
            "p_cost",
            "salt",
            "sealed",
            "t_cost"
        ]
    );
    assert_eq!(v["format"], 2);
    assert_eq!(v["kdf"], "argon2id");
    assert_eq!(v["m_cost_kib"], 8);
    assert_eq!(v["salt"].as_str().unwrap().len(), 32);
    assert_eq!(v["sealed"].as_str().unwrap().len(), 2 * (32 + 40));
    let master_hex = hex::encode(master.as_bytes());
    assert!(!json.contains(&master_hex), "{json}");
    assert!(!json.contains(&master_hex[..16]), "{json}");
    assert!(!json.contains("hunter2"), "{json}");
    assert!(
        !json.to_lowercase().contains(&hex::encode("hunter2")),
        "{json}"
    );
    assert!(file.file_name().starts_with("dstore-key-"));
    assert_eq!(
        file.file_name(),
        format!("dstore-key-{}.json", &file.salt[..8])
    );
    assert!(!format!("{file:?}").contains(&master_hex));
}

/// The sealed master key is AEAD(kek, master, ad = "dstore key v2" || repo_id) with kek from
/// Argon2id as the format says: checked by unwrapping with a kek computed here and RustCrypto's
/// XChaCha20Poly1305, the format's reference.
#[test]
fn sealed_master_key_follows_the_format() {
    let master = MasterKey::from_bytes([0x5a; 32]);
    let file = KeyFile::create(&master, &repo(), &pass("p"), FAST).unwrap();
    let salt = hex::decode(&file.salt).unwrap();
    let mut kek = [0u8; 32];
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, Some(32)).unwrap(),
    )
    .hash_password_into(b"p", &salt, &mut kek)
    .unwrap();
    let sealed = hex::decode(&file.sealed).unwrap();
    let mut ad = b"dstore key v2".to_vec();
    ad.extend_from_slice(&repo().0);
    let aead = XChaCha20Poly1305::new(&kek.into());
    let mut body = sealed[24..56].to_vec();
    aead.decrypt_in_place_detached(
        XNonce::from_slice(&sealed[..24]),
        &ad,
        &mut body,
        Tag::from_slice(&sealed[56..]),
    )
    .unwrap();
    assert_eq!(body, [0x5a; 32]);
}

#[test]
fn default_costs_are_the_formats() {
    let d = KdfParams::default();
    assert_eq!((d.m_cost_kib, d.t_cost, d.p_cost), (65536, 3, 1));
    // One real derivation at the defaults: it works, and is what a new key file records.
    let master = MasterKey::random();
    let file = KeyFile::create(&master, &repo(), &pass("default"), d).unwrap();
    assert_eq!((file.m_cost_kib, file.t_cost, file.p_cost), (65536, 3, 1));
    assert_eq!(file.open(&repo(), &pass("default")).unwrap(), master);
}

#[test]
fn damaged_or_foreign_key_files_are_errors_not_panics() {
    let master = MasterKey::random();
    let good = KeyFile::create(&master, &repo(), &pass("p"), FAST).unwrap();
    for bytes in [&b""[..], b"{}", b"not json", b"[1,2]", br#"{"format":2}"#] {
        let err = KeyFile::from_json(bytes).unwrap_err();
        assert!(matches!(err, KeyError::Malformed(_)), "{err:?}");
    }
    type Expect = fn(&KeyError) -> bool;
    let cases: Vec<(KeyFile, Expect)> = vec![
        (
            KeyFile {
                format: 1,
                ..good.clone()
            },
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            KeyFile {
                kdf: "scrypt".into(),
                ..good.clone()
            },
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            KeyFile {
                salt: "00".into(),
                ..good.clone()
            },
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            KeyFile {
                salt: "zz".repeat(16),
                ..good.clone()
            },
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            KeyFile {
                sealed: good.sealed[..100].into(),
                ..good.clone()
            },
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            KeyFile {
                sealed: format!("{}00", good.sealed),
                ..good.clone()
            },
            |e| matches!(e, KeyError::Malformed(_)),
        ),
        (
            KeyFile {
                m_cost_kib: u32::MAX,
                ..good.clone()
            },
            |e| matches!(e, KeyError::Params(_)),
        ),
        (
            KeyFile {
                t_cost: 1_000_000,
                ..good.clone()
            },
            |e| matches!(e, KeyError::Params(_)),
        ),
        (
            KeyFile {
                p_cost: 0,
                ..good.clone()
            },
            |e| matches!(e, KeyError::Params(_)),
        ),
        (
            KeyFile {
                m_cost_kib: 1,
                ..good.clone()
            },
            |e| matches!(e, KeyError::Params(_)),
        ),
        (
            KeyFile {
                t_cost: 2,
                ..good.clone()
            },
            |e| matches!(e, KeyError::WrongPassphrase),
        ),
    ];
    for (file, expected) in cases {
        let err = file.open(&repo(), &pass("p")).unwrap_err();
        assert!(expected(&err), "{file:?}: {err:?}");
        assert!(!err.to_string().contains(&hex::encode(master.as_bytes())));
    }
    let mut flipped = good.clone();
    let last = if flipped.sealed.ends_with('0') {
        "1"
    } else {
        "0"
    };
    flipped
        .sealed
        .replace_range(flipped.sealed.len() - 1.., last);
    assert!(matches!(
        flipped.open(&repo(), &pass("p")),
        Err(KeyError::WrongPassphrase)
    ));
}

#[test]
fn create_refuses_costs_argon2_refuses() {
    let master = MasterKey::random();
    let bad = KdfParams {
        m_cost_kib: 1,
        t_cost: 1,
        p_cost: 1,
    };
    assert!(matches!(
        KeyFile::create(&master, &repo(), &pass("p"), bad),
        Err(KeyError::Params(_))
    ));
}

#[test]
fn open_any_tries_each_key_file_and_reports_the_skipped() {
    let master = MasterKey::random();
    let alice = KeyFile::create(&master, &repo(), &pass("alice"), FAST).unwrap();
    let bob = KeyFile::create(&master, &repo(), &pass("bob"), FAST).unwrap();
    let newer = KeyFile {
        format: 3,
        ..alice.clone()
    };
    let files = [newer, alice, bob];
    let opened = open_any(&files, &repo(), &pass("bob")).unwrap();
    assert_eq!((opened.index, &opened.master), (2, &master));
    assert_eq!(opened.skipped.len(), 1);
    assert!(matches!(opened.skipped[0], (0, KeyError::Newer(3))));
    assert!(opened.skipped[0].1.to_string().contains("upgrade dstore"));

    let err = open_any(&files, &repo(), &pass("carol")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the passphrase opens none of the 3 key files of this repository; \
         check it (DSTORE_PASSPHRASE, its file or command, or what you typed)"
    );
    let err = open_any(&files[1..2], &repo(), &pass("carol")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("the passphrase opens none of the 1 key file of"));
    let err = open_any(&[], &repo(), &pass("bob")).unwrap_err();
    assert!(matches!(err, KeyError::NoKeyFiles), "{err:?}");
}

#[test]
fn create_among_never_reuses_a_key_id() {
    let master = MasterKey::random();
    let first = KeyFile::create(&master, &repo(), &pass("a"), FAST).unwrap();
    let taken: [u8; 16] = hex::decode(&first.salt).unwrap().try_into().unwrap();
    // A salt source that first repeats the taken key ID (with other trailing bytes).
    let mut draws = vec![[7u8; 16], taken, taken];
    draws[1][15] ^= 1;
    let mut salts = || draws.pop().unwrap();
    let second = KeyFile::create_from(
        &master,
        &repo(),
        &pass("b"),
        FAST,
        std::slice::from_ref(&first),
        &mut salts,
    )
    .unwrap();
    assert_eq!(second.salt, hex::encode([7u8; 16]));
    assert_ne!(second.file_name(), first.file_name());
    assert_eq!(second.open(&repo(), &pass("b")).unwrap(), master);
}
