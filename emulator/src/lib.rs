//! A local Discord REST API + CDN emulator: the routes, JSON shapes, limits and failures dstore meets.

mod api;
mod cdn;
mod config;
mod faults;
mod json;
mod link;
mod model;
mod persist;
mod query;
mod ratelimit;
mod server;
mod shared;
mod snowflake;
mod stats;
mod store;

pub use cdn::GONE as CDN_GONE_BODY;
pub use config::{EmulatorConfig, RateLimits};
pub use faults::{Fault, FaultAction, FaultRoute, Faults};
pub use model::{Access, AttachmentInfo, MessageInfo};
pub use server::{Emulator, WebhookInfo};
pub use snowflake::DISCORD_EPOCH_MS;
pub use stats::{ChannelStats, LaneStats, ScopeCounts, Stats};
