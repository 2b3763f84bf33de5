//! `prune` of a format-2 repository: dead packs deleted, mostly dead packs repacked, entries
//! rewritten, and a prune killed at any step loses nothing and finishes when run again.

use std::time::Duration;

use dstore::commands::prune::{prune, PruneOpts};
use dstore::config::PartSize;
use dstore::repo::crypto::ObjectKind;
use dstore_emulator::{FaultAction, FaultRoute};
use tokio_util::sync::CancellationToken;

use crate::common::{random_bytes, Env};
use crate::upload2::{kinds, put, rebuilt, repo, upload2, ATTACHMENT};

fn now() -> PruneOpts {
    PruneOpts {
        grace: Duration::ZERO,
        ..PruneOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_repacks_mostly_dead_packs_and_a_killed_prune_loses_nothing() {
    let env = Env::new().await;
    let s = env.session_with(|c| {
        c.part_size = PartSize::Fixed(ATTACHMENT);
        c.retries = 0;
    });
    let r = repo(true);
    let a_data = random_bytes(3_000_000, 41);
    // b shares a's first ~250 KB: a few chunks of a's first pack.
    let mut b_data = a_data[..250_000].to_vec();
    b_data.extend_from_slice(&random_bytes(400_000, 42));
    let a = put(&env, "a.bin", &a_data);
    let b = put(&env, "b.bin", &b_data);
    let ma = upload2(&s, &r, &a).await.unwrap();
    let mb = upload2(&s, &r, &b).await.unwrap();
    let shared = ma.packs[0].clone();
    assert!(mb.packs.contains(&shared), "b uses a's first pack");
    dstore::commands::delete2::delete(&s, &r, &ma)
        .await
        .unwrap();
    s.catalog.remove_file(&ma.id).unwrap();

    // Young packs are left alone by default.
    let dry = prune(&s, &r, PruneOpts::default()).await.unwrap();
    assert_eq!((dry.deleted, dry.repacked), (0, 0));
    assert!(dry.young >= 2);

    // A dry run says what it would do and touches nothing.
    let (posts, packs) = (
        env.emu.stats().messages_created,
        kinds(&env, &r, ObjectKind::Pack),
    );
    let plan = prune(
        &s,
        &r,
        PruneOpts {
            dry_run: true,
            ..now()
        },
    )
    .await
    .unwrap();
    assert!(plan.repacked >= 1 && plan.deleted_bytes > 0, "{plan:?}");
    assert!(
        plan.summary(true).contains("would free"),
        "{}",
        plan.summary(true)
    );
    assert_eq!(env.emu.stats().messages_created, posts);
    assert_eq!(kinds(&env, &r, ObjectKind::Pack), packs);

    // Killed after the new pack is posted, before the new entry: b still reads from the old pack.
    let posts = env.emu.stats().messages_created;
    env.fault(FaultRoute::CreateMessage, 1, 100, FaultAction::Status(500));
    assert!(prune(&s, &r, now()).await.is_err());
    env.emu.faults().clear();
    assert_eq!(
        env.emu.stats().messages_created,
        posts + 1,
        "one new pack, no entry"
    );
    assert_eq!(
        rebuilt(&env, &r, &s.catalog.load_file(&mb.id).unwrap()),
        b_data
    );

    // Killed while deleting the old packs: b's new entry is posted and recorded.
    env.fault(FaultRoute::DeleteMessage, 1, 100, FaultAction::Status(500));
    assert!(prune(&s, &r, now()).await.is_err());
    env.emu.faults().clear();
    let moved = s.catalog.load_file(&mb.id).unwrap();
    assert!(
        !moved.packs.contains(&shared),
        "b's chunks moved out of the mostly dead pack"
    );
    assert_eq!(moved.entry_version, Some(2));
    assert_eq!(rebuilt(&env, &r, &moved), b_data);

    // The run that finishes.
    let done = prune(&s, &r, now()).await.unwrap();
    assert_eq!(done.repacked, 0, "{done:?}");
    let again = prune(&s, &r, now()).await.unwrap();
    assert_eq!(
        (again.deleted, again.repacked, again.new_packs),
        (0, 0, 0),
        "nothing left to do"
    );
    let moved = s.catalog.load_file(&mb.id).unwrap();
    assert_eq!(
        kinds(&env, &r, ObjectKind::Pack),
        moved.packs.len(),
        "only b's packs remain"
    );
    assert_eq!(rebuilt(&env, &r, &moved), b_data);
    // A new machine recovers b at its new version.
    let fresh = env.session_with(|c| c.data_dir = env.dir.path().join("new"));
    let (got, _) = dstore::commands::recover2::recover(&fresh, &r, true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let back = fresh.catalog.load_file(&mb.id).unwrap();
    assert_eq!((back.entry_version, &back.packs), (Some(2), &moved.packs));
}
