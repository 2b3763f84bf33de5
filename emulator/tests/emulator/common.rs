//! Shared test setup: an emulator on a temp dir, a reqwest client, and request helpers.

use dstore_emulator::{Emulator, EmulatorConfig};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tempfile::TempDir;

pub struct Env {
    pub emu: Emulator,
    pub dir: TempDir,
    pub http: Client,
}

/// An emulator without rate limits.
pub async fn start() -> Env {
    start_with(|c| c.rate_limits = None).await
}

pub async fn start_with(tweak: impl FnOnce(&mut EmulatorConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    tweak(&mut config);
    let emu = Emulator::start(config).await.unwrap();
    Env {
        emu,
        dir,
        http: Client::new(),
    }
}

impl Env {
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v10{path}", self.emu.base_url())
    }

    pub fn auth(&self) -> String {
        format!("Bot {}", self.emu.token())
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.api(path))
            .header("authorization", self.auth())
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http
            .delete(self.api(path))
            .header("authorization", self.auth())
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.http
            .post(self.api(path))
            .header("authorization", self.auth())
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A multipart create in serenity's order: `files[n]` parts, then `payload_json` (no Content-Type).
    pub async fn post_files(
        &self,
        channel_id: u64,
        payload: Value,
        files: &[(&str, Vec<u8>)],
    ) -> Response {
        self.try_post_files(channel_id, payload, files)
            .await
            .unwrap()
    }

    pub async fn try_post_files(
        &self,
        channel_id: u64,
        payload: Value,
        files: &[(&str, Vec<u8>)],
    ) -> reqwest::Result<Response> {
        let mut form = Form::new();
        for (i, (name, data)) in files.iter().enumerate() {
            let part = Part::bytes(data.clone())
                .file_name(name.to_string())
                .mime_str("application/octet-stream")
                .unwrap();
            form = form.part(format!("files[{i}]"), part);
        }
        form = form.text("payload_json", payload.to_string());
        let url = self.api(&format!("/channels/{channel_id}/messages"));
        self.http
            .post(url)
            .header("authorization", self.auth())
            .multipart(form)
            .send()
            .await
    }

    /// Uploads one part the way dstore does and returns the message JSON.
    pub async fn upload(&self, channel_id: u64, name: &str, data: Vec<u8>) -> Value {
        let payload = json!({ "content": format!("dstore/1 {name}"), "attachments": [{ "id": 0, "filename": name }] });
        let resp = self.post_files(channel_id, payload, &[(name, data)]).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

pub fn id(v: &Value) -> u64 {
    v.as_str().expect("snowflakes are strings").parse().unwrap()
}

/// Deterministic test bytes.
pub fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
