//! Tests of where the passphrase comes from, in order, and of each source's errors.

use super::*;
use std::collections::HashMap;
use std::io::Cursor;

/// A prompt that answers from a script and records what it was asked.
struct Scripted {
    available: bool,
    answers: Vec<Option<String>>,
    asked: Vec<String>,
}

impl Scripted {
    fn new(available: bool, answers: &[Option<&str>]) -> Self {
        Scripted {
            available,
            answers: answers.iter().rev().map(|a| a.map(String::from)).collect(),
            asked: Vec::new(),
        }
    }
}

impl Prompt for Scripted {
    fn available(&self) -> bool {
        self.available
    }
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.asked.push(prompt.to_string());
        Ok(self.answers.pop().expect("asked more often than scripted"))
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn get(
    purpose: Purpose,
    pairs: &[(&str, &str)],
    prompt: &mut Scripted,
) -> Result<(Passphrase, Source), PassphraseError> {
    obtain_with(purpose, &env_of(pairs), prompt)
}

#[test]
fn sources_in_order_env_file_command_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass");
    std::fs::write(&file, "from-file\nsecond line\n").unwrap();
    let file = file.to_str().unwrap();
    let cmd = "printf 'from-command\\nrest'";
    let all = [
        ("DSTORE_PASSPHRASE", "from-env"),
        ("DSTORE_PASSPHRASE_FILE", file),
        ("DSTORE_PASSPHRASE_COMMAND", cmd),
    ];
    let mut term = Scripted::new(true, &[Some("typed")]);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Source);
    let cases: [Case; 4] = [
        (&all, "from-env", Source::Env),
        (&all[1..], "from-file", Source::File),
        (&all[2..], "from-command", Source::Command),
        (&[], "typed", Source::Terminal),
    ];
    for (pairs, want, source) in cases {
        let (p, s) = get(Purpose::Open, pairs, &mut term).unwrap();
        assert_eq!((p.expose(), s), (want, source));
    }
    assert_eq!(term.asked, ["Passphrase: "]);
}

#[test]
fn file_gives_its_first_line_without_line_ending() {
    let dir = tempfile::tempdir().unwrap();
    let mut term = Scripted::new(false, &[]);
    for (content, want) in [
        ("pw\n", "pw"),
        ("pw\r\n", "pw"),
        ("pw", "pw"),
        ("  spaced pw  \nx", "  spaced pw  "),
    ] {
        let path = dir.path().join("p");
        std::fs::write(&path, content).unwrap();
        let pairs = [("DSTORE_PASSPHRASE_FILE", path.to_str().unwrap())];
        let (p, _) = get(Purpose::Open, &pairs, &mut term).unwrap();
        assert_eq!(p.expose(), want, "{content:?}");
    }
}

#[test]
fn file_errors_are_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let mut term = Scripted::new(true, &[]);
    let missing = dir.path().join("missing");
    let pairs = [("DSTORE_PASSPHRASE_FILE", missing.to_str().unwrap())];
    let err = get(Purpose::Open, &pairs, &mut term).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read the passphrase file "),
        "{err}"
    );
    assert!(err.to_string().contains("DSTORE_PASSPHRASE_FILE"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\nsecret on line two").unwrap();
    let pairs = [("DSTORE_PASSPHRASE_FILE", empty.to_str().unwrap())];
    let err = get(Purpose::Open, &pairs, &mut term).unwrap_err();
    assert!(
        matches!(err, PassphraseError::Empty(Source::File)),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
    let binary = dir.path().join("binary");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
    let pairs = [("DSTORE_PASSPHRASE_FILE", binary.to_str().unwrap())];
    let err = get(Purpose::Open, &pairs, &mut term).unwrap_err();
    assert!(
        matches!(err, PassphraseError::NotText(Source::File)),
        "{err:?}"
    );
    assert!(
        term.asked.is_empty(),
        "a set source that fails must not fall through to a prompt"
    );
}

#[test]
fn command_failure_is_a_sentence_without_its_output() {
    let mut term = Scripted::new(true, &[]);
    let pairs = [("DSTORE_PASSPHRASE_COMMAND", "echo leaked-secret; exit 3")];
    let err = get(Purpose::Open, &pairs, &mut term).unwrap_err();
    assert!(matches!(err, PassphraseError::CommandFailed(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("DSTORE_PASSPHRASE_COMMAND failed ("),
        "{text}"
    );
    assert!(text.contains('3'), "{text}");
    assert!(!text.contains("leaked-secret"), "{text}");
    let pairs = [("DSTORE_PASSPHRASE_COMMAND", "true")];
    let err = get(Purpose::Open, &pairs, &mut term).unwrap_err();
    assert!(
        matches!(err, PassphraseError::Empty(Source::Command)),
        "{err:?}"
    );
    assert!(term.asked.is_empty());
}

#[test]
fn command_does_not_read_our_stdin() {
    let mut term = Scripted::new(false, &[]);
    // `cat` with stdin closed ends at once, with no output.
    let pairs = [("DSTORE_PASSPHRASE_COMMAND", "cat; echo done")];
    let (p, _) = get(Purpose::Open, &pairs, &mut term).unwrap();
    assert_eq!(p.expose(), "done");
}

#[test]
fn empty_values_are_refused_or_skipped() {
    let mut term = Scripted::new(true, &[Some("typed")]);
    let err = get(Purpose::Open, &[("DSTORE_PASSPHRASE", "")], &mut term).unwrap_err();
    assert!(
        matches!(err, PassphraseError::Empty(Source::Env)),
        "{err:?}"
    );
    assert!(err.to_string().contains("DSTORE_PASSPHRASE"), "{err}");
    // An empty file or command variable counts as unset.
    let pairs = [
        ("DSTORE_PASSPHRASE_FILE", ""),
        ("DSTORE_PASSPHRASE_COMMAND", ""),
    ];
    let (p, s) = get(Purpose::Open, &pairs, &mut term).unwrap();
    assert_eq!((p.expose(), s), ("typed", Source::Terminal));
}

#[test]
fn no_source_and_no_terminal_names_init_and_the_variable() {
    let mut term = Scripted::new(false, &[]);
    let err = get(Purpose::Create, &[], &mut term).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`dstore init`") && text.contains("DSTORE_PASSPHRASE"),
        "{text}"
    );
    let err = get(Purpose::Open, &[], &mut term).unwrap_err();
    assert!(matches!(err, PassphraseError::NoneToOpen), "{err:?}");
    assert!(err.to_string().contains("DSTORE_PASSPHRASE"), "{err}");
    assert!(term.asked.is_empty());
}

#[test]
fn creating_asks_twice_and_refuses_a_mismatch() {
    let mut term = Scripted::new(true, &[Some("new pw"), Some("new pw")]);
    let (p, _) = get(Purpose::Create, &[], &mut term).unwrap();
    assert_eq!(p.expose(), "new pw");
    assert_eq!(term.asked, ["New passphrase: ", "Repeat the passphrase: "]);

    let mut term = Scripted::new(true, &[Some("one"), Some("two")]);
    let err = get(Purpose::Create, &[], &mut term).unwrap_err();
    assert!(matches!(err, PassphraseError::Mismatch), "{err:?}");
    assert!(!err.to_string().contains("one") || !err.to_string().contains("two"));

    let mut term = Scripted::new(true, &[Some("")]);
    let err = get(Purpose::Create, &[], &mut term).unwrap_err();
    assert!(
        matches!(err, PassphraseError::Empty(Source::Terminal)),
        "{err:?}"
    );
    assert_eq!(
        term.asked.len(),
        1,
        "an empty first answer is refused before the second"
    );

    let mut term = Scripted::new(true, &[None]);
    let err = get(Purpose::Create, &[], &mut term).unwrap_err();
    assert!(matches!(err, PassphraseError::Cancelled), "{err:?}");

    // From the environment, creating does not ask at all.
    let mut term = Scripted::new(true, &[]);
    let (p, s) = get(Purpose::Create, &[("DSTORE_PASSPHRASE", "env")], &mut term).unwrap();
    assert_eq!((p.expose(), s), ("env", Source::Env));
}

#[test]
fn passphrase_debug_and_display_redact() {
    let p = Passphrase::new("top secret");
    assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
    assert_eq!(format!("{p}"), "<redacted>");
}

#[test]
fn hidden_line_editing() {
    let read = |bytes: &[u8]| read_hidden_line(&mut Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(read(b"secret\r"), Some("secret".into()));
    assert_eq!(read(b"secret\nnext line"), Some("secret".into()));
    assert_eq!(read(b"secrex\x7ft\n"), Some("secret".into()));
    assert_eq!(read(b"abc\x08\x08\x08\x08xy\r"), Some("xy".into()));
    assert_eq!(read("pé\x7f\x7fa\r".as_bytes()), Some("a".into()));
    assert_eq!(
        read("mot de passe é\r".as_bytes()),
        Some("mot de passe é".into())
    );
    assert_eq!(read(b"garbage\x15clean\r"), Some("clean".into()));
    assert_eq!(read(b"half\x03typed\r"), None);
    assert_eq!(read(b"\x04"), None);
    assert_eq!(read(b"a\x04b\r"), Some("ab".into()));
    assert_eq!(read(b"no newline"), None);
    assert_eq!(read(b"\r"), Some(String::new()));
    assert!(read_hidden_line(&mut Cursor::new(vec![0xff, b'\r'])).is_err());
}

/// The real prompt on a pseudo-terminal: echo is off while the line is read (nothing typed comes
/// back on the terminal), and the terminal's settings are restored afterwards.
#[test]
fn terminal_prompt_reads_without_echo_and_restores_the_terminal() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = File::from(pty.master);
    let slave = File::from(pty.slave);
    let before = tcgetattr(&slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ECHO));

    let reader = slave.try_clone().unwrap();
    let asking = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let line = ask_on(&reader, &mut shown, "Passphrase: ").unwrap();
        (line, shown)
    });
    // Type only once echo is off, as a person would after the prompt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tcgetattr(&slave)
        .unwrap()
        .local_flags
        .contains(LocalFlags::ECHO)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "echo never turned off"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    master.write_all(b"s3cret words\r").unwrap();
    let (line, shown) = asking.join().unwrap();
    assert_eq!(line.as_deref(), Some("s3cret words"));
    assert_eq!(shown, b"Passphrase: \n");

    let after = tcgetattr(&slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    // Everything the terminal displayed up to a marker written now: no echo of the passphrase.
    (&slave).write_all(b"END\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.windows(3).any(|w| w == b"END") {
        let n = master.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        !seen.contains("s3cret"),
        "the passphrase was echoed: {seen:?}"
    );
}

#[test]
fn configured_file_comes_after_the_environment_and_before_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo-passphrase");
    std::fs::write(&demo, "from-demo\n").unwrap();
    let mut term = Scripted::new(true, &[]);
    let env = env_of(&[("DSTORE_PASSPHRASE", "from-env")]);
    let (p, s) = obtain_with_file(Purpose::Open, &env, Some(&demo), &mut term).unwrap();
    assert_eq!((p.expose(), s), ("from-env", Source::Env));
    let none = env_of(&[]);
    let (p, s) = obtain_with_file(Purpose::Create, &none, Some(&demo), &mut term).unwrap();
    assert_eq!((p.expose(), s), ("from-demo", Source::ConfigFile));
    assert!(term.asked.is_empty(), "the terminal was not asked");
    let missing = dir.path().join("missing");
    let err = obtain_with_file(Purpose::Open, &none, Some(&missing), &mut term).unwrap_err();
    assert!(
        err.to_string().contains("the configured passphrase file"),
        "{err}"
    );
}
