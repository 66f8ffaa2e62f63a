//! The small helpers several of berth's crates need, each defined once so
//! that they cannot drift apart: atomic file writes (`fs`), ids (`id`),
//! timestamps (`time`) and systemd slice paths (`systemd`). No
//! dependencies: the per-container binaries link it.

pub mod fs;
pub mod id;
pub mod systemd;
pub mod time;
