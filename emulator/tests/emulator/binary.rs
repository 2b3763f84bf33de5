//! The `dstore-emulator` binary prints one JSON line and serves until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstore-emulator"))
        .args([
            "--state-dir",
            dir.path().to_str().unwrap(),
            "--no-rate-limits",
            "--url-ttl",
            "60",
            "--link-rate",
            "100000000",
            "--connection-rate",
            "50000000",
            "--webhook-channel-limit",
            "30/60",
            "--shared-retry-after",
            "45",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let base = info["base_url"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v10/channels/{}", info["channel_id"]))
        .header(
            "authorization",
            format!("Bot {}", info["token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
    assert!(info["guild_id"].as_u64().is_some());
    assert!(dir.path().join("meta.json").exists());
}
