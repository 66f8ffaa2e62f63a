//! Project policy written as tests: what a reviewer would otherwise have to
//! remember. No root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::path::{Path, PathBuf};

/// The workspace's crate directories, from its Cargo.toml.
fn members() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(|m| root.join(m))
        .collect()
}

#[test]
fn no_crate_has_module_cycles() {
    let mut found = Vec::new();
    for dir in members() {
        let src = dir.join("src");
        assert!(src.is_dir(), "{} has no src", dir.display());
        for cycle in berth_testkit::modules::module_cycles(&src) {
            found.push(format!("{}: {}", dir.display(), cycle.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}
