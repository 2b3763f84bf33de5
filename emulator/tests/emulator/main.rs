//! Integration tests of the emulator over HTTP, one module per area.

mod common;

mod binary;
mod cdn;
mod faults;
mod link;
mod messages;
mod rate_limits;
mod resources;
mod restart;
mod serenity_shapes;
mod webhooks;
