//! RemoveContainer and RemovePodSandbox's share: the record and name go in
//! one transaction, the runtime state and files in the background
//! (`Removal`), finished at the next start after a crash; and deleting the
//! runtime state with or without the pod's shim.

use std::time::Duration;

use berth_shim::proto::Request;

use crate::error::RuntimeError;
use crate::record::{CONTAINER_NAMES, CONTAINER_REMOVALS, CONTAINERS, ContainerRecord, State};
use crate::rootfs::{self, Layout};
use crate::service::{Containers, KILL_WAIT};

/// A removed container whose runtime state and files are being deleted in
/// the background; see [`Containers::remove`].
#[derive(Debug)]
pub struct Removal {
    /// The record as it was removed.
    pub record: ContainerRecord,
    done: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl Removal {
    /// Waits until the container's runtime state and files are deleted.
    pub async fn finished(self) -> Result<ContainerRecord, RuntimeError> {
        self.done
            .await
            .map_err(|e| RuntimeError::Task(format!("removal: {e}")))??;
        Ok(self.record)
    }
}

impl Containers {
    /// RemoveContainer: kills a running container first; an unknown id is
    /// fine. The record and the name reservation go at once, in one
    /// transaction that also adds the container to `container_removals`;
    /// its runtime state and files go in the background, under its lock
    /// (so after a release still in progress), and the returned
    /// [`Removal`] completes when they are gone. A crash in between is
    /// finished by [`recover`](Self::recover).
    pub async fn remove(&self, id: &str) -> Result<Option<Removal>, RuntimeError> {
        let Some(id) = self.resolve_id(id)? else {
            return Ok(None);
        };
        let Some(rec) = self.inner.store.get(&CONTAINERS, &id)? else {
            return Ok(None);
        };
        // An exited container needs no lock: only its release still writes
        // the record, and that write follows it into the removals table.
        if matches!(rec.state, State::Creating | State::Created | State::Running) {
            let lock = self.lock_for(&id);
            let _g = lock.lock().await;
            let Some(mut rec) = self.inner.store.get(&CONTAINERS, &id)? else {
                return Ok(None);
            };
            self.stop_locked(&mut rec, Duration::ZERO).await?;
        }
        // Not synced: the background deletion ends with a durable commit a
        // few milliseconds later (so does any other caller's). A crash
        // before brings the record back as an exited container; recover()
        // completes the removal when its directory is already gone, and
        // otherwise kubelet's next RemoveContainer does.
        let removed = self.inner.store.write_unsynced(|tx| {
            let Some(rec) = tx.get(&CONTAINERS, &id)? else {
                return Ok::<_, RuntimeError>(None);
            };
            tx.delete(&CONTAINERS, &id)?;
            let key = rec.reservation_key();
            if tx.get(&CONTAINER_NAMES, &key)?.as_deref() == Some(id.as_str()) {
                tx.delete(&CONTAINER_NAMES, &key)?;
            }
            tx.put(&CONTAINER_REMOVALS, &id, &rec)?;
            Ok(Some(rec))
        })?;
        let Some(record) = removed else {
            return Ok(None);
        };
        self.inner
            .events
            .emit(&id, &record.pod_id, crate::events::EventKind::Deleted);
        tracing::info!(container_id = %id, "container removed");
        let this = self.clone();
        let done = tokio::spawn(async move {
            let r = this.finish_removal(&id).await;
            if let Err(e) = &r {
                tracing::warn!(container_id = %id, error = %e, "deleting a removed container's state; retried at the next start");
            }
            r
        });
        Ok(Some(Removal { record, done }))
    }

    /// Deletes a removed container's runtime state and files, then its
    /// entry in `container_removals`.
    pub(crate) async fn finish_removal(&self, id: &str) -> Result<(), RuntimeError> {
        let lock = self.lock_for(id);
        let g = lock.lock().await;
        let Some(rec) = self.inner.store.get(&CONTAINER_REMOVALS, id)? else {
            return Ok(());
        };
        if !rec.released {
            self.delete_runtime_state(&rec).await?;
        }
        let layout = Layout::new(&self.inner.paths.containers, id);
        tokio::task::spawn_blocking(move || rootfs::remove(&layout))
            .await
            .map_err(|e| RuntimeError::Task(e.to_string()))?
            .map_err(|e| RuntimeError::io("removing container rootfs", e))?;
        self.inner.store.write(|tx| {
            tx.delete(&CONTAINER_REMOVALS, id)?;
            Ok::<(), RuntimeError>(())
        })?;
        drop(g);
        self.forget_lock(id);
        Ok(())
    }

    /// Finishes every pending removal, waiting for those in progress: at
    /// start (after a crash) and at shutdown. Failures are logged and left
    /// for the next start.
    pub async fn finish_removals(&self) -> Result<(), RuntimeError> {
        for (id, _) in self.inner.store.list(&CONTAINER_REMOVALS)? {
            if let Err(e) = self.finish_removal(&id).await {
                tracing::warn!(container_id = %id, error = %e, "finishing a container's removal; retried at the next start");
            }
        }
        Ok(())
    }

    /// Removed containers whose state is not deleted yet (their image
    /// snapshots must stay).
    pub fn pending_removals(&self) -> Result<Vec<ContainerRecord>, RuntimeError> {
        Ok(self
            .inner
            .store
            .list(&CONTAINER_REMOVALS)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// RemovePodSandbox: removes every container of the pod, then stops
    /// its shim. Returns the removed records.
    /// RemovePodSandbox: removes every container of the pod and waits until
    /// their state is deleted, then shuts the pod's shim down.
    pub async fn remove_pod(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let mut removed = Vec::new();
        for rec in self.of_pod(pod_id)? {
            if let Some(r) = self.remove(&rec.id).await? {
                removed.push(r.finished().await?);
            }
        }
        // Containers removed earlier whose deletion is still running (or
        // failed): finished before their shim goes.
        for rec in self.pending_removals()? {
            if rec.pod_id == pod_id {
                self.finish_removal(&rec.id).await?;
            }
        }
        self.inner.shims.shutdown(pod_id).await?;
        Ok(removed)
    }

    /// Deletes the container's runtime state through its shim, which then
    /// forgets it. When the shim is gone (killed), the runtime is run
    /// directly with `delete --force`: that also kills the container's
    /// processes, which outlived their shim.
    pub(crate) async fn delete_runtime_state(
        &self,
        rec: &ContainerRecord,
    ) -> Result<(), RuntimeError> {
        let req = Request::Delete { id: rec.id.clone() };
        match self
            .inner
            .shims
            .call_if_up(&rec.pod_id, &req, Some(KILL_WAIT))
            .await?
        {
            Some(_) => Ok(()),
            None => self.delete_without_shim(rec).await,
        }
    }

    /// `<runtime> delete --force <id>`, run by berthd itself.
    pub(crate) async fn delete_without_shim(
        &self,
        rec: &ContainerRecord,
    ) -> Result<(), RuntimeError> {
        tracing::warn!(container_id = %rec.id, pod_id = %rec.pod_id, "the pod's shim is gone: deleting the container through the runtime directly");
        let rt = self.runtime_for(&rec.handler)?;
        let log = Layout::new(&self.inner.paths.containers, &rec.id)
            .bundle()
            .join("runtime.log");
        let mut cmd = self.inner.sealed.command(&rt)?;
        cmd.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .args(["delete", "--force", rec.id.as_str()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let failed = |message: String| RuntimeError::Runtime {
            runtime: rt.path.clone(),
            action: format!("delete --force {}", rec.id),
            message,
        };
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .map_err(|_| failed("no exit within 30s".into()))?
            .map_err(|e| failed(format!("running it: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(failed(format!("{}: {}", out.status, err.trim())));
        }
        Ok(())
    }
}
