//! `forget <folder> --keep-last N --keep-daily N ...` (docs/sync.md 6): deletes the snapshots of a
//! synced folder that the retention policy does not keep (restic's rules); `prune` then frees
//! the packs no snapshot and no file still needs.

use std::collections::{BTreeSet, HashSet};

use anyhow::{bail, Result};
use time::OffsetDateTime;

use super::upload2::RepoKeys;
use super::Session;
use crate::catalog::MessageRef;
use crate::render::plural;
use crate::repo::catalogue::scan;
use crate::store::PartStore;

/// How many snapshots to keep, by rule; a snapshot kept by any rule stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: usize,
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// The seqs `policy` keeps among `snapshots` (`(seq, time)`): the `last` newest, and for each
/// period rule the newest snapshot of each of the N most recent periods that have one (UTC);
/// the newest snapshot always.
pub fn keep(snapshots: &[(u64, OffsetDateTime)], policy: &Policy) -> BTreeSet<u64> {
    let mut newest_first: Vec<(u64, OffsetDateTime)> = snapshots.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut kept = BTreeSet::new();
    if let Some(first) = newest_first.first() {
        kept.insert(first.0);
    }
    for (seq, _) in newest_first.iter().take(policy.last) {
        kept.insert(*seq);
    }
    type Bucket = fn(OffsetDateTime) -> (i32, u32, u32);
    let rules: [(usize, Bucket); 5] = [
        (policy.hourly, |t| {
            (t.year(), t.ordinal() as u32, t.hour() as u32)
        }),
        (policy.daily, |t| (t.year(), t.ordinal() as u32, 0)),
        (policy.weekly, |t| {
            let (y, w, _) = t.to_iso_week_date();
            (y, w as u32, 0)
        }),
        (policy.monthly, |t| (t.year(), t.month() as u32, 0)),
        (policy.yearly, |t| (t.year(), 0, 0)),
    ];
    for (n, bucket) in rules {
        let mut seen = HashSet::new();
        for (seq, t) in &newest_first {
            if seen.len() >= n {
                break;
            }
            if seen.insert(bucket(t.to_offset(time::UtcOffset::UTC))) {
                kept.insert(*seq);
            }
        }
    }
    kept
}

/// What forget did (or, dry, would do).
#[derive(Debug, Default, Clone)]
pub struct Forgotten {
    pub kept: Vec<u64>,
    pub forgotten: Vec<u64>,
    pub messages: usize,
}

pub async fn forget(
    s: &Session,
    repo: &RepoKeys,
    spec: &str,
    policy: &Policy,
    dry_run: bool,
) -> Result<Forgotten> {
    if policy.is_empty() {
        bail!("give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly; forget keeps only what they name");
    }
    let (folder, sub) = super::sync::resolve_or_fail(s, spec)?;
    if !sub.is_empty() {
        bail!("forget works on a whole folder; name the folder, not {spec:?}");
    }
    let store = s.store()?;
    let trusted = store.trusted_authors().await?;
    let found = scan(store.as_ref(), &repo.keys, &s.config.channels, &trusted).await?;
    let folders = super::sync::folders(s);
    // Discord's snapshots of the folder, and any this machine holds besides.
    let mut all: Vec<(u64, OffsetDateTime, Vec<MessageRef>)> = found
        .snapshots
        .values()
        .filter(|f| f.snapshot.folder == folder.id)
        .map(|f| {
            let mut at = vec![f.head];
            at.extend(f.pieces.iter().copied());
            (f.snapshot.seq, f.snapshot.time, at)
        })
        .collect();
    for l in folders.snapshots(&folder.id)? {
        if !all.iter().any(|(seq, _, _)| *seq == l.snapshot.seq) {
            all.push((l.snapshot.seq, l.snapshot.time, Vec::new()));
        }
    }
    let times: Vec<(u64, OffsetDateTime)> = all.iter().map(|(s, t, _)| (*s, *t)).collect();
    let kept = keep(&times, policy);
    let mut out = Forgotten {
        kept: kept.iter().copied().collect(),
        ..Forgotten::default()
    };
    all.sort_by_key(|(seq, _, _)| *seq);
    for (seq, _, messages) in all {
        if kept.contains(&seq) {
            continue;
        }
        out.forgotten.push(seq);
        if dry_run {
            continue;
        }
        // Pieces first, the head last, as deleting the head first would leave pieces nobody names.
        for m in messages.iter().rev() {
            store.delete_message(m.channel_id, m.message_id).await?;
            out.messages += 1;
        }
        folders.remove_snapshot(&folder.id, seq)?;
    }
    Ok(out)
}

pub async fn command(s: &Session, spec: &str, policy: &Policy, dry_run: bool) -> Result<()> {
    s.require_bot("forget")?;
    let Some(repo) = s.repository().await? else {
        bail!("there is no format-2 repository here or on Discord, so nothing to forget");
    };
    let repo = RepoKeys::from(repo.as_ref());
    let done = forget(s, &repo, spec, policy, dry_run).await?;
    let list = |v: &[u64]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verb = if dry_run { "would forget" } else { "forgot" };
    println!(
        "{spec}: keeping {} ({}); {verb} {}{}.{}",
        plural(done.kept.len() as u64, "snapshot"),
        list(&done.kept),
        plural(done.forgotten.len() as u64, "snapshot"),
        if done.forgotten.is_empty() {
            String::new()
        } else {
            format!(" ({})", list(&done.forgotten))
        },
        if dry_run || done.forgotten.is_empty() {
            ""
        } else {
            " `prune` frees the packs no snapshot or file needs any more."
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keeps_what_each_rule_names() {
        let snaps = vec![
            (1, datetime!(2026-11-01 10:00 UTC)),
            (2, datetime!(2026-11-30 09:00 UTC)),
            (3, datetime!(2026-12-01 08:00 UTC)),
            (4, datetime!(2026-12-01 09:30 UTC)),
            (5, datetime!(2026-12-02 07:00 UTC)),
            (6, datetime!(2026-12-02 07:40 UTC)),
        ];
        let last = |n| Policy {
            last: n,
            ..Policy::default()
        };
        assert_eq!(keep(&snaps, &last(2)), BTreeSet::from([5, 6]));
        let daily = Policy {
            daily: 3,
            ..Policy::default()
        };
        // The newest of each of the 3 latest days.
        assert_eq!(keep(&snaps, &daily), BTreeSet::from([2, 4, 6]));
        let hourly = Policy {
            hourly: 2,
            ..Policy::default()
        };
        assert_eq!(keep(&snaps, &hourly), BTreeSet::from([4, 6]));
        let monthly = Policy {
            monthly: 5,
            ..Policy::default()
        };
        assert_eq!(keep(&snaps, &monthly), BTreeSet::from([2, 6]));
        let both = Policy {
            last: 1,
            yearly: 1,
            weekly: 2,
            ..Policy::default()
        };
        let kept = keep(&snaps, &both);
        assert!(kept.contains(&6) && kept.len() >= 2, "{kept:?}");
        // The newest always stays, even with rules that keep nothing else.
        assert_eq!(keep(&snaps[..1], &last(0)), BTreeSet::from([1]));
    }
}
