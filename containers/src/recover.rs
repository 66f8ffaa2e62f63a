//! berthd's start: interrupted creates unwound, removals finished, exits
//! that happened while berthd was down recorded, watchers reconnected,
//! and what a crash left without a record (containers in shims,
//! directories) deleted.

use berth_shim::proto::{Request, Response};

use crate::error::RuntimeError;
use crate::record::{CONTAINER_REMOVALS, CONTAINERS, ContainerRecord, State};
use crate::rootfs::{self, Layout};
use crate::service::{Containers, KILL_WAIT};

/// What berthd's start does with one container record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Interrupted while being created: undo it and forget it.
    Unwind,
    /// It ended while berthd was down (its shim recorded how, or its shim
    /// is gone and left nothing): record the exit, so the first status
    /// after a restart is already right.
    RecordExit,
    /// It still runs: watch for its exit.
    Watch,
    /// Exited, and its files are gone: a removal whose unsynced commit a
    /// crash lost after the deletion. Finish it (the runtime state too,
    /// unless it was released) and forget the record.
    FinishRemoval { delete_runtime_state: bool },
    /// Nothing to do.
    Keep,
}

/// What recovery knows of a container besides its record.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Facts {
    /// Its shim wrote an exit record.
    pub exit_recorded: bool,
    /// Its pod's shim answers.
    pub shim_alive: bool,
    /// Its bundle directory exists.
    pub files_exist: bool,
}

/// The recovery of one container: a pure decision, unit-tested.
pub(crate) fn decide(rec: &ContainerRecord, f: &Facts) -> Recovery {
    match rec.state {
        State::Creating => Recovery::Unwind,
        State::Created | State::Running if f.exit_recorded || !f.shim_alive => Recovery::RecordExit,
        State::Running => Recovery::Watch,
        // Created, its shim alive: nothing happens until StartContainer.
        State::Created => Recovery::Keep,
        State::Exited | State::Unknown if !f.files_exist => Recovery::FinishRemoval {
            delete_runtime_state: !rec.released,
        },
        State::Exited | State::Unknown => Recovery::Keep,
    }
}

impl Containers {
    /// At daemon start: unwinds creates a crash interrupted, reconnects to
    /// live shims, and records exits that happened while berthd was down.
    /// `pod_ids` are the pods berthd knows, whose shims may hold
    /// containers.
    pub async fn recover(&self, pod_ids: &[String]) -> Result<(), RuntimeError> {
        self.finish_removals().await?;
        for (id, rec) in self.inner.store.list(&CONTAINERS)? {
            // Only what the record's state needs is looked at.
            let exit = match rec.state {
                State::Created | State::Running => self.inner.shims.exit_record(&rec.pod_id, &id),
                _ => None,
            };
            let facts = Facts {
                exit_recorded: exit.is_some(),
                shim_alive: exit.is_none()
                    && matches!(rec.state, State::Created | State::Running)
                    && self.inner.shims.alive(&rec.pod_id).await,
                files_exist: Layout::new(&self.inner.paths.containers, &id)
                    .bundle()
                    .exists(),
            };
            match decide(&rec, &facts) {
                Recovery::Unwind => {
                    tracing::warn!(container_id = %id, "unwinding a container interrupted while being created");
                    self.unwind(&rec).await;
                    self.forget(&rec)?;
                }
                Recovery::RecordExit => self.record_exit(&id, exit).await?,
                Recovery::Watch => self.watch(rec.pod_id.clone(), id.clone()),
                Recovery::FinishRemoval {
                    delete_runtime_state,
                } => {
                    tracing::warn!(container_id = %id, "completing the removal of a container whose files are gone");
                    if delete_runtime_state && let Err(e) = self.delete_runtime_state(&rec).await {
                        tracing::warn!(container_id = %id, error = %e, "deleting its runtime state");
                    }
                    self.forget(&rec)?;
                }
                Recovery::Keep => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests_support::record;

    fn with(state: State, released: bool) -> ContainerRecord {
        let mut r = record();
        r.state = state;
        r.released = released;
        r
    }

    fn facts(exit_recorded: bool, shim_alive: bool, files_exist: bool) -> Facts {
        Facts {
            exit_recorded,
            shim_alive,
            files_exist,
        }
    }

    #[test]
    fn interrupted_creates_are_unwound_whatever_else_is_seen() {
        for f in [facts(false, false, false), facts(true, true, true)] {
            assert_eq!(decide(&with(State::Creating, false), &f), Recovery::Unwind);
        }
    }

    #[test]
    fn exits_while_berthd_was_down_are_recorded() {
        for s in [State::Created, State::Running] {
            // The shim recorded the exit.
            assert_eq!(
                decide(&with(s, false), &facts(true, true, true)),
                Recovery::RecordExit
            );
            // The shim is gone and recorded nothing: Unknown, by record_exit.
            assert_eq!(
                decide(&with(s, false), &facts(false, false, true)),
                Recovery::RecordExit
            );
        }
    }

    #[test]
    fn live_containers_are_watched_and_created_ones_kept() {
        assert_eq!(
            decide(&with(State::Running, false), &facts(false, true, true)),
            Recovery::Watch
        );
        assert_eq!(
            decide(&with(State::Created, false), &facts(false, true, true)),
            Recovery::Keep
        );
    }

    #[test]
    fn a_lost_removal_commit_is_completed_only_when_the_files_are_gone() {
        for s in [State::Exited, State::Unknown] {
            assert_eq!(
                decide(&with(s, false), &facts(false, false, true)),
                Recovery::Keep,
                "files still there: an exited container kubelet removes later"
            );
            assert_eq!(
                decide(&with(s, false), &facts(false, false, false)),
                Recovery::FinishRemoval {
                    delete_runtime_state: true
                }
            );
            assert_eq!(
                decide(&with(s, true), &facts(false, false, false)),
                Recovery::FinishRemoval {
                    delete_runtime_state: false
                }
            );
        }
    }
}
