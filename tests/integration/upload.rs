//! Round trips of every size class, channel spreading, part size from the boost tier, 413
//! shrinking, and a part JSON per confirmed part.

use dstore::catalog::Status;
use dstore::config::PartSize;
use sha2::{Digest, Sha256};

use crate::common::{round_trip, upload, Env, PART};

#[tokio::test]
async fn round_trips_of_every_size_class() {
    let env = Env::new().await;
    let s = env.session();
    let p = PART as usize;
    for (size, parts) in [
        (0, 0),
        (1, 1),
        (p, 1),
        (p + 1, 2),
        (2 * p - 1, 2),
        (2 * p, 2),
        (7 * p + 3, 8),
    ] {
        let m = round_trip(&env, &s, size).await;
        assert_eq!(
            s.catalog.load_parts(&m.id).unwrap().parts.len(),
            parts,
            "size {size}"
        );
        assert_eq!(
            env.attachments_of(&m.id).len(),
            parts,
            "no extra messages for size {size}"
        );
        let want = hex::encode(Sha256::digest(crate::common::random_bytes(
            size,
            size as u64 ^ 0x9e37,
        )));
        assert_eq!(m.sha256.as_deref(), Some(want.as_str()));
    }
}

#[tokio::test]
async fn attachment_names_carry_only_id_and_index() {
    let env = Env::new().await;
    let s = env.session();
    let m = round_trip(&env, &s, 3 * PART as usize).await;
    let mut names = env.attachments_of(&m.id);
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("{}.0.part", m.id),
            format!("{}.1.part", m.id),
            format!("{}.2.part", m.id)
        ]
    );
    for msg in env.emu.messages(env.emu.channel_id()) {
        assert!(
            !msg.content.contains("f196608"),
            "no file name in the message"
        );
    }
}

#[tokio::test]
async fn parts_spread_across_channels() {
    let env = Env::new().await;
    let second = env.emu.add_channel(env.emu.guild_id());
    let first = env.emu.channel_id();
    let s = env.session_with(|c| c.channels = vec![first, second]);
    let path = env.file("spread.bin", 4 * PART as usize);
    let m = upload(&s, &path).await.unwrap();
    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    let on = |c: u64| parts.iter().filter(|p| p.channel_id == c).count();
    assert_eq!((on(first), on(second)), (2, 2));
    assert_eq!(env.emu.messages(second).len(), 2);
    assert_eq!(env.stored_bytes(&s, &m.id), std::fs::read(&path).unwrap());
}

#[tokio::test]
async fn auto_part_size_follows_the_boost_tier() {
    let env = Env::new().await;
    let s = env.session_with(|c| c.part_size = PartSize::Auto);
    let path = env.file("tiny.bin", 10);
    assert_eq!(
        upload(&s, &path).await.unwrap().part_size,
        10_485_760 - 65_536
    );
    env.emu.set_premium_tier(env.emu.guild_id(), 2);
    assert_eq!(
        upload(&s, &path).await.unwrap().part_size,
        52_428_800 - 65_536
    );
}

#[tokio::test]
async fn part_too_large_shrinks_and_carries_on() {
    let env = Env::new().await;
    env.emu.set_upload_limit(env.emu.guild_id(), Some(100_000));
    let s = env.session_with(|c| c.part_size = PartSize::Fixed(256 * 1024));
    let path = env.file("shrink.bin", 700_000);
    let m = upload(&s, &path).await.unwrap();
    assert_eq!(m.status, Status::Complete);
    assert!(m.part_size <= 100_000, "part size is now {}", m.part_size);
    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    assert!(parts.iter().all(|p| p.length <= 100_000));
    assert_eq!(env.stored_bytes(&s, &m.id), std::fs::read(&path).unwrap());
    assert!(env.emu.stats().status(413) >= 1);
}

#[tokio::test]
async fn shrinking_keeps_parts_already_stored() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(200_000);
        c.set_concurrency(1);
    });
    // The first two parts go through, then the server's limit drops (a boost lapses).
    env.fault(
        dstore_emulator::FaultRoute::CreateMessage,
        2,
        1,
        dstore_emulator::FaultAction::Stall(std::time::Duration::from_millis(1)),
    );
    let guild = env.emu.guild_id();
    let path = env.file("lapse.bin", 1_000_000);
    let emu_limit = async {
        while env.emu.faults().pending() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        env.emu.set_upload_limit(guild, Some(120_000));
    };
    let (m, ()) = tokio::join!(upload(&s, &path), emu_limit);
    let m = m.unwrap();
    let parts = s.catalog.load_parts(&m.id).unwrap().parts;
    assert!(
        parts.iter().filter(|p| p.length == 200_000).count() >= 2,
        "early parts kept"
    );
    assert!(parts.iter().any(|p| p.length <= 120_000));
    assert_eq!(
        env.attachments_of(&m.id).len(),
        parts.len(),
        "nothing stored twice"
    );
    assert_eq!(env.stored_bytes(&s, &m.id), std::fs::read(&path).unwrap());
}
