//! One daemon with a network, an image pulled from a local registry and
//! one ready pod: the scene most container tests start from, with the CRI
//! calls they make as one-liners that panic with the daemon's log.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_cli::client::CriClient;
use k8s_cri::v1::*;
use tonic::Code;

use crate::fixture::{self, Registry};
use crate::podnet::{self, Env, Plugins, env_built};

/// A daemon with a network, an image and one ready pod.
pub struct Setup {
    pub e: Env,
    pub c: CriClient,
    pub reg: Registry,
    pub image: String,
    pub pod: String,
    pub pod_config: PodSandboxConfig,
    pub handler: &'static str,
}

pub fn pod_config(name: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        log_directory: log_dir.display().to_string(),
        ..podnet::pod_config(name)
    }
}

pub async fn setup(tag: &str, handler: &'static str, image: fixture::Image) -> Setup {
    setup_with(tag, handler, image, |b| b).await
}

pub async fn setup_with(
    tag: &str,
    handler: &'static str,
    image: fixture::Image,
    more: impl FnOnce(crate::daemon::BerthdBuilder) -> crate::daemon::BerthdBuilder,
) -> Setup {
    let reg = Registry::start(None);
    reg.push(&image, "busybox", "v1").await;
    let e = env_built(tag, Plugins::Debian, None, more);
    let mut c = e.d.client().await;
    let name = reg.reference("busybox", "v1");
    c.image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let log_dir = e.d.dir.join("logs").join("pod");
    fs::create_dir_all(&log_dir).unwrap();
    let pod_config = pod_config("pod", &log_dir);
    let pod = c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    Setup {
        e,
        c,
        reg,
        image: name,
        pod,
        pod_config,
        handler,
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("dir", &self.e.d.dir)
            .field("pod", &self.pod)
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

impl Setup {
    pub fn config(&self, name: &str, cmd: &[&str]) -> ContainerConfig {
        podnet::container_config(name, &self.image, cmd)
    }

    pub async fn create(&mut self, config: ContainerConfig) -> Result<String, tonic::Status> {
        self.create_in(&self.pod.clone(), config).await
    }

    pub async fn create_in(
        &mut self,
        pod: &str,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.c
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(self.pod_config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start(&mut self, id: &str) {
        self.c
            .runtime
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("start {id}: {e:?}\n{}", self.e.d.log()));
    }

    pub async fn run(&mut self, name: &str, cmd: &[&str]) -> String {
        let cfg = self.config(name, cmd);
        let id = self
            .create(cfg)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e:?}\n{}", self.e.d.log()));
        self.start(&id).await;
        id
    }

    /// Runs a container that the kernel's OOM killer ends at a 32 MiB limit
    /// (busybox tail keeps a "line" of /dev/zero in memory), waits for it
    /// and checks it was reported OOMKilled; returns its id.
    pub async fn run_until_oom_killed(&mut self, name: &str) -> String {
        let mut cfg = self.config(name, &["tail", "/dev/zero"]);
        cfg.linux = Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 32 * 1024 * 1024,
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = self
            .create(cfg)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
        self.start(&id).await;
        let st = self.wait_exited(&id, Duration::from_secs(30)).await;
        assert_eq!(st.reason, "OOMKilled", "{st:?}");
        id
    }

    pub async fn status(&mut self, id: &str) -> ContainerStatus {
        self.c
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    /// The container's init pid, from the verbose status.
    pub async fn init_pid(&mut self, id: &str) -> i32 {
        let info = self
            .c
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
        let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        let pid = v["pid"].as_i64().unwrap() as i32;
        assert!(pid > 0, "{v}");
        pid
    }

    /// Starts the (killed) daemon again and reconnects.
    pub async fn restart(&mut self) {
        self.e.d.spawn_and_wait_ready();
        self.c = self.e.d.client().await;
    }

    /// Changes the stopped daemon's store, as a crash would have left it.
    pub fn edit_store(
        &self,
        f: impl FnOnce(&mut berth_store::Txn<'_>) -> Result<(), berth_store::StoreError>,
    ) {
        berth_store::Store::open(&self.e.d.root_dir.join("meta.redb"))
            .unwrap()
            .write(f)
            .unwrap();
    }

    /// Nothing of container `id` is left (record, runtime state, files),
    /// and its name `name` is free again.
    pub async fn assert_forgotten(&mut self, id: &str, name: &str) {
        let e = self
            .c
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let runtime_root = self.e.d.state_dir.join("runtime/berth");
        for p in [
            runtime_root.join(id),
            runtime_root.join(".berth").join(id),
            self.e.d.root_dir.join("containers").join(id),
        ] {
            assert!(!p.exists(), "left: {}", p.display());
        }
        let again = self.run(name, &["sleep", "1000"]).await;
        assert_ne!(again, id);
    }

    pub async fn wait_exited(&mut self, id: &str, within: Duration) -> ContainerStatus {
        let deadline = Instant::now() + within;
        loop {
            let st = self.status(id).await;
            if st.state == ContainerState::ContainerExited as i32 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {:?} after {within:?}",
                st.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<ExecSyncResponse, tonic::Status> {
        self.c
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Runs `sh -c script` in the container; its stdout, trimmed.
    pub async fn sh(&mut self, id: &str, script: &str) -> (i32, String) {
        let r = self
            .exec(id, &["sh", "-c", script], 20)
            .await
            .unwrap_or_else(|e| panic!("exec {script:?}: {e:?}"));
        let mut out = String::from_utf8_lossy(&r.stdout).trim().to_owned();
        if r.exit_code != 0 {
            out.push_str(&format!(
                " [stderr: {}]",
                String::from_utf8_lossy(&r.stderr).trim()
            ));
        }
        (r.exit_code, out)
    }

    pub async fn stop(&mut self, id: &str, timeout: i64) {
        self.c
            .runtime
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .unwrap_or_else(|e| panic!("stop {id}: {e:?}"));
    }

    pub async fn remove(&mut self, id: &str) {
        self.c
            .runtime
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("remove {id}: {e:?}"));
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.e.d.dir.join("logs/pod").join(format!("{name}.log"))
    }

    /// Removes the pod (and so its containers and shim), then stops the
    /// daemon: its leak check runs on drop.
    pub async fn finish(mut self) {
        self.c
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: self.pod.clone(),
            })
            .await
            .unwrap();
        let left = self
            .c
            .runtime
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "containers left: {left:?}");
        let dirs: Vec<_> = fs::read_dir(self.e.d.root_dir.join("containers"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(dirs.is_empty(), "container dirs left: {dirs:?}");
        drop(self.c);
        assert!(self.e.d.stop().success(), "{}", self.e.d.log());
    }
}

/// Waits up to 10 s for `done` (work berthd finishes after its reply).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
