//! UpdateContainerResources (the runtime's `update` on the live cgroup,
//! then the record) and ReopenContainerLog (the shim reopens the file).

use berth_shim::proto::Request;
use k8s_cri::v1::LinuxContainerResources;

use crate::error::RuntimeError;
use crate::record::{CONTAINERS, State};
use crate::rootfs::Layout;
use crate::service::{Containers, KILL_WAIT};

impl Containers {
    /// UpdateContainerResources: applied by the OCI runtime to the live
    /// cgroup, then recorded.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: &LinuxContainerResources,
    ) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get(&id)?;
        if !matches!(rec.state, State::Created | State::Running) {
            return Err(RuntimeError::WrongState {
                id,
                state: rec.state,
                wanted: "created or running",
            });
        }
        let oci = berth_spec::linux_resources(resources)?;
        let bundle = Layout::new(&self.inner.paths.containers, &id).bundle();
        let file = bundle.join("update.json");
        std::fs::write(&file, serde_json::to_vec(&oci).unwrap_or_default())
            .map_err(|e| RuntimeError::io("writing resources", e))?;
        let runtime = self.runtime_for(&rec.handler)?;
        let out = self
            .inner
            .sealed
            .command(&runtime)?
            .arg("update")
            .arg("--resources")
            .arg(&file)
            .arg(&id)
            .output()
            .await
            .map_err(|e| RuntimeError::Runtime {
                runtime: runtime.path.clone(),
                action: "update".into(),
                message: format!("running it: {e}"),
            })?;
        let _ = std::fs::remove_file(&file);
        if !out.status.success() {
            return Err(RuntimeError::Runtime {
                runtime: runtime.path.clone(),
                action: "update".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut cfg = (*rec.config()).clone();
        cfg.linux.get_or_insert_default().resources = Some(resources.clone());
        rec.set_config(&cfg);
        self.inner.store.put(&CONTAINERS, &id, &rec)?;
        Ok(())
    }

    /// ReopenContainerLog: the shim reopens the log file (after kubelet
    /// renamed it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let rec = self.get(&id)?;
        if rec.state != State::Running {
            return Err(RuntimeError::WrongState {
                id,
                state: rec.state,
                wanted: "running",
            });
        }
        self.inner
            .shims
            .call(&rec.pod_id, &Request::ReopenLog { id }, Some(KILL_WAIT))
            .await?;
        Ok(())
    }
}
