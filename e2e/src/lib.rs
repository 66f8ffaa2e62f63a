//! End-to-end harness: real berthd processes, as root, each in its own
//! temporary root dir, state dir and socket, so tests run side by side.
//!
//! A test asks for root with [`root_or_skip`]: outside CI a non-root run
//! skips with a message; in CI (`CI=true`) it fails, never skipping silently.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

pub mod bench;
pub mod containerd;
pub mod daemon;
pub mod env;
pub mod fixture;
pub mod http;
pub mod memory;
pub mod netns;
pub mod podnet;
pub mod setup;

pub use daemon::{Berthd, BerthdBuilder};
pub use env::{bin_path, root_or_skip};
