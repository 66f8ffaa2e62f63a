//! ExecSync: the container's process settings with the requested command,
//! run by the shim through the runtime's `exec`, output bounded.

use std::time::Duration;

use berth_shim::proto::{self, Request, Response};
use berth_util::id::new_id;

use crate::error::RuntimeError;
use crate::record::State;
use crate::rootfs::Layout;
use crate::service::{Containers, read_json};

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Containers {
    /// ExecSync: runs `cmd` in the container with its process settings.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        if cmd.is_empty() {
            return Err(RuntimeError::EmptyCommand);
        }
        let id = self.must_resolve(id)?;
        let rec = self.get(&id)?;
        if rec.state != State::Running {
            return Err(RuntimeError::WrongState {
                id,
                state: rec.state,
                wanted: "running",
            });
        }
        let bundle = Layout::new(&self.inner.paths.containers, &id).bundle();
        let spec: oci_spec::runtime::Spec = read_json(&bundle.join("config.json"))?;
        let process = berth_spec::process_for_exec(&spec, cmd)?;
        let file = bundle.join(format!("exec-{}.json", &new_id()[..16]));
        let json = serde_json::to_vec(&process).map_err(|e| RuntimeError::Corrupt {
            path: file.clone(),
            message: format!("serializing the exec process: {e}"),
        })?;
        std::fs::write(&file, json).map_err(|e| RuntimeError::io("writing the exec process", e))?;
        let answer = self
            .inner
            .shims
            .call(
                &rec.pod_id,
                &Request::ExecSync(proto::ExecSync {
                    id: id.clone(),
                    process: file.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                    max_output: self.inner.config.exec_max_output,
                }),
                None,
            )
            .await;
        let _ = std::fs::remove_file(&file);
        match answer? {
            Response::ExecResult {
                timed_out: true, ..
            } => Err(RuntimeError::ExecTimedOut {
                id,
                cmd: cmd.to_vec(),
                timeout,
            }),
            Response::ExecResult {
                exit_code,
                stdout,
                stderr,
                ..
            } => Ok(ExecOutput {
                exit_code,
                stdout,
                stderr,
            }),
            other => Err(RuntimeError::unexpected(&rec.pod_id, other)),
        }
    }
}
