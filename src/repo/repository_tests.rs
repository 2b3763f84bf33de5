//! Tests of the config's JSON (section 2.1) and of the key file names.

use super::*;

fn example() -> RepoConfig {
    RepoConfig {
        format: 2,
        repo_id: RepoId::from_hex("5f0c9a1be2d34c7a8e61b0f2d9c4a371").unwrap(),
        encryption: true,
        chunker: ChunkerParams::default(),
        chunker_seed: None,
    }
}

#[test]
fn config_json_is_exactly_the_documented_shape() {
    assert_eq!(
        String::from_utf8(example().to_json()).unwrap(),
        r#"{"format":2,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":true,"chunker":{"min":1048576,"avg":1048576,"max":8388608}}"#
    );
    let plain = RepoConfig {
        encryption: false,
        chunker_seed: Some(18_446_744_073_709_551_615),
        ..example()
    };
    assert_eq!(
        String::from_utf8(plain.to_json()).unwrap(),
        r#"{"format":2,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":false,"chunker":{"min":1048576,"avg":1048576,"max":8388608},"chunker_seed":18446744073709551615}"#
    );
    assert_eq!(RepoConfig::from_json(&plain.to_json()).unwrap(), plain);
}

#[test]
fn config_reads_the_documented_example_in_any_order_with_unknown_fields() {
    let text = r#"{"chunker":{"max":8388608,"avg":1048576,"min":1048576},"later":"ignored",
        "encryption":true,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","format":2}"#;
    assert_eq!(RepoConfig::from_json(text.as_bytes()).unwrap(), example());
}

#[test]
fn new_configs_draw_their_id_and_only_unencrypted_ones_a_seed() {
    let a = RepoConfig::new(true);
    let b = RepoConfig::new(true);
    assert_ne!(a.repo_id, b.repo_id);
    assert_eq!(a.chunker_seed, None);
    assert!(!String::from_utf8(a.to_json()).unwrap().contains("seed"));
    let plain = RepoConfig::new(false);
    assert!(plain.chunker_seed.is_some());
    assert_eq!(RepoConfig::from_json(&plain.to_json()).unwrap(), plain);
}

#[test]
fn config_of_a_newer_format_is_refused_with_upgrade() {
    for text in [
        r#"{"format":3,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":true,"chunker":{"min":524288,"avg":1048576,"max":8388608}}"#,
        r#"{"format":3,"something":"else entirely"}"#,
    ] {
        let err = RepoConfig::from_json(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ConfigError::Newer(3)), "{err}");
        assert!(
            err.to_string().contains("written by a newer dstore"),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade dstore"), "{err}");
    }
}

#[test]
fn config_bounds_outside_the_chunkers_limits_are_refused() {
    let bad = [
        (63, 1048576, 8388608),
        (524288, 255, 8388608),
        (524288, 1048576, 16777217),
        (1048577, 4194304, 8388608),
        (524288, 262144, 8388608), // min > avg
        (65536, 4194304, 1048576), // avg > max
    ];
    for (min, avg, max) in bad {
        let text = format!(
            r#"{{"format":2,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":true,"chunker":{{"min":{min},"avg":{avg},"max":{max}}}}}"#
        );
        let err = RepoConfig::from_json(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Bounds(_)),
            "{min} {avg} {max}: {err}"
        );
    }
    let edge = r#"{"format":2,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":true,"chunker":{"min":64,"avg":256,"max":1024}}"#;
    RepoConfig::from_json(edge.as_bytes()).unwrap();
}

#[test]
fn damaged_configs_are_refused_in_a_sentence() {
    let cases = [
        "not json",
        r#"{"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371"}"#,
        r#"{"format":1,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":true,"chunker":{"min":524288,"avg":1048576,"max":8388608}}"#,
        r#"{"format":2,"repo_id":"5F0C9A1BE2D34C7A8E61B0F2D9C4A371","encryption":true,"chunker":{"min":524288,"avg":1048576,"max":8388608}}"#,
        r#"{"format":2,"repo_id":"5f0c9a1b","encryption":true,"chunker":{"min":524288,"avg":1048576,"max":8388608}}"#,
        r#"{"format":2,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":false,"chunker":{"min":524288,"avg":1048576,"max":8388608}}"#,
    ];
    for text in cases {
        let err = RepoConfig::from_json(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ConfigError::Malformed(_)), "{text}: {err}");
        assert!(
            err.to_string()
                .starts_with("the repository config is damaged"),
            "{err}"
        );
    }
}

#[test]
fn key_file_names_carry_eight_lowercase_hex() {
    assert_eq!(key_id_of("dstore-key-0a1b2c3d.json"), Some("0a1b2c3d"));
    for name in [
        "dstore-key-0A1B2C3D.json",
        "dstore-key-0a1b2c3.json",
        "dstore-key-0a1b2c3d4.json",
        "dstore-key-0a1b2c3d.json.part",
        "dstore-config.json",
    ] {
        assert_eq!(key_id_of(name), None, "{name}");
    }
    assert!(is_repo_object("dstore-config.json"));
    assert!(is_repo_object("dstore-key-0a1b2c3d.json"));
    assert!(!is_repo_object("k3f9x2ab7q.0.part"));
}

#[test]
fn local_copies_are_written_private_and_read_back() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let local = LocalRepo::new(dir.path());
    assert!(local.config().unwrap().is_none());
    assert!(local.key_files().unwrap().is_empty());
    local.write_config(&example().to_json()).unwrap();
    assert_eq!(local.config().unwrap(), Some(example()));
    let mode = std::fs::metadata(local.config_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(local.config_path(), "{").unwrap();
    let err = format!("{:#}", local.config().unwrap_err());
    assert!(err.contains("remove"), "{err}");
}

#[test]
fn new_passphrase_comes_from_the_new_variables_only() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let secrets = Secrets::given(&[
        ("DSTORE_PASSPHRASE", "old"),
        ("DSTORE_NEW_PASSPHRASE", "new"),
    ]);
    let p = rt.block_on(secrets.new_passphrase()).unwrap();
    assert_eq!(p.expose(), "new");
    let only_old = Secrets::given(&[("DSTORE_PASSPHRASE", "old")]);
    let err = rt.block_on(only_old.new_passphrase()).unwrap_err();
    assert!(err.to_string().contains("DSTORE_NEW_PASSPHRASE"), "{err}");
    assert!(!err.to_string().contains("old"), "{err}");
    let empty = Secrets::given(&[("DSTORE_NEW_PASSPHRASE", "")]);
    let err = rt.block_on(empty.new_passphrase()).unwrap_err();
    assert!(
        err.to_string()
            .contains("from DSTORE_NEW_PASSPHRASE is empty"),
        "{err}"
    );
}
