//! The benchmark harness: the same CRI client code drives berth and
//! containerd (or any CRI endpoint) through named scenarios, and reports
//! per-step order statistics and, side by side, the ratio berth/containerd.
//!
//! Numbers from this harness are never asserted in tests: the smoke test
//! only checks that every scenario runs.

mod accounting;
mod containers;
pub mod report;
pub mod scenario;
pub mod stats;
mod streams;
pub mod target;

pub use scenario::{RunOpts, Scenario, ScenarioResult, StepResult};
pub use target::Target;
