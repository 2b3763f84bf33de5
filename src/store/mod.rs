//! The Discord side: a small [`PartStore`] trait (put, find, read, delete a part; the channel's
//! size limit) and its bot implementation; rate limiting and retries are their own layer below.

mod backoff;
mod bot;
mod error;
mod ratelimit;
mod transport;

use std::future::Future;

use bytes::Bytes;
use time::OffsetDateTime;

pub use backoff::Backoff;
pub use bot::BotStore;
pub use error::{StoreError, PERMISSIONS};

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
}

pub trait PartStore: Send + Sync + 'static {
    /// Posts a part; succeeds only when Discord returned the message with an attachment of
    /// exactly the bytes sent.
    fn put_part(
        &self,
        part: PutPart,
    ) -> impl Future<Output = Result<RemotePart, StoreError>> + Send;

    /// Every attachment in `channel` posted at or after `since` whose name starts with `prefix`.
    fn find_parts(
        &self,
        channel_id: u64,
        prefix: &str,
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<RemotePart>, StoreError>> + Send;

    /// The part in message `message_id`, with a freshly signed URL (never a stored one).
    fn locate_part(
        &self,
        channel_id: u64,
        message_id: u64,
        attachment_id: u64,
    ) -> impl Future<Output = Result<RemotePart, StoreError>> + Send;

    /// Downloads the bytes of a part found moments ago (its URL is fresh).
    fn read_part(
        &self,
        part: &RemotePart,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send;

    /// The largest attachment `channel` accepts, from its server's boost tier.
    fn part_size_limit(
        &self,
        channel_id: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
