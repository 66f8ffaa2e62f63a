//! Containers through crashes, as root: berthd killed or stopped at the
//! worst moments (mid-removal, between a create's reservation and its
//! record, after a removal's unsynced commit), a pod's shim killed; on
//! each OCI runtime handler where it matters. Nothing may be lost, leaked
//! or left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{eventually, setup};
use k8s_cri::v1::*;

#[tokio::test]
async fn containers_outlive_a_killed_daemon() {
    if !root_or_skip("containers_outlive_a_killed_daemon") {
        return;
    }
    outlive("ctrkill", "berth").await;
}

#[tokio::test]
async fn containers_outlive_a_killed_daemon_with_runc() {
    if !root_or_skip("containers_outlive_a_killed_daemon_with_runc") {
        return;
    }
    outlive("ctrkillrunc", "runc").await;
}

async fn outlive(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox()).await;
    let ticker = s
        .run(
            "ticker",
            &[
                "sh",
                "-c",
                "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done",
            ],
        )
        .await;
    let short = s.run("short", &["sh", "-c", "sleep 2; exit 7"]).await;
    s.e.d.kill9();
    let before = fs::read_to_string(s.log_file("ticker")).unwrap().len();
    std::thread::sleep(Duration::from_secs(3));
    let after = fs::read_to_string(s.log_file("ticker")).unwrap().len();
    assert!(after > before, "ticker kept logging while berthd was down");
    s.restart().await;
    let st = s.status(&short).await;
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 7),
        "{st:?}"
    );
    let st = s.status(&ticker).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    // Log rotation as kubelet does it: rename, then ReopenContainerLog.
    let log = s.log_file("ticker");
    let rotated = log.with_extension("log.1");
    fs::rename(&log, &rotated).unwrap();
    s.c.runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&log)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "no lines in the reopened log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_len = fs::metadata(&rotated).unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fs::metadata(&rotated).unwrap().len(),
        old_len,
        "the old file stopped growing"
    );
    // The watcher is back: a stop after the restart is seen.
    s.stop(&ticker, 0).await;
    let st = s.status(&ticker).await;
    assert_eq!(st.exit_code, 137);
    s.finish().await;
}

/// A pod's shim killed with SIGKILL: stopping its container leaves no
/// process (the runtime, run directly, kills what outlived the shim), and
/// removing it leaves no runtime state; on both handlers.
#[tokio::test]
async fn containers_of_a_killed_shim_are_stopped_and_removed() {
    if !root_or_skip("containers_of_a_killed_shim_are_stopped_and_removed") {
        return;
    }
    for (tag, handler) in [("ctrshimkill", "berth"), ("ctrshimkillrunc", "runc")] {
        let mut s = setup(tag, handler, fixture::busybox()).await;
        let id = s.run("orphan", &["sleep", "1000"]).await;
        let pid = s.init_pid(&id).await;
        let shim_dir = s.e.d.state_dir.join("shims").join(&s.pod[..32]);
        let shim_pid: i32 = fs::read_to_string(shim_dir.join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim_pid),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        eventually("the shim dies", || !alive(shim_pid)).await;
        // The container's init was seen both to die with its shim (its
        // parent) and to outlive it; either way it is dead once
        // StopContainer returns (the runtime run directly kills it), and
        // only the runtime run directly can delete its state now.
        s.stop(&id, 0).await;
        eventually("the container's process dies", || !alive(pid)).await;
        s.remove(&id).await;
        let state = s.e.d.state_dir.join("runtime").join(handler).join(&id);
        eventually("the runtime state goes", || !state.exists()).await;
        let dir = s.e.d.root_dir.join("containers").join(&id);
        eventually("the container directory goes", || !dir.exists()).await;
        s.finish().await;
    }
}

/// Whether `pid` runs (a zombie, which nobody reaps here once reparented,
/// counts as gone).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| st.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// berthd stopped (SIGTERM) while a removal runs in the background: it
/// finishes the removal before exiting.
#[tokio::test]
async fn a_removal_in_progress_is_finished_at_shutdown() {
    if !root_or_skip("a_removal_in_progress_is_finished_at_shutdown") {
        return;
    }
    let mut s = setup("ctrrmstop", "berth", fixture::busybox()).await;
    // 20,000 files in its upper dir: deleting them takes a while.
    let id = s
        .run(
            "many",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do : > /f$i; i=$((i+1)); done; echo done; sleep 1000",
            ],
        )
        .await;
    let log = s.log_file("many");
    eventually("the files are written", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("stdout F done"))
    })
    .await;
    s.remove(&id).await;
    assert!(s.e.d.stop().success());
    let dir = s.e.d.root_dir.join("containers").join(&id);
    assert!(!dir.exists(), "{} left at shutdown", dir.display());
    s.restart().await;
    s.finish().await;
}

/// berthd killed after RemoveContainer's transaction but before the
/// container's state was deleted: the next start finishes the removal (and
/// sweeps a container directory no record names).
#[tokio::test]
async fn an_interrupted_removal_is_finished_at_the_next_start() {
    if !root_or_skip("an_interrupted_removal_is_finished_at_the_next_start") {
        return;
    }
    use berth_containers::record::{CONTAINER_NAMES, CONTAINER_REMOVALS, CONTAINERS};
    let mut s = setup("ctrrmcrash", "berth", fixture::busybox()).await;
    let id = s.run("victim", &["sleep", "1000"]).await;
    s.stop(&id, 0).await;
    s.e.d.kill9();
    // The state RemoveContainer's transaction leaves: record and name gone,
    // the container listed for deletion.
    s.edit_store(|tx| {
        let rec = tx.get(&CONTAINERS, &id)?.expect("record");
        tx.delete(&CONTAINERS, &id)?;
        tx.delete(&CONTAINER_NAMES, &rec.reservation_key())?;
        tx.put(&CONTAINER_REMOVALS, &id, &rec)
    });
    let dir = s.e.d.root_dir.join("containers").join(&id);
    assert!(dir.exists());
    // And a rootfs mounted for a create whose record never committed.
    let orphan = s.e.d.root_dir.join("containers").join("0rphan");
    fs::create_dir_all(orphan.join("upper/etc")).unwrap();
    fs::write(orphan.join("upper/etc/x"), "x").unwrap();
    s.restart().await;
    // Finished before the daemon serves.
    assert!(!dir.exists(), "{} left", dir.display());
    assert!(!orphan.exists(), "{} left", orphan.display());
    s.assert_forgotten(&id, "victim").await;
    s.finish().await;
}

#[tokio::test]
async fn a_container_created_under_a_lost_record_is_deleted_at_the_next_start() {
    if !root_or_skip("a_container_created_under_a_lost_record_is_deleted_at_the_next_start") {
        return;
    }
    use berth_containers::record::{CONTAINER_NAMES, CONTAINERS};
    let mut s = setup("ctrlost", "berth", fixture::busybox()).await;
    let id = s.run("ghost", &["sleep", "1000"]).await;
    let pid = s.init_pid(&id).await;
    s.e.d.kill9();
    // What a crash between CreateContainer's unsynced reservation and its
    // durable record leaves: the shim holds the container, no record does.
    s.edit_store(|tx| {
        let rec = tx.get(&CONTAINERS, &id)?.expect("record");
        tx.delete(&CONTAINERS, &id)?;
        tx.delete(&CONTAINER_NAMES, &rec.reservation_key())?;
        Ok(())
    });
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    s.restart().await;
    // Deleted before the daemon serves: process, runtime state, files.
    eventually("the unrecorded container's init dies", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| st.contains(") Z "))
    })
    .await;
    s.assert_forgotten(&id, "ghost").await;
    s.finish().await;
}

#[tokio::test]
async fn a_removal_whose_commit_was_lost_is_completed_at_the_next_start() {
    if !root_or_skip("a_removal_whose_commit_was_lost_is_completed_at_the_next_start") {
        return;
    }
    let mut s = setup("ctrrmlost", "berth", fixture::busybox()).await;
    let id = s.run("undead", &["sleep", "1000"]).await;
    s.stop(&id, 0).await;
    s.e.d.kill9();
    // RemoveContainer's commit is not synced: a crash right after the
    // background deletion removed the container's files brings back its
    // record, exited, with no files.
    let dir = s.e.d.root_dir.join("containers").join(&id);
    let rootfs = dir.join("rootfs");
    if berth_e2e::env::mounts_under(&rootfs).contains(&rootfs) {
        nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
    s.restart().await;
    s.assert_forgotten(&id, "undead").await;
    s.finish().await;
}
