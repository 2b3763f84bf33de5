//! The format-2 repository on the emulator: `init`, opening on another machine with the
//! passphrase only, the key commands, the trust rule for config and key files, and the binary's
//! `init` and `key list` keeping the passphrase out of every output and file.

use std::path::{Path, PathBuf};

use dstore::commands::{init, key, Session};
use dstore::repo::crypto::RepoId;
use dstore::repo::keys::{KdfParams, KeyFile, MasterKey};
use dstore::repo::passphrase::Passphrase;
use dstore::repo::repository::{RepoConfig, Secrets, CONFIG_NAME};

use crate::cli::{dstore, run};
use crate::common::Env;

const PASS: &str = "first passphrase, long and random enough";
const OTHER: &str = "second passphrase, just as long";
const STRANGER: u64 = 4242;

/// A session on `data` (a machine) whose passphrases come from `pairs` only, never a terminal.
fn machine(env: &Env, data: &Path, pairs: &[(&str, &str)]) -> Session {
    let data = data.to_path_buf();
    let mut s = env.session_with(|c| c.data_dir = data);
    s.secrets = Secrets::given(pairs);
    s
}

fn dir(env: &Env, name: &str) -> PathBuf {
    env.dir.path().join(name)
}

/// The attachment names in the channel, oldest first.
fn names(env: &Env) -> Vec<String> {
    env.emu
        .messages(env.emu.channel_id())
        .into_iter()
        .flat_map(|m| m.attachments)
        .map(|a| a.filename)
        .collect()
}

fn key_names(env: &Env) -> Vec<String> {
    names(env)
        .into_iter()
        .filter(|n| n.starts_with("dstore-key-"))
        .collect()
}

/// `init` with `PASS` on the default data dir; returns the session and the key ID.
async fn initialised(env: &Env) -> (Session, String) {
    let s = machine(env, &env.data_dir(), &[("DSTORE_PASSPHRASE", PASS)]);
    let r = init::init(&s, false).await.unwrap();
    let id = r.key_id.clone().unwrap();
    (s, id)
}

async fn open_err(env: &Env, data: &str, pass: &str) -> String {
    let s = machine(env, &dir(env, data), &[("DSTORE_PASSPHRASE", pass)]);
    format!("{:#}", s.repository().await.unwrap_err())
}

#[tokio::test]
async fn init_then_a_new_machine_opens_with_the_passphrase_only() {
    let env = Env::new().await;
    let (s, key_id) = initialised(&env).await;
    let first = s.repository().await.unwrap().unwrap();
    assert!(first.keys.encrypted());
    // Key file first, then the config, each alone in its message with empty content.
    assert_eq!(
        names(&env),
        [format!("dstore-key-{key_id}.json"), CONFIG_NAME.to_string()]
    );
    assert!(env
        .emu
        .messages(env.emu.channel_id())
        .iter()
        .all(|m| m.content.is_empty() && m.attachments.len() == 1));
    let local = env.data_dir().join("repo");
    let config_bytes = std::fs::read(local.join("config.json")).unwrap();
    assert_eq!(RepoConfig::from_json(&config_bytes).unwrap(), first.config);
    assert!(local.join("keys").join(format!("{key_id}.json")).exists());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(local.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let new = dir(&env, "new-machine");
    let s2 = machine(&env, &new, &[("DSTORE_PASSPHRASE", PASS)]);
    let second = s2.repository().await.unwrap().unwrap();
    assert_eq!(second.config, first.config);
    assert_eq!(second.key_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(second.chunker_seed(), first.chunker_seed());
    assert_eq!(second.keys.chunk_id(b"same"), first.keys.chunk_id(b"same"));
    assert_eq!(second.chunker(), first.config.chunker);
    // The copies are kept: the bytes from Discord, and the key file.
    assert_eq!(
        std::fs::read(new.join("repo/config.json")).unwrap(),
        config_bytes
    );
    assert!(new.join(format!("repo/keys/{key_id}.json")).exists());
    // The same session asks no more: a second call returns the cached repository.
    let again = s2.repository().await.unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&again, &second));
}

#[tokio::test]
async fn a_wrong_passphrase_opens_none_and_writes_nothing() {
    let env = Env::new().await;
    initialised(&env).await;
    let err = open_err(&env, "wrong", "not the passphrase").await;
    assert!(
        err.contains("the passphrase opens none of the 1 key file of this repository"),
        "{err}"
    );
    assert!(!err.contains("not the passphrase"), "{err}");
    assert!(!dir(&env, "wrong").join("repo").exists());
    // No passphrase source at all in a script: a sentence naming the variables.
    let s = machine(&env, &dir(&env, "none"), &[]);
    let err = format!("{:#}", s.repository().await.unwrap_err());
    assert!(err.contains("DSTORE_PASSPHRASE"), "{err}");
    assert!(!dir(&env, "none").join("repo").exists());
}

#[tokio::test]
async fn key_add_then_remove_the_old_one() {
    let env = Env::new().await;
    let (s, old) = initialised(&env).await;
    let adder = machine(
        &env,
        &env.data_dir(),
        &[
            ("DSTORE_PASSPHRASE", PASS),
            ("DSTORE_NEW_PASSPHRASE", OTHER),
        ],
    );
    let new = key::add(&adder).await.unwrap();
    assert_ne!(new, old);
    assert_eq!(key_names(&env).len(), 2);
    drop(s);

    // The new passphrase opens the repository on a new machine, by the new key file.
    let b = machine(&env, &dir(&env, "b"), &[("DSTORE_PASSPHRASE", OTHER)]);
    let r = b.repository().await.unwrap().unwrap();
    assert_eq!(r.key_id.as_deref(), Some(new.as_str()));
    // Both are listed, the one this passphrase opened marked.
    let listed = key::list(&b).await.unwrap();
    assert_eq!(listed.len(), 2);
    let current: Vec<_> = listed.iter().filter(|k| k.current).map(|k| &k.id).collect();
    assert_eq!(current, [&new]);
    assert!(listed
        .iter()
        .all(|k| k.params == Some(KdfParams::default()) && k.posted_at.is_some()));

    key::remove(&b, &old).await.unwrap();
    assert_eq!(key_names(&env), [format!("dstore-key-{new}.json")]);
    assert!(!dir(&env, "b")
        .join(format!("repo/keys/{old}.json"))
        .exists());
    let err = open_err(&env, "c", PASS).await;
    assert!(err.contains("opens none of the 1 key file"), "{err}");
    let c = machine(&env, &dir(&env, "d"), &[("DSTORE_PASSPHRASE", OTHER)]);
    assert!(c.repository().await.unwrap().is_some());
}

#[tokio::test]
async fn key_remove_refuses_the_current_the_last_and_an_unknown_one() {
    let env = Env::new().await;
    let (s, first) = initialised(&env).await;
    let err = format!("{:#}", key::remove(&s, &first).await.unwrap_err());
    assert!(err.contains("key passwd"), "{err}");
    assert_eq!(key_names(&env).len(), 1);

    let err = format!("{:#}", key::remove(&s, "0badc0de").await.unwrap_err());
    assert!(err.contains("0badc0de") && err.contains(&first), "{err}");

    // Machine b adds a passphrase and removes the first key file from Discord; machine a keeps
    // its copy, so the first passphrase still opens there, but cannot remove the last key file.
    let b = machine(
        &env,
        &dir(&env, "b"),
        &[
            ("DSTORE_PASSPHRASE", PASS),
            ("DSTORE_NEW_PASSPHRASE", OTHER),
        ],
    );
    let second = key::add(&b).await.unwrap();
    let b = machine(&env, &dir(&env, "b"), &[("DSTORE_PASSPHRASE", OTHER)]);
    key::remove(&b, &first).await.unwrap();
    let a = machine(&env, &env.data_dir(), &[("DSTORE_PASSPHRASE", PASS)]);
    let err = format!("{:#}", key::remove(&a, &second).await.unwrap_err());
    assert!(err.contains("only key file"), "{err}");
    assert_eq!(key_names(&env), [format!("dstore-key-{second}.json")]);
    // `key list` on a says its key file is only on this machine now.
    let listed = key::list(&a).await.unwrap();
    let mine = listed.iter().find(|k| k.current).unwrap();
    assert_eq!((mine.id.as_str(), mine.posted_at), (first.as_str(), None));
}

#[tokio::test]
async fn key_passwd_replaces_the_key_file() {
    let env = Env::new().await;
    let (_, old) = initialised(&env).await;
    let s = machine(
        &env,
        &env.data_dir(),
        &[
            ("DSTORE_PASSPHRASE", PASS),
            ("DSTORE_NEW_PASSPHRASE", OTHER),
        ],
    );
    let new = key::passwd(&s).await.unwrap();
    assert_ne!(new, old);
    assert_eq!(key_names(&env), [format!("dstore-key-{new}.json")]);
    assert_eq!(
        s.repository().await.unwrap().unwrap().key_id.as_deref(),
        Some(new.as_str())
    );
    assert!(!env
        .data_dir()
        .join(format!("repo/keys/{old}.json"))
        .exists());
    let err = open_err(&env, "old", PASS).await;
    assert!(err.contains("opens none"), "{err}");
    let fresh = machine(&env, &dir(&env, "fresh"), &[("DSTORE_PASSPHRASE", OTHER)]);
    assert!(fresh.repository().await.unwrap().is_some());
    // A script without a new passphrase changes nothing.
    let none = machine(&env, &dir(&env, "fresh"), &[("DSTORE_PASSPHRASE", OTHER)]);
    let err = format!("{:#}", key::passwd(&none).await.unwrap_err());
    assert!(err.contains("DSTORE_NEW_PASSPHRASE"), "{err}");
    assert_eq!(key_names(&env).len(), 1);
}

#[tokio::test]
async fn a_second_init_is_refused() {
    let env = Env::new().await;
    initialised(&env).await;
    let before = names(&env);
    for data in [env.data_dir(), dir(&env, "other")] {
        let s = machine(&env, &data, &[("DSTORE_PASSPHRASE", OTHER)]);
        let err = format!("{:#}", init::init(&s, false).await.unwrap_err());
        assert!(err.contains("already holds a repository"), "{err}");
        assert!(err.contains("key list"), "{err}");
    }
    assert_eq!(names(&env), before);
    assert!(!dir(&env, "other").join("repo").exists());
}

#[tokio::test]
async fn config_and_key_files_of_other_authors_are_ignored() {
    let env = Env::new().await;
    let ch = env.emu.channel_id();
    // Planted before init: a config of another repository; init is not refused by it.
    let planted = RepoConfig::new(true);
    env.emu
        .post_as(STRANGER, ch, CONFIG_NAME, &planted.to_json());
    let (s, key_id) = initialised(&env).await;
    let real = s.repository().await.unwrap().unwrap();
    // Planted after: a newer config, and a key file that opens with the same passphrase under
    // the real repository ID but wraps another master key.
    env.emu
        .post_as(STRANGER, ch, CONFIG_NAME, &RepoConfig::new(false).to_json());
    let forged = KeyFile::create(
        &MasterKey::random(),
        &real.config.repo_id,
        &Passphrase::new(PASS),
        KdfParams::default(),
    )
    .unwrap();
    env.emu
        .post_as(STRANGER, ch, &forged.file_name(), &forged.to_json());

    let b = machine(&env, &dir(&env, "b"), &[("DSTORE_PASSPHRASE", PASS)]);
    let opened = b.repository().await.unwrap().unwrap();
    assert_eq!(opened.config, real.config);
    assert_eq!(opened.key_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(opened.keys.chunk_id(b"x"), real.keys.chunk_id(b"x"));
    assert!(!dir(&env, "b")
        .join(format!("repo/keys/{}.json", forged.id()))
        .exists());
    let listed = key::list(&b).await.unwrap();
    assert_eq!(listed.iter().map(|k| &k.id).collect::<Vec<_>>(), [&key_id]);
}

#[tokio::test]
async fn a_local_config_that_differs_from_discords_is_refused() {
    let env = Env::new().await;
    let (_, _) = initialised(&env).await;
    let b = dir(&env, "b");
    let mine = RepoConfig::new(true);
    std::fs::create_dir_all(b.join("repo")).unwrap();
    std::fs::write(b.join("repo/config.json"), mine.to_json()).unwrap();
    let s = machine(&env, &b, &[("DSTORE_PASSPHRASE", PASS)]);
    let real =
        RepoConfig::from_json(&std::fs::read(env.data_dir().join("repo/config.json")).unwrap())
            .unwrap();
    for err in [
        format!("{:#}", s.repository().await.unwrap_err()),
        format!("{:#}", key::list(&s).await.unwrap_err()),
    ] {
        assert!(err.contains(&mine.repo_id.to_hex()), "{err}");
        assert!(err.contains(&real.repo_id.to_hex()), "{err}");
        assert!(err.contains("remove"), "{err}");
    }
    assert!(!b.join("repo/keys").exists());
}

#[tokio::test]
async fn a_config_of_a_newer_format_is_refused() {
    let env = Env::new().await;
    let newer = br#"{"format":3,"repo_id":"5f0c9a1be2d34c7a8e61b0f2d9c4a371","encryption":true,"chunker":{"min":524288,"avg":1048576,"max":8388608}}"#;
    env.emu.post_as(
        env.emu.bot_user_id(),
        env.emu.channel_id(),
        CONFIG_NAME,
        newer,
    );
    let s = machine(&env, &env.data_dir(), &[("DSTORE_PASSPHRASE", PASS)]);
    let err = format!("{:#}", s.repository().await.unwrap_err());
    assert!(err.contains("written by a newer dstore"), "{err}");
    assert!(err.contains("upgrade dstore"), "{err}");
    assert!(!env.data_dir().join("repo").exists());
}

#[tokio::test]
async fn init_after_a_kill_between_the_key_file_and_the_config_works() {
    let env = Env::new().await;
    // What a kill right after posting the key file leaves: a key file of a repository ID that
    // was never posted.
    let orphan = KeyFile::create(
        &MasterKey::random(),
        &RepoId::random(),
        &Passphrase::new(PASS),
        KdfParams::default(),
    )
    .unwrap();
    env.emu.post_as(
        env.emu.bot_user_id(),
        env.emu.channel_id(),
        &orphan.file_name(),
        &orphan.to_json(),
    );
    let s = machine(&env, &env.data_dir(), &[("DSTORE_PASSPHRASE", PASS)]);
    assert!(s.repository().await.unwrap().is_none());
    let (_, key_id) = initialised(&env).await;
    assert_eq!(
        names(&env),
        [format!("dstore-key-{key_id}.json"), CONFIG_NAME.to_string()]
    );
    let b = machine(&env, &dir(&env, "b"), &[("DSTORE_PASSPHRASE", PASS)]);
    assert_eq!(
        b.repository().await.unwrap().unwrap().key_id.as_deref(),
        Some(key_id.as_str())
    );
}

#[tokio::test]
async fn an_unencrypted_repository_has_no_keys_and_no_passphrase() {
    let env = Env::new().await;
    let s = machine(&env, &env.data_dir(), &[]);
    let r = init::init(&s, true).await.unwrap();
    assert!(!r.keys.encrypted());
    assert_eq!(r.key_id, None);
    assert_eq!(names(&env), [CONFIG_NAME]);
    let config =
        RepoConfig::from_json(&std::fs::read(env.data_dir().join("repo/config.json")).unwrap())
            .unwrap();
    assert!(!config.encryption);
    assert_eq!(config.chunker_seed, Some(r.chunker_seed()));

    let b = machine(&env, &dir(&env, "b"), &[]);
    let opened = b.repository().await.unwrap().unwrap();
    assert_eq!(opened.config, r.config);
    assert_eq!(opened.chunker_seed(), r.chunker_seed());
    assert!(key::list(&b).await.unwrap().is_empty());
    let err = format!("{:#}", key::add(&b).await.unwrap_err());
    assert!(err.contains("unencrypted"), "{err}");

    // `encryption = false` in the config file does the same without the flag.
    let env2 = Env::new().await;
    let mut s = env2.session_with(|c| c.encryption = false);
    s.secrets = Secrets::given(&[]);
    assert!(!init::init(&s, false).await.unwrap().keys.encrypted());
}

#[tokio::test]
async fn an_upload_in_a_script_creates_the_repository_only_with_a_passphrase() {
    let env = Env::new().await;
    let s = machine(&env, &env.data_dir(), &[]);
    let err = format!("{:#}", s.repository_for_upload().await.unwrap_err());
    assert!(err.contains("dstore init"), "{err}");
    assert!(err.contains("DSTORE_PASSPHRASE"), "{err}");
    assert!(names(&env).is_empty());
    assert!(!env.data_dir().join("repo").exists());

    let s = machine(&env, &env.data_dir(), &[("DSTORE_PASSPHRASE", PASS)]);
    let r = s.repository_for_upload().await.unwrap();
    assert!(r.keys.encrypted());
    assert_eq!(names(&env).len(), 2);
    // The next one opens it; nothing more is posted.
    let again = machine(&env, &dir(&env, "b"), &[("DSTORE_PASSPHRASE", PASS)]);
    assert_eq!(
        again.repository_for_upload().await.unwrap().config,
        r.config
    );
    assert_eq!(names(&env).len(), 2);
}

/// Every byte under `dir`, file by file.
fn all_files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
}

#[tokio::test]
async fn the_binary_inits_and_lists_keys_without_showing_the_passphrase() {
    let env = Env::new().await;
    let secret = "zebra-quartz-7731-passphrase";
    let mut c = dstore(&env);
    c.env("DSTORE_PASSPHRASE", secret).args(["-v", "init"]);
    let out = run(c, "").await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Initialised an encrypted repository"),
        "{stdout}"
    );
    assert!(stdout.contains("cannot be recovered"), "{stdout}");
    let key_id = key_names(&env)[0]
        .trim_start_matches("dstore-key-")
        .trim_end_matches(".json")
        .to_string();
    assert!(stdout.contains(&key_id), "{stdout}");

    let mut c = dstore(&env);
    c.env("DSTORE_PASSPHRASE", secret)
        .args(["-v", "key", "list"]);
    let out = run(c, "").await;
    let (list, list_err) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{list_err}");
    let line = list.lines().find(|l| l.contains(&key_id)).unwrap();
    assert!(line.starts_with('*'), "{list}");
    assert!(line.contains("Argon2id 64 MiB, 3 passes, 1 lane"), "{list}");
    assert!(line.contains("posted 20"), "{list}");
    assert!(line.contains("(this passphrase)"), "{list}");

    // A second init is refused, naming `key list`.
    let mut c = dstore(&env);
    c.env("DSTORE_PASSPHRASE", secret).arg("init");
    let out = run(c, "").await;
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(refused.contains("key list"), "{refused}");

    for text in [&stdout, &stderr, &list, &list_err, &refused] {
        assert!(!text.contains(secret), "the passphrase was shown: {text}");
    }
    let mut files = Vec::new();
    all_files(&env.data_dir(), &mut files);
    assert!(files.iter().any(|(p, _)| p.ends_with("repo/config.json")));
    for (path, bytes) in files {
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the passphrase is in {}", path.display());
    }
}
