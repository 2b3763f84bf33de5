//! `delete`: removes a file's messages from Discord (in bulk where Discord allows it), forgetting
//! each part manifest as its message is confirmed gone, then the file's folder; a delete that
//! stops half-way, run again, deals only with what is left. `--keep-remote` and `undelete` only
//! hide and show a file.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use time::OffsetDateTime;

use super::{entries, Session};
use crate::catalog::remote::EntryName;
use crate::catalog::{parse_attachment_name, Catalog, FileManifest, Status};
use crate::progress::Progress;
use crate::render::human_bytes;
use crate::store::{BotStore, StoreError};

/// Discord's epoch in Unix ms: a snowflake's top 42 bits count from it (discord-api.md §4).
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Bulk delete refuses messages older than two weeks (discord-api.md §4); an hour less leaves
/// room for clock skew and for the time a long delete takes.
const BULK_MAX_AGE_MS: u64 = (14 * 24 - 1) * 60 * 60 * 1000;
/// Ids per bulk delete: 2 to 100 (discord-api.md §4).
const BULK_MAX: usize = 100;

pub async fn delete(s: &Session, id: &str, yes: bool, keep_remote: bool) -> Result<()> {
    let _lock = s.catalog.lock(id)?;
    let file = s.catalog.load_file(id)?;
    if keep_remote {
        return hide(s, file).await;
    }
    if !yes && !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal, so dstore cannot ask before deleting {id}; add `--yes` to delete it");
    }
    let store = s.store()?;
    if !yes && !confirm(&file, s.catalog.part_indices(id).len()).await? {
        s.say(format_args!("Nothing was deleted."));
        return Ok(());
    }
    if file.format == crate::catalog::FORMAT_V2 {
        let repo = super::upload2::repo_keys(s, id).await?;
        let removed = super::delete2::delete(s, &repo, &file).await.map_err(|e| {
            anyhow!("delete of {id} stopped: {e:#}; run `delete {id}` again to finish")
        })?;
        s.catalog.remove_file(id)?;
        tracing::info!(id = %id, entries = removed.entries, packs = removed.packs, "deleted");
        s.say(format_args!(
            "Deleted {} ({id}): {} removed from Discord{}.",
            file.name,
            crate::render::plural((removed.entries + removed.packs) as u64, "message"),
            if removed.shared > 0 {
                format!(
                    "; {} other files use kept",
                    crate::render::plural(removed.shared as u64, "pack")
                )
            } else {
                String::new()
            }
        ));
        return Ok(());
    }
    let targets = targets(s, &store, &file).await?;
    let total = targets.len();
    let bytes = targets.iter().map(|t| t.bytes).sum();
    let mut run = Run {
        store: &store,
        catalog: &s.catalog,
        id,
        removed: 0,
        progress: Progress::new(s.progress, &format!("delete {id}"), bytes),
    };
    run.progress.set_parts(0, total as u64);
    let result = run.all(targets).await;
    run.progress.finish();
    if let Err(e) = result {
        bail!(
            "delete of {id} stopped after {}/{}: {e}; run `delete {id}` again to finish",
            run.removed,
            crate::render::plural(total as u64, "message")
        );
    }
    s.catalog.remove_file(id)?;
    tracing::info!(id = %id, messages = total, "deleted");
    s.say(format_args!(
        "Deleted {} ({id}): {} removed from Discord.",
        file.name,
        crate::render::plural(total as u64, "message")
    ));
    Ok(())
}

pub async fn undelete(s: &Session, id: &str) -> Result<()> {
    let _lock = s.catalog.lock(id)?;
    let mut file = s.catalog.load_file(id)?;
    if !file.hidden {
        s.say(format_args!(
            "{} ({id}) is not hidden; `list` already shows it.",
            file.name
        ));
        return Ok(());
    }
    file.hidden = false;
    file.updated_at = OffsetDateTime::now_utc();
    s.catalog.save_file(&file)?;
    mirror_hidden(s, &mut file, "undelete").await?;
    s.say(format_args!(
        "Restored {} ({id}); `list` shows it again.",
        file.name
    ));
    Ok(())
}

/// Tells the manifest on Discord whether the file is hidden, so `recover` keeps it that way.
async fn mirror_hidden(s: &Session, file: &mut FileManifest, command: &str) -> Result<()> {
    if file.status != Status::Complete {
        return Ok(());
    }
    let id = file.id.clone();
    if file.format == crate::catalog::FORMAT_V2 {
        let repo = super::upload2::repo_keys(s, &id).await?;
        return super::upload2::publish(s, &repo, file).await.map_err(|e| {
            anyhow!(
                "{id} is changed here, but its catalogue entry on Discord could not be updated ({e:#}); run `{command} {id}` again"
            )
        });
    }
    super::publish::publish_manifest(s, file).await.map_err(|e| {
        if e.downcast_ref::<entries::Refused>().is_some() {
            return anyhow!("{id} is changed here only: {e}, and `{command} {id}` again");
        }
        anyhow!(
            "{id} is changed here, but its catalogue entry on Discord could not be updated ({e:#}); run `{command} {id}` again"
        )
    })
}

/// `delete --keep-remote`: hides the file from `list`; its parts stay on Discord, and its
/// manifest there is updated so `recover` keeps it hidden.
async fn hide(s: &Session, mut file: FileManifest) -> Result<()> {
    let id = file.id.clone();
    if !file.hidden {
        file.hidden = true;
        file.updated_at = OffsetDateTime::now_utc();
        s.catalog.save_file(&file)?;
    }
    mirror_hidden(s, &mut file, "delete --keep-remote").await?;
    s.say(format_args!(
        "Hid {} ({id}) from `list`; its parts stay on Discord. `undelete {id}` brings it back and `list --all` shows it.",
        file.name
    ));
    Ok(())
}

/// Asks on the terminal; true only for `y` or `yes`. Ctrl-C or Ctrl-D answers no: the answer
/// is read in raw mode, so Ctrl-C is a key here, not a signal, and nothing is left reading the
/// terminal once the question is answered.
async fn confirm(file: &FileManifest, parts: usize) -> Result<bool> {
    let question = format!(
        "Delete {} ({}, {}) from Discord? [y/N] ",
        file.name,
        human_bytes(file.size),
        crate::render::plural(
            parts as u64,
            if file.format == crate::catalog::FORMAT_V2 {
                "pack"
            } else {
                "part"
            }
        )
    );
    super::init::ask_yes(&question).await
}

/// One message to remove; `part` is the index of the part manifest recording it, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target {
    channel: u64,
    message: u64,
    part: Option<u64>,
    bytes: u64,
    /// What it is, in the order messages go: the entry's heads, its pieces, then parts.
    rank: Rank,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Head,
    Piece,
    Part,
}

/// Every message of the file we posted: its catalogue entries (the recorded one and any other
/// a kill or a failed delete left, heads before pieces, so no entry on Discord outlives the
/// parts it names), then the recorded parts, then parts no record names (an upload that never
/// finished, a damaged part manifest). Messages others posted under the file's names are
/// reported and left alone.
async fn targets(s: &Session, store: &BotStore, file: &FileManifest) -> Result<Vec<Target>> {
    let target = |channel, message, part, bytes, rank| Target {
        channel,
        message,
        part,
        bytes,
        rank,
    };
    let mut out: Vec<Target> = file
        .remote_manifest
        .iter()
        .map(|r| target(r.channel_id, r.message_id, None, 0, Rank::Head))
        .collect();
    let loaded = s.catalog.load_parts(&file.id)?;
    out.extend(loaded.parts.iter().map(|p| {
        target(
            p.channel_id,
            p.message_id,
            Some(p.index),
            p.length,
            Rank::Part,
        )
    }));
    let mut seen: HashSet<u64> = out.iter().map(|t| t.message).collect();
    let id = file.id.as_str();
    let wanted = |name: &str| {
        parse_attachment_name(id, name).is_some()
            || EntryName::parse(name).is_some_and(|n| n.id() == id)
    };
    let trust = entries::trust(s, store).await?;
    let found = entries::scan_file(s, store, &trust, file, &wanted)
        .await
        .map_err(|e| anyhow!("cannot look for the messages of {id} on Discord: {e}"))?;
    found.warn_strangers(&format!("part of {id}"));
    for p in found.ours {
        let rank = match EntryName::parse(&p.filename) {
            Some(EntryName::Head(_)) => Rank::Head,
            Some(EntryName::Piece(..)) => Rank::Piece,
            None => Rank::Part,
        };
        if seen.insert(p.message_id) {
            out.push(target(p.channel_id, p.message_id, None, p.size, rank));
        }
    }
    Ok(out)
}

/// The deletes in order, channel by channel. Every catalogue head goes first, so no entry on
/// Discord is left naming a deleted part wherever a delete stops: in the first request of its
/// channel's deletes when that one request takes every head (one channel, young messages: the
/// usual case), else alone before anything else. Then the channel of the recorded entry, then
/// channels holding pieces, then the rest.
fn schedule(mut targets: Vec<Target>, now_ms: u64) -> Vec<(u64, Vec<Step>)> {
    targets.sort_by_key(|t| t.rank);
    let is_head = |t: &&Target| t.rank == Rank::Head;
    let heads = targets.iter().filter(is_head).count();
    let lead = targets.iter().find(is_head).map(|t| t.channel);
    let sorted = |mut groups: Vec<(u64, Vec<Target>)>| {
        groups.sort_by_key(|(channel, ts)| {
            let first = ts.iter().map(|t| t.rank).min();
            (Some(*channel) != lead, first, *channel)
        });
        groups
    };
    let together: Vec<(u64, Vec<Step>)> = sorted(group(targets.clone()))
        .into_iter()
        .map(|(channel, ts)| (channel, plan(ts, now_ms)))
        .collect();
    let first_takes_all = match together.first().and_then(|(_, steps)| steps.first()) {
        Some(Step::Bulk(batch)) => batch.iter().filter(is_head).count() == heads,
        Some(Step::Single(t)) => heads == 0 || (heads == 1 && t.rank == Rank::Head),
        None => true,
    };
    if first_takes_all {
        return together;
    }
    let (first, rest): (Vec<Target>, Vec<Target>) =
        targets.into_iter().partition(|t| t.rank == Rank::Head);
    group(first)
        .into_iter()
        .chain(sorted(group(rest)))
        .map(|(channel, ts)| (channel, plan(ts, now_ms)))
        .collect()
}

/// Targets by channel, each channel's in the order given.
fn group(targets: Vec<Target>) -> Vec<(u64, Vec<Target>)> {
    let mut by_channel: BTreeMap<u64, Vec<Target>> = BTreeMap::new();
    for t in targets {
        by_channel.entry(t.channel).or_default().push(t);
    }
    by_channel.into_iter().collect()
}

/// How one channel's messages go.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// 2 to 100 messages younger than two weeks, in one request.
    Bulk(Vec<Target>),
    /// One message: old, or alone.
    Single(Target),
}

/// When a snowflake was made, in Unix ms.
fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// Splits one channel's messages into bulk batches (young ones) and single deletes (old ones
/// and a lone young one), in the order that deletes the first target first.
fn plan(targets: Vec<Target>, now_ms: u64) -> Vec<Step> {
    let young_first = targets
        .first()
        .is_some_and(|t| now_ms.saturating_sub(snowflake_ms(t.message)) < BULK_MAX_AGE_MS);
    let (young, old): (Vec<Target>, Vec<Target>) = targets
        .into_iter()
        .partition(|t| now_ms.saturating_sub(snowflake_ms(t.message)) < BULK_MAX_AGE_MS);
    let bulk = young.chunks(BULK_MAX).map(|c| match c {
        [one] => Step::Single(*one),
        many => Step::Bulk(many.to_vec()),
    });
    let single = old.into_iter().map(Step::Single);
    if young_first {
        bulk.chain(single).collect()
    } else {
        single.chain(bulk).collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A delete under way.
struct Run<'a> {
    store: &'a BotStore,
    catalog: &'a Catalog,
    id: &'a str,
    removed: usize,
    progress: Progress,
}

impl Run<'_> {
    async fn all(&mut self, targets: Vec<Target>) -> Result<()> {
        for (channel, steps) in schedule(targets, now_ms()) {
            self.channel(channel, steps).await?;
        }
        Ok(())
    }

    async fn channel(&mut self, channel: u64, steps: Vec<Step>) -> Result<()> {
        let mut bulk_allowed = true;
        for step in steps {
            let batch = match step {
                Step::Single(t) => vec![t],
                Step::Bulk(batch) if bulk_allowed => {
                    let ids: Vec<u64> = batch.iter().map(|t| t.message).collect();
                    match self.store.bulk_delete(channel, &ids).await {
                        Ok(()) => {
                            for t in &batch {
                                self.gone(t)?;
                            }
                            continue;
                        }
                        // Too old after all (a clock off by more than the margin) or refused
                        // for its count: one by one works for any message.
                        Err(StoreError::Rejected { status: 400, .. }) => batch,
                        // Bulk delete needs Manage Messages, which the README does not ask
                        // for; deleting its own messages one by one needs no permission.
                        Err(StoreError::MissingPermissions { .. }) => {
                            tracing::warn!("the bot lacks Manage Messages in channel {channel}, so its messages are deleted one by one");
                            bulk_allowed = false;
                            batch
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Step::Bulk(batch) => batch,
            };
            for t in &batch {
                self.store.delete_message(t.channel, t.message).await?;
                self.gone(t)?;
            }
        }
        Ok(())
    }

    /// Records that a message is gone from Discord.
    fn gone(&mut self, t: &Target) -> Result<()> {
        if let Some(index) = t.part {
            self.catalog.remove_part(self.id, index)?;
        }
        self.removed += 1;
        self.progress.part_done(t.bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn at(ms: u64, n: u64) -> Target {
        Target {
            channel: 1,
            message: ((ms - DISCORD_EPOCH_MS) << 22) | n,
            part: Some(n),
            bytes: 1,
            rank: Rank::Part,
        }
    }

    #[test]
    fn snowflake_time_follows_discords_epoch() {
        // The example in Discord's reference: 175928847299117063 is 2016-04-30T11:18:25.796Z.
        assert_eq!(snowflake_ms(175_928_847_299_117_063), 1_462_015_105_796);
    }

    #[test]
    fn young_messages_go_in_batches_of_100_old_ones_alone() {
        let now = 1_700_000_000_000;
        let mut targets: Vec<Target> = (0..201).map(|n| at(now - DAY_MS, n)).collect();
        targets.push(at(now - 15 * DAY_MS, 500));
        targets.push(at(now - 14 * DAY_MS + 60_000, 501)); // inside the margin: too old
        let steps = plan(targets, now);
        let shape: Vec<usize> = steps
            .iter()
            .map(|s| match s {
                Step::Bulk(b) => b.len(),
                Step::Single(_) => 1,
            })
            .collect();
        assert_eq!(shape, [100, 100, 1, 1, 1]);
        assert!(matches!(steps[2], Step::Single(t) if t.part == Some(200)));
        assert!(matches!(steps[3], Step::Single(t) if t.part == Some(500)));
    }

    fn ranked(t: Target, channel: u64, rank: Rank) -> Target {
        Target { channel, rank, ..t }
    }

    /// The steps of a schedule as (channel, message numbers), message numbers from `at`.
    fn shape(s: Vec<(u64, Vec<Step>)>) -> Vec<(u64, Vec<u64>)> {
        let n = |t: &Target| t.message & 0x3f_ffff;
        s.into_iter()
            .flat_map(|(c, steps)| {
                steps.into_iter().map(move |step| match step {
                    Step::Bulk(b) => (c, b.iter().map(n).collect()),
                    Step::Single(t) => (c, vec![n(&t)]),
                })
            })
            .collect()
    }

    #[test]
    fn catalogue_heads_go_first_in_any_channel_order() {
        let now = 1_700_000_000_000;
        let young = |n| at(now - DAY_MS, n);
        // One channel, all young: one bulk request with the head first.
        let one = vec![ranked(young(9), 1, Rank::Head), young(0), young(1)];
        assert_eq!(shape(schedule(one, now)), [(1, vec![9, 0, 1])]);
        // The entry in channel 5, parts in 1 and 5: channel 5 (its head) goes first.
        let two = vec![
            ranked(young(9), 5, Rank::Head),
            young(0),
            ranked(young(1), 5, Rank::Part),
            young(2),
        ];
        assert_eq!(
            shape(schedule(two, now)),
            [(5, vec![9, 1]), (1, vec![0, 2])]
        );
        // A stray head elsewhere, or one too old to go in the first bulk: heads alone first.
        let stray = vec![
            ranked(young(9), 5, Rank::Head),
            ranked(young(8), 1, Rank::Head),
            ranked(young(1), 5, Rank::Part),
            young(2),
            ranked(young(7), 1, Rank::Piece),
        ];
        assert_eq!(
            shape(schedule(stray, now)),
            [(1, vec![8]), (5, vec![9]), (5, vec![1]), (1, vec![7, 2])]
        );
        let old_stray = vec![
            ranked(young(9), 1, Rank::Head),
            ranked(at(now - 20 * DAY_MS, 8), 1, Rank::Head),
            young(1),
            young(2),
        ];
        assert_eq!(
            shape(schedule(old_stray, now)),
            [(1, vec![9]), (1, vec![8]), (1, vec![1, 2])]
        );
    }

    #[test]
    fn an_old_first_target_is_deleted_first() {
        let now = 1_700_000_000_000;
        let steps = plan(
            vec![
                at(now - 20 * DAY_MS, 0),
                at(now - DAY_MS, 1),
                at(now - DAY_MS, 2),
            ],
            now,
        );
        assert!(matches!(steps[0], Step::Single(t) if t.part == Some(0)));
        assert!(matches!(&steps[1], Step::Bulk(b) if b.len() == 2));
        assert!(plan(Vec::new(), now).is_empty());
    }
}
