//! Lanes (docs/lanes.md): format-2 packs posted through webhooks as well as bot channels, each to
//! the lane that can take it soonest; webhook-only uploads, downloads and deletes; dead
//! webhooks left out; a failing lane that holds nobody up; webhook tokens kept secret.

use dstore::commands::{delete2, download, Session};
use dstore::config::{parse_webhook_url, PartSize, Secret, Webhook};
use dstore_emulator::{FaultAction, FaultRoute, WebhookInfo};
use tokio_util::sync::CancellationToken;

use crate::cli::run;
use crate::common::{random_bytes, Env};
use crate::upload2::{rebuilt, repo, upload2, ATTACHMENT};

fn hook(info: &WebhookInfo) -> Webhook {
    parse_webhook_url(&info.url).unwrap()
}

/// A session posting through `hooks`, with the bot (`bot`) or without a token.
fn lanes_session(env: &Env, hooks: Vec<Webhook>, bot: bool) -> Session {
    env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.webhooks = hooks;
        if !bot {
            c.token = Secret::new("");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_alone_upload_download_and_delete_a_file() {
    let env = Env::new().await;
    let channel = env.emu.channel_id();
    let info = env.emu.create_webhook(channel);
    let s = lanes_session(&env, vec![hook(&info)], false);
    s.config.require_remote().unwrap();
    let r = repo(true);
    let data = random_bytes(3_500_000, 21);
    let path = env.dir.path().join("w.bin");
    std::fs::write(&path, &data).unwrap();
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let records = s.catalog.load_packs(&m.id).unwrap();
    assert!(records.len() >= 3, "{} packs", records.len());
    assert!(records.iter().all(|p| p.webhook_id == Some(info.id)));
    let stats = env.emu.stats();
    // Every pack and the entry came through the webhook; the bot posted nothing.
    assert_eq!(
        stats.webhook(info.id).messages_created,
        records.len() as u64 + 1
    );
    assert_eq!(stats.channel(channel).bot.messages_created, 0);
    let msgs = env.emu.messages(channel);
    assert!(msgs.iter().all(|m| m.webhook_id == Some(info.id)));

    // Read back through the webhook's message route, by another session (nothing cached).
    let s2 = lanes_session(&env, vec![hook(&info)], false);
    let dest = env.dir.path().join("back.bin");
    let out = download::download_v2(
        &s2,
        &r.keys,
        &m.id,
        Some(&dest),
        false,
        true,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(out).unwrap(), data);

    let removed = delete2::delete(&s2, &r, &m).await.unwrap();
    assert_eq!((removed.entries, removed.packs), (1, records.len()));
    assert!(env.emu.messages(channel).is_empty(), "everything deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_spread_over_the_bot_and_two_webhooks() {
    let env = Env::new().await;
    let channel = env.emu.channel_id();
    let (a, b) = (
        env.emu.create_webhook(channel),
        env.emu.create_webhook(channel),
    );
    let s = lanes_session(&env, vec![hook(&a), hook(&b)], true);
    let r = repo(false);
    let data = random_bytes(9_000_000, 5);
    let path = env.dir.path().join("spread.bin");
    std::fs::write(&path, &data).unwrap();
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let records = s.catalog.load_packs(&m.id).unwrap();
    let stats = env.emu.stats();
    let (on_a, on_b) = (
        stats.webhook(a.id).messages_created,
        stats.webhook(b.id).messages_created,
    );
    // The bot posted its packs and the entry.
    let by_bot = stats.channel(channel).bot.messages_created - 1;
    assert!(
        on_a >= 1 && on_b >= 1 && by_bot >= 1,
        "bot {by_bot}, a {on_a}, b {on_b}"
    );
    assert_eq!(on_a + on_b + by_bot, records.len() as u64);
    // Each record names the lane that posted it.
    let count = |w: Option<u64>| records.iter().filter(|p| p.webhook_id == w).count() as u64;
    assert_eq!(
        (count(Some(a.id)), count(Some(b.id)), count(None)),
        (on_a, on_b, by_bot)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_webhook_or_a_wrong_token_is_left_out_and_never_called_again() {
    let env = Env::new().await;
    let channel = env.emu.channel_id();
    let (gone, wrong, good) = (
        env.emu.create_webhook(channel),
        env.emu.create_webhook(channel),
        env.emu.create_webhook(channel),
    );
    assert!(env.emu.delete_webhook(gone.id));
    let bad_token = Webhook {
        id: wrong.id,
        token: Secret::new("x".repeat(68)),
    };
    let s = lanes_session(&env, vec![hook(&gone), bad_token, hook(&good)], false);
    let r = repo(true);
    let data = random_bytes(2_500_000, 8);
    let path = env.dir.path().join("d.bin");
    std::fs::write(&path, &data).unwrap();
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    // A second upload in the same session asks neither again.
    let other = env.dir.path().join("e.bin");
    std::fs::write(&other, random_bytes(1_500_000, 9)).unwrap();
    upload2(&s, &r, &other).await.unwrap();
    let stats = env.emu.stats();
    assert_eq!(
        stats.by_status.get(&404).copied().unwrap_or(0),
        1,
        "{stats:?}"
    );
    assert_eq!(
        stats.by_status.get(&401).copied().unwrap_or(0),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.webhook(gone.id).messages_created, 0);
    assert_eq!(stats.webhook(wrong.id).messages_created, 0);
    assert!(stats.webhook(good.id).messages_created >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_failing_with_5xx_holds_up_no_other() {
    let env = Env::new().await;
    let channel = env.emu.channel_id();
    let (sick, well) = (
        env.emu.create_webhook(channel),
        env.emu.create_webhook(channel),
    );
    env.fault(
        FaultRoute::ExecuteWebhookOf(sick.id),
        0,
        1000,
        FaultAction::Status(502),
    );
    let s = lanes_session(&env, vec![hook(&sick), hook(&well)], true);
    let r = repo(true);
    let data = random_bytes(6_000_000, 13);
    let path = env.dir.path().join("f.bin");
    std::fs::write(&path, &data).unwrap();
    let started = std::time::Instant::now();
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let records = s.catalog.load_packs(&m.id).unwrap();
    let stats = env.emu.stats();
    assert_eq!(stats.webhook(sick.id).messages_created, 0);
    assert!(stats.by_status.get(&502).copied().unwrap_or(0) >= 1);
    assert!(records.iter().all(|p| p.webhook_id != Some(sick.id)));
    assert!(
        stats.webhook(well.id).messages_created >= 1
            && stats.channel(channel).bot.messages_created >= 2,
        "{stats:?}"
    );
    // Nothing posted twice: one message per pack, and the entry.
    assert_eq!(
        env.emu.messages(channel).len(),
        records.len() + 1,
        "no copies"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_without_a_bot_says_in_one_sentence_that_it_needs_one() {
    let env = Env::new().await;
    let info = env.emu.create_webhook(env.emu.channel_id());
    let s = lanes_session(&env, vec![hook(&info)], false);
    for command in [
        dstore::cli::Command::Recover { json: false },
        dstore::cli::Command::RebuildIndex,
    ] {
        let err = s
            .run(command, CancellationToken::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a bot token"), "{err}");
        assert_eq!(err.matches(". ").count(), 0, "one sentence: {err}");
        assert!(!err.contains(&info.token));
    }
    assert_eq!(env.emu.stats().requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_tokens_never_appear_in_output_logs_manifests_or_on_discord() {
    let env = Env::new().await;
    let channel = env.emu.channel_id();
    let (good, gone) = (
        env.emu.create_webhook(channel),
        env.emu.create_webhook(channel),
    );
    env.emu.delete_webhook(gone.id);
    // A failure on the way, so error paths and retries are logged too.
    env.fault(
        FaultRoute::ExecuteWebhookOf(good.id),
        1,
        1,
        FaultAction::Status(500),
    );
    let path = env.file("t.bin", 300_000);
    let home = env.dir.path().join("home");
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dstore"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("DSTORE_CHANNELS", channel.to_string())
        .env("DSTORE_API_BASE", env.emu.base_url())
        .env("DSTORE_DATA_DIR", env.data_dir())
        .env("DSTORE_WEBHOOKS", format!("{},{}", gone.url, good.url))
        .env("DSTORE_FORMAT", "2")
        .env("DSTORE_PASSPHRASE", "correct horse battery staple")
        .env("RUST_LOG", "trace")
        .args(["-v", "upload"])
        .arg(&path);
    let out = run(c, "").await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stderr
            .matches(&format!("warning: webhook {}", gone.id))
            .count(),
        1,
        "{stderr}"
    );
    let mut everything = walk(&env.data_dir());
    for m in env.emu.messages(channel) {
        everything += &m.content;
        for a in m.attachments {
            everything += &a.filename;
            everything +=
                &String::from_utf8_lossy(&env.emu.attachment_bytes(a.id).unwrap_or_default());
        }
    }
    assert!(
        everything.contains("upload started"),
        "the log file was read"
    );
    for token in [&good.token, &gone.token] {
        assert!(!stdout.contains(token.as_str()), "stdout: {stdout}");
        assert!(!stderr.contains(token.as_str()), "stderr: {stderr}");
        assert!(
            !everything.contains(token.as_str()),
            "in the data dir or on Discord"
        );
    }
    assert!(env.emu.stats().webhook(good.id).messages_created >= 2);
}

fn walk(dir: &std::path::Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all += &walk(&p);
        } else {
            all += &p.display().to_string();
            all += &String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default());
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_429_holds_back_every_webhook_of_the_channel_not_only_the_one_refused() {
    use dstore::store::{Lane, PartStore, PutPart};
    let env = Env::with(|c| {
        c.rate_limits = Some(dstore_emulator::RateLimits {
            webhook_channel: (2, std::time::Duration::from_secs(60)),
            webhook_channel_retry_after: std::time::Duration::from_secs(3),
            ..Default::default()
        });
    })
    .await;
    let channel = env.emu.channel_id();
    let (a, b) = (
        env.emu.create_webhook(channel),
        env.emu.create_webhook(channel),
    );
    let s = lanes_session(&env, vec![hook(&a), hook(&b)], false);
    let store = s.store().unwrap();
    assert_eq!(store.live_webhooks().await.unwrap().len(), 2);
    let post = |n: u32| PutPart {
        channel_id: channel,
        filename: format!("p{n}.bin"),
        nonce: format!("n{n}"),
        data: bytes::Bytes::from(vec![n as u8; 1000]),
        reload: None,
    };
    for n in 0..2 {
        store
            .put_part_on(Lane::Webhook(a.id), post(n))
            .await
            .unwrap();
    }
    // The channel's hidden cap is full: the third post is refused with scope `shared` and
    // waits; meanwhile the other webhook of that channel is held back too.
    let third = {
        let store = store.clone();
        let part = post(2);
        tokio::spawn(async move { store.put_part_on(Lane::Webhook(a.id), part).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env.emu.stats().rate_limited.shared == 0 {
        assert!(std::time::Instant::now() < deadline, "no shared 429");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let held = store.lane_ready(Lane::Webhook(b.id));
    assert!(
        held > tokio::time::Instant::now() + std::time::Duration::from_secs(1),
        "webhook {} of the same channel waits with the refused one",
        b.id
    );
    third.await.unwrap().unwrap();
    store
        .put_part_on(Lane::Webhook(b.id), post(3))
        .await
        .unwrap();
    assert_eq!(
        env.emu.stats().rate_limited.shared,
        1,
        "the cap was hit once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_spread_over_lanes_in_proportion_to_what_each_allows() {
    // Discord's folklore limits (the emulator's defaults): the bot's channel 5 creates per 5 s,
    // a webhook 5 executes per 2 s. Packs come faster than either allows.
    let env = Env::with(|c| c.rate_limits = Some(Default::default())).await;
    let channel = env.emu.channel_id();
    let w = env.emu.create_webhook(channel);
    let s = lanes_session(&env, vec![hook(&w)], true);
    let r = repo(false);
    let data = random_bytes(20 * ATTACHMENT as usize - 200_000, 31);
    let path = env.dir.path().join("p.bin");
    std::fs::write(&path, &data).unwrap();
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let records = s.catalog.load_packs(&m.id).unwrap();
    let stats = env.emu.stats();
    let by_hook = records
        .iter()
        .filter(|p| p.webhook_id == Some(w.id))
        .count();
    let by_bot = records.len() - by_hook;
    // While both are busy the webhook takes 2.5 packs for each of the bot's: by 5 s the bot's
    // first window (5) and the webhook's first three (15), then the bot's second window opens
    // a second before the webhook's fourth. Spread evenly, each would have taken about half.
    assert!(
        by_bot >= 4 && 2 * by_hook >= 3 * by_bot,
        "bot {by_bot}, webhook {by_hook} of {}",
        records.len()
    );
    assert_eq!(
        (stats.webhook(w.id).messages_created as usize)
            + stats.channel(channel).bot.messages_created as usize,
        records.len() + 1
    );
    // Each lane was paced by its own limit from its first window on: Discord refused nothing.
    assert_eq!(stats.rate_limited.total(), 0, "{:?}", stats.rate_limited);
    assert_eq!(stats.invalid_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_429_holds_back_every_bot_lane_for_its_wait() {
    let env = Env::new().await;
    let first = env.emu.channel_id();
    let second = env.emu.add_channel(env.emu.guild_id());
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.channels = vec![first, second];
        // Two in flight: the refused create and one beside it.
        c.set_concurrency(2);
    });
    let r = repo(true);
    let data = random_bytes(8 * ATTACHMENT as usize, 41);
    let path = env.dir.path().join("g.bin");
    std::fs::write(&path, &data).unwrap();
    // The first create is refused by the global limit, for 2 s.
    env.fault(
        FaultRoute::CreateMessage,
        0,
        1,
        FaultAction::RateLimit {
            retry_after: 2.0,
            global: true,
        },
    );
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let stats = env.emu.stats();
    assert_eq!(stats.rate_limited.global, 1);
    // Counted from the 429's answer: what dstore cannot have heard of before may go.
    let began = stats.last_global_429_ms.expect("the 429 was answered");
    // Both channels carried packs, and neither posted anything during the global wait.
    let (a, b) = (env.emu.messages(first), env.emu.messages(second));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "{} and {}",
        a.len(),
        b.len()
    );
    // The create in flight beside the refused one may land, and on a busy machine one more
    // sent as that one finished, before the 429 reached dstore; without the global wait all
    // eight packs would land inside it.
    let inside: Vec<u64> = a
        .iter()
        .chain(&b)
        .filter(|m| m.timestamp >= began && m.timestamp < began + 1_900)
        .map(|m| m.timestamp - began)
        .collect();
    assert!(
        inside.len() <= 2,
        "messages {inside:?} ms after the start, inside the 2 s global wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bot_channel_fills_each_window_even_when_posts_are_slow() {
    // Discord's 5 creates per 5 s, and each pack takes about 1.5 s to send. A fixed four in
    // flight sends a window's fifth pack only once one of the first four is done, 1.5 s later;
    // through the scheduler all five leave together.
    let env = Env::with(|c| {
        c.rate_limits = Some(Default::default());
        c.connection_bytes_per_sec = Some(ATTACHMENT * 2 / 3);
    })
    .await;
    let s = env.session_with(|c| c.part_size = PartSize::Fixed(ATTACHMENT));
    let r = repo(false);
    let data = random_bytes(11 * ATTACHMENT as usize - 300_000, 51);
    let path = env.dir.path().join("w.bin");
    std::fs::write(&path, &data).unwrap();
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let mut at: Vec<u64> = env
        .emu
        .messages(env.emu.channel_id())
        .iter()
        .filter(|m| m.attachments.len() == 1 && m.attachments[0].size > 512 * 1024)
        .map(|m| m.timestamp)
        .collect();
    at.sort_unstable();
    assert!(at.len() >= 10, "{} packs", at.len());
    let since: Vec<u64> = at.iter().map(|t| t - at[0]).collect();
    assert!(
        at.windows(5).any(|w| w[4] - w[0] < 700),
        "no five packs landed together (ms after the first: {since:?})"
    );
    assert_eq!(env.emu.stats().rate_limited.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_reply_lost_without_a_bot_is_noted_and_a_bot_prune_removes_the_copy() {
    let env = Env::new().await;
    let channel = env.emu.channel_id();
    let info = env.emu.create_webhook(channel);
    let s = lanes_session(&env, vec![hook(&info)], false);
    let r = repo(true);
    let data = random_bytes(2_500_000, 27);
    let path = env.dir.path().join("l.bin");
    std::fs::write(&path, &data).unwrap();
    // The first pack is stored, then its connection drops before the reply.
    env.fault(
        FaultRoute::ExecuteWebhook,
        0,
        1,
        FaultAction::ResetAfterCommit,
    );
    let m = upload2(&s, &r, &path).await.unwrap();
    assert_eq!(rebuilt(&env, &r, &m), data);
    let records = s.catalog.load_packs(&m.id).unwrap();
    // The packs, the entry, and the one copy nothing records.
    assert_eq!(env.emu.messages(channel).len(), records.len() + 2);
    let lost = s.catalog.lost_replies(&m.id);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!((lost[0].pack, lost[0].webhook), (0, info.id));

    // `stats` counts it; a prune with the bot's token finds the copy (a pack no entry uses)
    // and removes it, and the note with it; the file still comes back whole.
    let bot = lanes_session(&env, vec![hook(&info)], true);
    let st = dstore::commands::stats::compute(&bot).await.unwrap();
    assert_eq!(st.lost_replies, 1);
    let opts = dstore::commands::prune::PruneOpts {
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    let report = dstore::commands::prune::prune(&bot, &r, opts)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1, "{report:?}");
    assert_eq!(env.emu.messages(channel).len(), records.len() + 1);
    assert!(bot.catalog.lost_replies(&m.id).is_empty());
    assert_eq!(rebuilt(&env, &r, &m), data);
}
