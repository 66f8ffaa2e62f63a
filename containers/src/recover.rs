//! berthd's start: interrupted creates unwound, removals finished, exits
//! that happened while berthd was down recorded, watchers reconnected,
//! and what a crash left without a record (containers in shims,
//! directories) deleted.

use berth_shim::proto::{Request, Response};

use crate::error::RuntimeError;
use crate::record::{CONTAINER_REMOVALS, CONTAINERS, State};
use crate::rootfs::{self, Layout};
use crate::service::{Containers, KILL_WAIT};

impl Containers {
    /// At daemon start: unwinds creates a crash interrupted, reconnects to
    /// live shims, and records exits that happened while berthd was down.
    /// `pod_ids` are the pods berthd knows, whose shims may hold
    /// containers.
    pub async fn recover(&self, pod_ids: &[String]) -> Result<(), RuntimeError> {
        self.finish_removals().await?;
        for (id, rec) in self.inner.store.list(&CONTAINERS)? {
            match rec.state {
                State::Creating => {
                    tracing::warn!(container_id = %id, "unwinding a container interrupted while being created");
                    self.unwind(&rec).await;
                    self.forget(&rec)?;
                }
                State::Created | State::Running => {
                    // An exit while berthd was down is on disk: take it now,
                    // so the first status after a restart is already right.
                    let exit = self.inner.shims.exit_record(&rec.pod_id, &id);
                    if exit.is_some() || !self.inner.shims.alive(&rec.pod_id).await {
                        self.record_exit(&id, exit).await?;
                    } else if rec.state == State::Running {
                        self.watch(rec.pod_id.clone(), id.clone());
                    }
                }
                State::Exited | State::Unknown => {
                    let dir = Layout::new(&self.inner.paths.containers, &id).bundle();
                    if !dir.exists() {
                        // A removal whose unsynced commit a crash lost
                        // after its files went: completed.
                        tracing::warn!(container_id = %id, "completing the removal of a container whose files are gone");
                        if !rec.released
                            && let Err(e) = self.delete_runtime_state(&rec).await
                        {
                            tracing::warn!(container_id = %id, error = %e, "deleting its runtime state");
                        }
                        self.forget(&rec)?;
                    }
                }
            }
        }
        self.delete_unrecorded(pod_ids).await?;
        self.sweep_orphan_dirs()?;
        Ok(())
    }

    /// Containers a live shim holds that no record names (berthd died
    /// between a create's unsynced reservation and its durable record):
    /// deleted through their shim, which runs the runtime's `delete
    /// --force`. Before the directory sweep: the runtime logs to the
    /// container's bundle.
    pub(crate) async fn delete_unrecorded(&self, pod_ids: &[String]) -> Result<(), RuntimeError> {
        for pod_id in pod_ids {
            let listed = match self
                .inner
                .shims
                .call_if_up(pod_id, &Request::List, Some(KILL_WAIT))
                .await
            {
                Ok(Some(Response::Containers { containers })) => containers,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(pod_id = %pod_id, error = %e, "listing the containers of a shim");
                    continue;
                }
            };
            for c in listed {
                if self.has_record(&c.id)? {
                    continue;
                }
                tracing::warn!(container_id = %c.id, pod_id = %pod_id, "deleting a container its shim holds under no record");
                let req = Request::Delete { id: c.id.clone() };
                if let Err(e) = self
                    .inner
                    .shims
                    .call_if_up(pod_id, &req, Some(KILL_WAIT))
                    .await
                {
                    tracing::warn!(container_id = %c.id, error = %e, "deleting an unrecorded container");
                }
            }
        }
        Ok(())
    }

    /// Whether a record names container `id`: a container's, or a removal
    /// still to finish.
    pub(crate) fn has_record(&self, id: &str) -> Result<bool, RuntimeError> {
        Ok(self.inner.store.get_shared(&CONTAINERS, id)?.is_some()
            || self.inner.store.get(&CONTAINER_REMOVALS, id)?.is_some())
    }

    /// Container directories no record names (a crash between mounting a
    /// rootfs and committing its record): unmounted and removed.
    pub(crate) fn sweep_orphan_dirs(&self) -> Result<(), RuntimeError> {
        let Ok(entries) = std::fs::read_dir(&self.inner.paths.containers) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().is_ok_and(|t| t.is_dir()) || self.has_record(&name)? {
                continue;
            }
            tracing::warn!(container_id = %name, "removing a container directory no record names");
            if let Err(err) = rootfs::remove(&Layout::new(&self.inner.paths.containers, &name)) {
                tracing::warn!(container_id = %name, error = %err, "removing an orphaned container directory");
            }
        }
        Ok(())
    }
}
