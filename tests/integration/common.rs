//! Shared set-up: an emulator per test, a session pointed at it, seeded test files, and the
//! bytes the emulator holds for a file, reassembled from its part manifests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dstore::catalog::FileManifest;
use dstore::commands::{upload, Session};
use dstore::config::{Config, PartSize, Secret};
use dstore::progress::ProgressMode;
use dstore_emulator::{Emulator, EmulatorConfig, Fault, FaultAction, FaultRoute};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const PART: u64 = 64 * 1024;

pub struct Env {
    pub emu: Emulator,
    pub dir: TempDir,
}

impl Env {
    /// An emulator without rate limits (tests about rate limits turn them on).
    pub async fn new() -> Self {
        Self::with(|c| c.rate_limits = None).await
    }

    pub async fn with(f: impl FnOnce(&mut EmulatorConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EmulatorConfig::new(dir.path().join("emulator"));
        f(&mut cfg);
        let emu = Emulator::start(cfg).await.unwrap();
        Self { emu, dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> Config {
        Config {
            token: Secret::new(self.emu.token()),
            channels: vec![self.emu.channel_id()],
            api_base: self.emu.base_url(),
            data_dir: self.data_dir(),
            part_size: PartSize::Fixed(PART),
            concurrency: 4,
            concurrency_set: false,
            // Generous, so a loaded machine never times a test out; tests of the idle timeout set their own.
            request_timeout: Duration::from_secs(20),
            retries: 5,
            source: None,
            retry_base: Duration::from_millis(10),
            format: dstore::config::StorageFormat::V1,
            encryption: true,
            webhooks: Vec::new(),
            passphrase_file: None,
        }
    }

    pub fn session(&self) -> Session {
        self.session_with(|_| {})
    }

    pub fn session_with(&self, f: impl FnOnce(&mut Config)) -> Session {
        let mut c = self.config();
        f(&mut c);
        Session::new(c, ProgressMode::Hidden).unwrap()
    }

    /// A file of `size` seeded pseudo-random bytes.
    pub fn file(&self, name: &str, size: usize) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, random_bytes(size, size as u64 ^ 0x9e37)).unwrap();
        path
    }

    /// The file as the emulator holds it, from the part manifests in offset order.
    pub fn stored_bytes(&self, s: &Session, id: &str) -> Vec<u8> {
        let parts = s.catalog.load_parts(id).unwrap().parts;
        let mut out = Vec::new();
        for p in parts {
            assert_eq!(p.offset, out.len() as u64, "parts tile the file");
            let bytes = self
                .emu
                .attachment_bytes(p.attachment_id)
                .expect("part is on Discord");
            assert_eq!(bytes.len() as u64, p.length);
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// The part attachments on the emulator's channel that belong to file `id`.
    pub fn attachments_of(&self, id: &str) -> Vec<String> {
        self.emu
            .messages(self.emu.channel_id())
            .into_iter()
            .flat_map(|m| m.attachments)
            .map(|a| a.filename)
            .filter(|n| n.starts_with(&format!("{id}.")) && n.ends_with(".part"))
            .collect()
    }

    /// A session that sends one part at a time and never retries, so a fault lands exactly
    /// where a test puts it.
    pub fn strict_session(&self) -> Session {
        self.session_with(|c| {
            c.set_concurrency(1);
            c.retries = 0;
        })
    }

    /// Starts an upload of `parts` parts that stops (retry budget spent) after `done` of them;
    /// returns its ID. Use a [`Env::strict_session`].
    pub async fn interrupted(&self, s: &Session, name: &str, parts: u64, done: u32) -> String {
        self.fault(
            FaultRoute::CreateMessage,
            done,
            100,
            FaultAction::Status(500),
        );
        let path = self.file(name, (parts * PART) as usize);
        upload(s, &path).await.unwrap_err();
        self.emu.faults().clear();
        let files = s.catalog.all().unwrap().into_iter().flatten();
        files
            .filter(|m| m.name == name)
            .map(|m| m.id)
            .next()
            .unwrap()
    }

    pub fn fault(&self, route: FaultRoute, skip: u32, times: u32, action: FaultAction) {
        self.emu.faults().push(Fault {
            route,
            skip,
            times,
            action,
        });
    }
}

pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

pub async fn upload(s: &Session, path: &Path) -> anyhow::Result<FileManifest> {
    upload::upload(s, path, true, CancellationToken::new()).await
}

pub async fn resume(s: &Session, id: &str) -> anyhow::Result<FileManifest> {
    upload::resume(s, id, true, CancellationToken::new()).await
}

/// Uploads, checks the file is complete and byte-identical on the emulator, returns it.
pub async fn round_trip(env: &Env, s: &Session, size: usize) -> FileManifest {
    let path = env.file(&format!("f{size}.bin"), size);
    let m = upload(s, &path).await.unwrap();
    assert_eq!(m.status, dstore::catalog::Status::Complete);
    assert_eq!(env.stored_bytes(s, &m.id), std::fs::read(&path).unwrap());
    m
}
