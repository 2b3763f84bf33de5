//! The Discord side: a small [`PartStore`] trait (put, find, read, delete a part; the channel's
//! size limit) and its bot implementation; rate limiting and retries are their own layer below.

mod backoff;
mod bot;
mod error;
mod idle;
pub mod lanes;
mod ratelimit;
mod retry;
mod transport;
mod wait;
mod webhook;

use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use time::OffsetDateTime;

pub use bot::BotStore;
pub use error::{SourceChanged, StoreError, PERMISSIONS};
pub use wait::rate_limit_wait;
pub use webhook::Lane;

/// Which attachment names a search keeps.
pub type NameFilter<'a> = dyn Fn(&str) -> bool + Send + Sync + 'a;

/// A part's bytes as they arrive.
pub type PartStream = futures::stream::BoxStream<'static, Result<Bytes, StoreError>>;

/// A part as Discord holds it: where it is, and a URL valid for a while (never to be stored).
#[derive(Clone, Debug)]
pub struct RemotePart {
    pub channel_id: u64,
    pub message_id: u64,
    pub attachment_id: u64,
    pub filename: String,
    pub size: u64,
    pub url: String,
    pub posted_at: OffsetDateTime,
    /// Who posted the message: a user ID (or, for a webhook's message, the webhook's ID).
    pub author_id: u64,
}

/// One part to post: `data` becomes the message's only attachment, named `filename`.
#[derive(Clone, Debug)]
pub struct PutPart {
    pub channel_id: u64,
    pub filename: String,
    /// Sent with `enforce_nonce`, so a retry after a lost reply returns the first message
    /// instead of creating a second (discord-api.md §1.4 / create message).
    pub nonce: String,
    pub data: Bytes,
    /// Where the bytes can be read again. With it, the first attempt hands `data` itself to the
    /// request (serenity's attachments are `Vec<u8>`) and a retry re-reads the source, so no
    /// second copy of the part is kept in memory; without it, each attempt copies `data`.
    pub reload: Option<Reload>,
}

/// At most this many attachments in one message (discord-api.md §1.3).
pub const MAX_ATTACHMENTS: usize = 10;

/// One message to post holding several attachments: each `(filename, bytes)` one attachment,
/// in order, under distinct names.
#[derive(Clone, Debug)]
pub struct PutMessage {
    pub channel_id: u64,
    /// As [`PutPart::nonce`]: the same for every try of this message, and for no other message.
    pub nonce: String,
    pub attachments: Vec<(String, Bytes)>,
    /// A retry past the nonce window that finds the attachments already posted (same names and
    /// bytes) takes that message only when its ID is above this one: a copy posted before this
    /// message was asked for (one about to be deleted) is never taken for it. 0 for none.
    pub newer_than: u64,
}

/// A part's place in its source file, and the SHA-256 its bytes must still have.
#[derive(Clone, Debug)]
pub struct Reload {
    pub path: PathBuf,
    pub offset: u64,
    pub length: u64,
    pub sha256: String,
}

impl Reload {
    /// The part's bytes, read again; a source that changed since is an error, never sent.
    pub fn read(&self) -> Result<Vec<u8>, StoreError> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; self.length as usize];
        std::fs::File::open(&self.path)
            .and_then(|f| f.read_exact_at(&mut buf, self.offset))
            .map_err(|e| SourceChanged::new(&self.path, format!("cannot read it again: {e}")))?;
        if crate::hash::sha256_hex(&buf) != self.sha256 {
            return Err(SourceChanged::new(
                &self.path,
                format!(
                    "bytes {}..{} differ from when they were read",
                    self.offset,
                    self.offset + self.length
                ),
            )
            .into());
        }
        Ok(buf)
    }
}

pub trait PartStore: Send + Sync + 'static {
    /// Posts a part; succeeds only when Discord returned the message with an attachment of
    /// exactly the bytes sent.
    fn put_part(
        &self,
        part: PutPart,
    ) -> impl Future<Output = Result<RemotePart, StoreError>> + Send;

    /// Posts a part on `lane` (a channel through the bot, or a webhook); `part.channel_id` is
    /// ignored. The default knows channels only.
    fn put_part_on(
        &self,
        lane: Lane,
        part: PutPart,
    ) -> impl Future<Output = Result<RemotePart, StoreError>> + Send {
        async move {
            match lane {
                Lane::Channel(channel_id) => self.put_part(PutPart { channel_id, ..part }).await,
                Lane::Webhook(_) => Err(StoreError::NoLane),
            }
        }
    }

    /// The lanes an upload spreads its packs over; empty when packs go to the file's channels
    /// in turn (no webhook configured).
    fn upload_lanes(&self) -> impl Future<Output = Result<Vec<Lane>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// When `lane` could post without a rate-limit wait.
    fn lane_ready(&self, _lane: Lane) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// Takes the rate-limit slot `lane` has now for a message about to be posted there (the
    /// post then leaves without waiting); false when it has none. The default has no limits.
    fn reserve_lane(&self, _lane: Lane) -> bool {
        true
    }

    /// Messages per second `lanes` allow together by Discord's rate limits, as known now;
    /// `None` when unknown (the default).
    fn lanes_rate(&self, _lanes: &[Lane]) -> Option<f64> {
        None
    }

    /// Whether channel history can be read (it needs a bot token).
    fn reads_history(&self) -> bool {
        true
    }

    /// Posts one message holding every attachment of `message` (1 to [`MAX_ATTACHMENTS`]);
    /// succeeds only when Discord returned the message with each attachment of exactly the
    /// bytes sent, and returns them in the order given. As for [`PartStore::put_part`], a try
    /// whose reply was lost is never posted again blindly: within the nonce window Discord
    /// returns the first message, past it the message is looked for first.
    fn put_parts(
        &self,
        message: PutMessage,
    ) -> impl Future<Output = Result<Vec<RemotePart>, StoreError>> + Send;

    /// Every attachment in `channel` posted at or after `since` whose name is `wanted`; the
    /// others are passed over as the history is paged, never kept.
    fn find_parts(
        &self,
        channel_id: u64,
        wanted: &NameFilter<'_>,
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<RemotePart>, StoreError>> + Send;

    /// The part in message `message_id`, with a freshly signed URL (never a stored one).
    fn locate_part(
        &self,
        channel_id: u64,
        message_id: u64,
        attachment_id: u64,
    ) -> impl Future<Output = Result<RemotePart, StoreError>> + Send;

    /// Starts downloading a part found moments ago, as a stream of chunks.
    fn stream_part(
        &self,
        part: &RemotePart,
    ) -> impl Future<Output = Result<PartStream, StoreError>> + Send;

    /// Downloads the bytes of a part found moments ago (its URL is fresh).
    fn read_part(
        &self,
        part: &RemotePart,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send;

    /// Bytes `range` of a part found moments ago: a `Range` request answered with `206` and
    /// exactly those bytes, or a `200` with the whole attachment (exactly `part.size` bytes),
    /// cut to the range. An expired URL is refreshed through the message, as for
    /// [`PartStore::stream_part`]. A range past the attachment's end is an error, never short.
    /// The default downloads the whole part and cuts it (for stores without ranges).
    fn read_range(
        &self,
        part: &RemotePart,
        range: std::ops::Range<u64>,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send {
        let part = part.clone();
        async move {
            let all = self.read_part(&part).await?;
            cut_range(all, part.size, &range)
        }
    }

    /// [`PartStore::read_range`] into `buf` where the store can (a spare buffer of an earlier
    /// range, so a download reuses its memory); the default ignores it.
    fn read_range_into(
        &self,
        part: &RemotePart,
        range: std::ops::Range<u64>,
        buf: bytes::BytesMut,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send {
        drop(buf);
        self.read_range(part, range)
    }

    /// The authors whose messages count as dstore's own: the bot's user (configured webhooks'
    /// IDs join here once webhooks post). Messages by anyone else are never trusted or adopted.
    fn trusted_authors(&self) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// The largest attachment `channel` accepts, from its server's boost tier.
    fn part_size_limit(
        &self,
        channel_id: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// `range` of a whole attachment `all` that must be `size` bytes long.
pub(crate) fn cut_range(
    all: Bytes,
    size: u64,
    range: &std::ops::Range<u64>,
) -> Result<Bytes, StoreError> {
    if all.len() as u64 != size {
        return Err(StoreError::CutOff(format!(
            "{} of {size} bytes arrived",
            all.len()
        )));
    }
    if range.start > range.end || range.end > size {
        return Err(StoreError::RangeOutside {
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(all.slice(range.start as usize..range.end as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_answer_is_cut_only_when_it_is_the_whole_attachment() {
        let all = Bytes::from_static(b"0123456789");
        assert_eq!(&cut_range(all.clone(), 10, &(2..5)).unwrap()[..], b"234");
        assert_eq!(cut_range(all.clone(), 10, &(10..10)).unwrap().len(), 0);
        assert!(matches!(
            cut_range(all.clone(), 12, &(2..5)),
            Err(StoreError::CutOff(_))
        ));
        assert!(matches!(
            cut_range(all, 10, &(8..11)),
            Err(StoreError::RangeOutside { .. })
        ));
    }

    #[test]
    fn reload_reads_the_part_again_and_refuses_changed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let reload = Reload {
            path: path.clone(),
            offset: 3,
            length: 4,
            sha256: crate::hash::sha256_hex(b"3456"),
        };
        assert_eq!(reload.read().unwrap(), b"3456");
        std::fs::write(&path, b"012xxx6789").unwrap();
        assert!(matches!(reload.read(), Err(StoreError::Source(_))));
        std::fs::write(&path, b"012").unwrap();
        assert!(matches!(reload.read(), Err(StoreError::Source(_))));
    }
}
