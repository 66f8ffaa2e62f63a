//! StartContainer and StopContainer, and how exits come back: a watcher per
//! running container (the shim's Wait), the exit recorded once, and the
//! runtime state released right after so RemoveContainer has little left
//! to do.

use std::time::Duration;

use berth_shim::proto::{self, Request, Response};
use berth_util::time::now_ns;

use crate::error::RuntimeError;
use crate::events::EventKind;
use crate::record::{CONTAINER_REMOVALS, CONTAINERS, ContainerRecord, State};
use crate::rootfs::{self, Layout};
use crate::service::{Containers, KILL_WAIT};

impl Containers {
    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get(&id)?;
        if rec.state != State::Created {
            return Err(RuntimeError::WrongState {
                id,
                state: rec.state,
                wanted: "created",
            });
        }
        // Taken before the call: a process may exit before start returns.
        let started_at = now_ns();
        let started = self
            .inner
            .shims
            .call(
                &rec.pod_id,
                &Request::Start { id: id.clone() },
                Some(Duration::from_secs(120)),
            )
            .await;
        match started {
            Ok(_) => {
                rec.state = State::Running;
                rec.started_at = started_at;
                self.inner.store.put(&CONTAINERS, &id, &rec)?;
                self.watch(rec.pod_id.clone(), id.clone());
                self.inner.counters.started(true);
                self.inner.events.emit(&id, &rec.pod_id, EventKind::Started);
                tracing::info!(container_id = %id, "container started");
                Ok(())
            }
            Err(e) => {
                self.inner.counters.started(false);
                // The container is dead on arrival; say why in its status.
                let _ = self
                    .inner
                    .shims
                    .call(
                        &rec.pod_id,
                        &Request::Kill {
                            id: id.clone(),
                            signal: 9,
                        },
                        Some(KILL_WAIT),
                    )
                    .await;
                rec.state = State::Exited;
                rec.finished_at = now_ns();
                rec.exit_code = 128;
                rec.reason = "StartError".into();
                rec.message = e.to_string();
                self.inner.store.put(&CONTAINERS, &id, &rec)?;
                Err(e)
            }
        }
    }

    /// Learns of the container's exit from its shim, in the background.
    pub(crate) fn watch(&self, pod_id: String, id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let r = this
                    .inner
                    .shims
                    .call(&pod_id, &Request::Wait { id: id.clone() }, None)
                    .await;
                match r {
                    Ok(Response::Exited(exit)) => {
                        let _ = this.record_exit(&id, Some(exit)).await;
                        return;
                    }
                    Err(RuntimeError::NotFound(_)) => {
                        // Deleted meanwhile (remove races the watcher).
                        return;
                    }
                    _ if this.inner.shims.alive(&pod_id).await => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => {
                        let exit = this.inner.shims.exit_record(&pod_id, &id);
                        let _ = this.record_exit(&id, exit).await;
                        return;
                    }
                }
            }
        });
    }

    /// Records how a container ended (once; later calls are no-ops).
    /// None: its shim is gone and left no record.
    pub(crate) async fn record_exit(
        &self,
        id: &str,
        exit: Option<proto::Exit>,
    ) -> Result<(), RuntimeError> {
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        let Some(mut rec) = self.inner.store.get(&CONTAINERS, id)? else {
            return Ok(());
        };
        if !matches!(rec.state, State::Created | State::Running) {
            return Ok(());
        }
        apply_exit(&mut rec, exit);
        self.inner.store.put(&CONTAINERS, id, &rec)?;
        self.inner.counters.exited(&rec.reason);
        self.inner.events.emit(id, &rec.pod_id, EventKind::Stopped);
        tracing::info!(container_id = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
        self.release_runtime(&mut rec).await
    }

    /// After the exit: deletes the runtime's state (through the shim, which
    /// then forgets the container) and unmounts the rootfs, so the work is
    /// off RemoveContainer's path. Caller holds the lock. Failures are
    /// logged and left to RemoveContainer.
    pub(crate) async fn release_runtime(
        &self,
        rec: &mut ContainerRecord,
    ) -> Result<(), RuntimeError> {
        if rec.released || matches!(rec.state, State::Created | State::Running | State::Creating) {
            return Ok(());
        }
        if let Err(e) = self.delete_runtime_state(rec).await {
            tracing::debug!(container_id = %rec.id, error = %e, "runtime delete after exit; left to remove");
            return Ok(());
        }
        if let Err(e) = rootfs::unmount(&Layout::new(&self.inner.paths.containers, &rec.id)) {
            tracing::debug!(container_id = %rec.id, error = %e, "unmounting rootfs after exit");
            return Ok(());
        }
        rec.released = true;
        // RemoveContainer does not wait for this release: the record may
        // have moved to the removals table meanwhile, and must not come
        // back. Not synced (it would hold the store's writer through an
        // fsync while the StopContainer's caller goes on): a lost
        // `released` only makes the removal delete the runtime state and
        // unmount again, both idempotent.
        self.inner.store.write_unsynced(|tx| {
            if tx.get(&CONTAINERS, &rec.id)?.is_some() {
                tx.put(&CONTAINERS, &rec.id, rec)?;
            } else if tx.get(&CONTAINER_REMOVALS, &rec.id)?.is_some() {
                tx.put(&CONTAINER_REMOVALS, &rec.id, rec)?;
            }
            Ok::<(), RuntimeError>(())
        })?;
        Ok(())
    }

    /// Waits for the exit, up to `timeout`.
    pub(crate) async fn wait_exit(
        &self,
        pod_id: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<proto::Exit>, RuntimeError> {
        let req = Request::Wait { id: id.to_owned() };
        let wait = self.inner.shims.call(pod_id, &req, None);
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Ok(None),
            Ok(Ok(Response::Exited(e))) => Ok(Some(e)),
            Ok(Ok(other)) => Err(RuntimeError::unexpected(pod_id, other)),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Signals, waits up to `timeout`, then kills. Caller holds the lock.
    pub(crate) async fn stop_locked(
        &self,
        rec: &mut ContainerRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        if !matches!(rec.state, State::Created | State::Running) {
            return Ok(());
        }
        let kill = |signal: i32| Request::Kill {
            id: rec.id.clone(),
            signal,
        };
        let graceful = rec.state == State::Running && !timeout.is_zero();
        let first = kill(if graceful { rec.stop_signal } else { 9 });
        let sent = self
            .inner
            .shims
            .call_if_up(&rec.pod_id, &first, Some(KILL_WAIT))
            .await?;
        if sent.is_none() {
            // No shim: what it recorded before going is all there is. What
            // outlived it is killed by the release, which runs the runtime
            // directly, before the stop is answered (and only once: the
            // record is then released).
            let exit = self.inner.shims.exit_record(&rec.pod_id, &rec.id);
            apply_exit(rec, exit);
            self.inner.store.put(&CONTAINERS, &rec.id, rec)?;
            self.inner.counters.exited(&rec.reason);
            self.inner
                .events
                .emit(&rec.id, &rec.pod_id, EventKind::Stopped);
            return self.release_runtime(rec).await;
        }
        let mut exit = None;
        if graceful {
            exit = self.wait_exit(&rec.pod_id, &rec.id, timeout).await?;
            if exit.is_none() {
                self.inner
                    .shims
                    .call(&rec.pod_id, &kill(9), Some(KILL_WAIT))
                    .await?;
            }
        }
        if exit.is_none() {
            exit = self.wait_exit(&rec.pod_id, &rec.id, KILL_WAIT).await?;
            if exit.is_none() {
                return Err(RuntimeError::Unkillable {
                    id: rec.id.clone(),
                    waited: KILL_WAIT,
                });
            }
        }
        apply_exit(rec, exit);
        self.inner.store.put(&CONTAINERS, &rec.id, rec)?;
        self.inner.counters.exited(&rec.reason);
        self.inner
            .events
            .emit(&rec.id, &rec.pod_id, EventKind::Stopped);
        Ok(())
    }

    /// Releases an exited container's runtime state in the background
    /// (under its lock), off the caller's path.
    pub(crate) fn release_later(&self, id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let lock = this.lock_for(&id);
            let g = lock.lock().await;
            match this.inner.store.get(&CONTAINERS, &id) {
                Ok(Some(mut rec)) => {
                    if let Err(e) = this.release_runtime(&mut rec).await {
                        tracing::debug!(container_id = %id, error = %e, "releasing after stop");
                    }
                }
                // Removed meanwhile: nothing to release, and no lock to keep.
                Ok(None) => {
                    drop(g);
                    this.forget_lock(&id);
                }
                Err(e) => tracing::debug!(container_id = %id, error = %e, "releasing after stop"),
            }
        });
    }

    /// StopContainer: the stop signal, `timeout` to exit, then SIGKILL.
    /// Stopping a stopped container is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        // The CRI makes Stop idempotent: an unknown or removed container is
        // stopped already (kubelet retries Stop after Remove races).
        let Some(id) = self.resolve_id(id)? else {
            return Ok(());
        };
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let Some(mut rec) = self.inner.store.get(&CONTAINERS, &id)? else {
            return Ok(());
        };
        self.stop_locked(&mut rec, timeout).await?;
        tracing::info!(container_id = %id, "container stopped");
        if !rec.released {
            self.release_later(id);
        }
        Ok(())
    }

    /// StopPodSandbox: kills every container of the pod.
    pub async fn stop_pod(&self, pod_id: &str) -> Result<(), RuntimeError> {
        for rec in self.of_pod(pod_id)? {
            if matches!(rec.state, State::Created | State::Running) {
                self.stop(&rec.id, Duration::ZERO).await?;
            }
        }
        Ok(())
    }
}

pub(crate) fn apply_exit(rec: &mut ContainerRecord, exit: Option<proto::Exit>) {
    rec.state = State::Exited;
    match exit {
        Some(e) => {
            rec.finished_at = e.finished_at_ns;
            rec.exit_code = e.exit_code;
            rec.reason = if e.oom_killed {
                "OOMKilled"
            } else if e.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into();
        }
        None => {
            rec.state = State::Unknown;
            rec.finished_at = now_ns();
            rec.exit_code = 255;
            rec.reason = "Unknown".into();
            rec.message = "the pod's shim is gone and recorded no exit".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_get_kubelet_reasons() {
        let mut r = crate::record::tests_support::record();
        let exit = |code, oom| proto::Exit {
            pid: 1,
            exit_code: code,
            signal: None,
            finished_at_ns: 5,
            oom_killed: oom,
        };
        apply_exit(&mut r, Some(exit(0, false)));
        assert_eq!(
            (r.state, r.reason.as_str(), r.finished_at),
            (State::Exited, "Completed", 5)
        );
        apply_exit(&mut r, Some(exit(1, false)));
        assert_eq!(r.reason, "Error");
        apply_exit(&mut r, Some(exit(137, true)));
        assert_eq!((r.exit_code, r.reason.as_str()), (137, "OOMKilled"));
        apply_exit(&mut r, None);
        assert_eq!((r.state, r.exit_code), (State::Unknown, 255));
    }
}
