//! Bringing up `lo` in a pod's network namespace.
//!
//! CRI runtimes bring up the loopback device themselves rather than relying
//! on the `loopback` plugin being installed (containerd and CRI-O both do).
//! berth does it with one netlink request (RTM_NEWLINK with IFF_UP) sent
//! from a netlink socket opened inside the namespace: a dedicated std thread
//! enters the namespace with setns(2), opens the socket, sends the request,
//! and restores its original namespace before it ends. The thread is never
//! a tokio worker, so no other task ever runs in the pod's namespace.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use rtnetlink::LinkUnspec;

use super::error::CniError;

/// Sets `lo` up inside the network namespace at `netns` (e.g.
/// `/run/berth/netns/<pod id>`). Idempotent.
pub async fn set_loopback_up(netns: &Path) -> Result<(), CniError> {
    let path = netns.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("berth-cni-lo".into())
        .spawn(move || {
            let _ = tx.send(in_netns(&path));
        });
    let fail = |reason: String| CniError::Loopback {
        netns: netns.to_owned(),
        reason,
    };
    spawned.map_err(|e| fail(format!("cannot start a thread: {e}")))?;
    rx.await
        .map_err(|_| fail("the netns thread panicked".into()))?
        .map_err(fail)?;
    tracing::debug!(netns = %netns.display(), "lo is up");
    Ok(())
}

/// Runs on the dedicated thread: enter, bring up lo, return.
fn in_netns(target: &PathBuf) -> Result<(), String> {
    let ns = File::open(target).map_err(|e| format!("cannot open: {e}"))?;
    let own = File::open("/proc/thread-self/ns/net")
        .map_err(|e| format!("cannot open the thread's own netns: {e}"))?;
    setns(&ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns: {e} (not a network namespace?)"))?;
    let done = lo_up();
    // Restore before the thread ends. Should this fail, nothing else runs
    // on this thread: it ends right after, namespace and all.
    let restored = setns(&own, CloneFlags::CLONE_NEWNET);
    done?;
    restored.map_err(|e| format!("cannot restore the thread's netns: {e}"))
}

/// Sets lo up through a netlink socket opened in the current thread's netns.
fn lo_up() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
    rt.block_on(async {
        // The socket is created here, in the namespace this thread is in.
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        let driver = tokio::spawn(conn);
        let res = handle
            .link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(|e| format!("netlink: {e}"));
        driver.abort();
        res
    })
}
