//! `info`: the details and parts of one file as text (at most 20 part rows) and as JSON, with
//! the command to run next for complete, unfinished and hidden files.

use crate::cli::{dstore, run};
use crate::common::{round_trip, Env, PART};

async fn info(env: &Env, id: &str, json: bool) -> (bool, String, String) {
    let mut c = dstore(env);
    c.args(["info", id]);
    if json {
        c.arg("--json");
    }
    let out = run(c, "").await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_shows_details_twenty_parts_and_download_next() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 25 * PART as usize + 3).await;
    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    assert_eq!(parts.len(), 26);
    let (ok, out, err) = info(&env, &m.id, false).await;
    assert!(ok, "{err}");
    let size = 25 * PART + 3;
    for want in [
        format!("Name:      {}", m.name),
        format!("ID:        {}", m.id),
        format!("({size} bytes)"),
        m.sha256.clone().unwrap(),
        "complete, 26/26 parts".into(),
        "UTC (just now)".into(),
        format!("Part size: 64.0 KiB ({PART} bytes)"),
        m.source_path.display().to_string(),
        env.emu.channel_id().to_string(),
        "INDEX".into(),
        "... 6 more (info --json lists all)".into(),
    ] {
        assert!(out.contains(&want), "{want:?} missing in:\n{out}");
    }
    assert!(out.contains(&parts[19].message_id.to_string()));
    assert!(!out.contains(&parts[20].message_id.to_string()));
    assert_eq!(
        out.trim().lines().last().unwrap(),
        format!("Next: `download {}`", m.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lists_every_part_with_string_ids() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 22 * PART as usize).await;
    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    let (ok, out, err) = info(&env, &m.id, true).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], m.id.as_str());
    assert_eq!(v["name"], m.name.as_str());
    assert_eq!(v["size"], 22 * PART);
    assert_eq!(v["sha256"], m.sha256.clone().unwrap().as_str());
    assert_eq!(v["parts_total"], 22);
    assert_eq!(v["parts_done"], 22);
    assert_eq!(v["status"], "complete");
    assert!(v["created_at"].as_str().unwrap().contains('T'));
    assert_eq!(v["part_size"], PART);
    assert_eq!(
        v["source_path"],
        m.source_path.display().to_string().as_str()
    );
    assert_eq!(v["channels"][0], env.emu.channel_id().to_string().as_str());
    assert_eq!(v["hidden"], false);
    assert_eq!(v["next"], format!("download {}", m.id).as_str());
    let listed = v["parts"].as_array().unwrap();
    assert_eq!(listed.len(), 22);
    let (p, j) = (&parts[21], &listed[21]);
    assert_eq!(j["index"], p.index);
    assert_eq!(j["offset"], p.offset);
    assert_eq!(j["length"], p.length);
    assert_eq!(j["sha256"], p.sha256.as_str());
    assert_eq!(j["channel_id"], p.channel_id.to_string().as_str());
    assert_eq!(j["message_id"], p.message_id.to_string().as_str());
    assert_eq!(j["attachment_id"], p.attachment_id.to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_file_says_resume_and_hidden_file_says_undelete() {
    let env = Env::new().await;
    let s = env.strict_session();
    let id = env.interrupted(&s, "half.bin", 5, 2).await;
    let (ok, out, err) = info(&env, &id, true).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["sha256"], serde_json::Value::Null);
    assert_eq!(
        (v["parts_done"].as_u64(), v["parts_total"].as_u64()),
        (Some(2), Some(5))
    );
    assert_eq!(v["parts"].as_array().unwrap().len(), 2);
    assert_eq!(v["next"], format!("resume {id}").as_str());
    let (_, text, _) = info(&env, &id, false).await;
    assert!(text.contains("incomplete, 2/5 parts"), "{text}");
    assert!(text.contains(&format!("Next: `resume {id}`")), "{text}");

    let done = round_trip(&env, &env.session(), 2 * PART as usize).await;
    let mut hidden = s.catalog.load_file(&done.id).unwrap();
    hidden.hidden = true;
    s.catalog.save_file(&hidden).unwrap();
    let (_, out, _) = info(&env, &done.id, true).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hidden"], true);
    assert_eq!(v["next"], format!("undelete {}", done.id).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_is_one_sentence() {
    let env = Env::new().await;
    for json in [false, true] {
        let (ok, out, err) = info(&env, "abcdefghjk", json).await;
        assert!(!ok);
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("no file with ID") && err.contains("`list`"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_part_record_is_warned_and_resume_is_next() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    let parts = env.data_dir().join("files").join(&m.id).join("parts");
    std::fs::remove_file(parts.join("1.json")).unwrap();
    let (ok, out, err) = info(&env, &m.id, false).await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "bytes {PART}..{} of {} have no part record",
            2 * PART,
            m.id
        )),
        "{err}"
    );
    assert_eq!(
        out.trim().lines().last().unwrap(),
        format!("Next: `resume {}`", m.id)
    );
}
