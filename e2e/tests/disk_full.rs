//! A full disk, as root, on small tmpfs filesystems of each test's own:
//! container logs stop without blocking or killing the container and
//! resume, with whole lines, once there is space; a full state directory
//! fails calls cleanly (nothing half made), berthd keeps serving, and the
//! same calls succeed once there is space. (A full image store is in
//! images.rs: a_full_disk_is_resource_exhausted_and_cleaned_up.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{eventually, setup};
use k8s_cri::v1::*;

/// A tmpfs of `size` mounted at `dir` for the test's life.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, size: &str) -> SmallFs {
        fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        SmallFs(dir.to_owned())
    }

    /// Fills it: a file grows until the filesystem refuses (ENOSPC).
    fn fill(&self) -> PathBuf {
        let p = self.0.join(".filler");
        let mut f = fs::File::create(&p).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", p.display()),
            }
        }
        p
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn container_logs_pause_on_a_full_disk_and_resume_with_whole_lines() {
    if !root_or_skip("container_logs_pause_on_a_full_disk_and_resume_with_whole_lines") {
        return;
    }
    let mut s = setup("fulllog", "berth", fixture::busybox()).await;
    let logs = SmallFs::mount(&s.e.d.dir.join("logs/pod"), "256k");
    let id = s
        .run(
            "chatty",
            &[
                "sh",
                "-c",
                // Lines of ~3 KB: most straddle a page of the log file.
                "pad=$(printf '%3000s' '' | tr ' ' x); i=0; while :; do echo line$i-$pad; i=$((i+1)); usleep 20000; done",
            ],
        )
        .await;
    let log = s.log_file("chatty");
    eventually("the container logs", || len(&log) > 0).await;
    let filler = logs.fill();
    // The disk is full: once the log's last page is used up too, logging
    // stops; the container goes on.
    let mut stopped_at = len(&log);
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = len(&log);
        if now == stopped_at {
            break;
        }
        stopped_at = now;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(len(&log), stopped_at, "the log grew on a full disk");
    let st = s.status(&id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    let (code, out) = s.sh(&id, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive"));
    // Space again: logging resumes.
    fs::remove_file(&filler).unwrap();
    eventually("logging resumes", || len(&log) > stopped_at + 10_000).await;
    // Every line whole: timestamp, stream, tag, content, one line each.
    let text = fs::read_to_string(&log).unwrap();
    for l in text.lines() {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        assert!(
            parts.len() == 4
                && parts[0].ends_with('Z')
                && parts[1] == "stdout"
                && parts[2] == "F"
                && parts[3].starts_with("line")
                && parts[3][4..]
                    .split_once('-')
                    .is_some_and(|(n, pad)| n.parse::<u64>().is_ok()
                        && pad.len() == 3000
                        && pad.bytes().all(|b| b == b'x')),
            "torn log line {l:?}"
        );
    }
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: s.pod.clone(),
        })
        .await
        .unwrap();
    drop(logs);
    s.finish().await;
}

#[tokio::test]
async fn a_full_state_dir_fails_calls_cleanly_and_berthd_keeps_serving() {
    if !root_or_skip("a_full_state_dir_fails_calls_cleanly_and_berthd_keeps_serving") {
        return;
    }
    let mut s = setup("fullstate", "berth", fixture::busybox()).await;
    // The state dir's runtime part (each handler's --root: a container's
    // state.json) on a small filesystem of its own, then full.
    let fs_guard = SmallFs::mount(&s.e.d.state_dir.join("runtime"), "1m");
    let filler = fs_guard.fill();
    let r = s.create(s.config("first", &["sleep", "1000"])).await;
    let e = r.expect_err("a create on a full state dir");
    assert!(
        matches!(
            e.code(),
            tonic::Code::ResourceExhausted | tonic::Code::Internal
        ),
        "{e:?}"
    );
    // berthd serves, and the failed create left no container behind.
    let listed =
        s.c.runtime
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(listed.is_empty(), "{listed:?}");
    s.c.runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
    // Space again: the same create succeeds.
    fs::remove_file(&filler).unwrap();
    let id = s.run("first", &["sleep", "1000"]).await;
    let (code, _) = s.sh(&id, "true").await;
    assert_eq!(code, 0);
    // The pod's removal deletes the runtime state on the small
    // filesystem; then it goes, before the daemon's leak check.
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: s.pod.clone(),
        })
        .await
        .unwrap();
    drop(fs_guard);
    s.finish().await;
}
