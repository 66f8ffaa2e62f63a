//! The container commands of the `berth` binary against a fake CRI runtime
//! on a unix socket: the requests they send, what they print, exit codes,
//! `run`'s cleanup and `logs --follow`. No daemon, no root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
struct State {
    calls: Vec<String>,
    created: Option<cri::CreateContainerRequest>,
    containers: Vec<cri::Container>,
    list_filter: Option<cri::ContainerFilter>,
    stop_timeout: Option<i64>,
    exec: Option<cri::ExecSyncRequest>,
    log_path: String,
    fail_start: bool,
}

#[derive(Debug, Clone)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("container {id:?} not found"))
}

/// The trait impl: the RPCs the CLI uses, then every other one answering
/// UNIMPLEMENTED (one macro, so `async_trait` sees them all).
macro_rules! fake_runtime {
    ({ $($used:tt)* } $($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for Fake {
            type GetContainerEventsStream = std::pin::Pin<
                Box<
                    dyn tonic::codegen::tokio_stream::Stream<
                            Item = Result<cri::ContainerEventResponse, Status>,
                        > + Send,
                >,
            >;
            $($used)*
            $(
                async fn $name(
                    &self,
                    _: Request<cri::$req>,
                ) -> Result<Response<cri::$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

fake_runtime! {
    {
        async fn run_pod_sandbox(
            &self,
            _: Request<cri::RunPodSandboxRequest>,
        ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
            self.state().calls.push("RunPodSandbox".into());
            Ok(Response::new(cri::RunPodSandboxResponse {
                pod_sandbox_id: "pod-1".into(),
            }))
        }

        async fn remove_pod_sandbox(
            &self,
            r: Request<cri::RemovePodSandboxRequest>,
        ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
            let id = r.into_inner().pod_sandbox_id;
            self.state().calls.push(format!("RemovePodSandbox {id}"));
            Ok(Response::new(cri::RemovePodSandboxResponse {}))
        }

        async fn create_container(
            &self,
            r: Request<cri::CreateContainerRequest>,
        ) -> Result<Response<cri::CreateContainerResponse>, Status> {
            let r = r.into_inner();
            let mut s = self.state();
            let config = r.config.clone().unwrap_or_default();
            let name = config.metadata.clone().unwrap_or_default().name;
            let id = format!("c-{name}-0123456789abcdef");
            s.calls.push(format!("CreateContainer {}", r.pod_sandbox_id));
            s.containers.push(cri::Container {
                id: id.clone(),
                pod_sandbox_id: r.pod_sandbox_id.clone(),
                metadata: config.metadata,
                image: config.image,
                state: cri::ContainerState::ContainerCreated as i32,
                labels: config.labels,
                ..Default::default()
            });
            s.created = Some(r);
            Ok(Response::new(cri::CreateContainerResponse { container_id: id }))
        }

        async fn start_container(
            &self,
            r: Request<cri::StartContainerRequest>,
        ) -> Result<Response<cri::StartContainerResponse>, Status> {
            let id = r.into_inner().container_id;
            let mut s = self.state();
            s.calls.push(format!("StartContainer {id}"));
            if s.fail_start {
                return Err(Status::failed_precondition("exec: \"httpd\": not found"));
            }
            let c = s.containers.iter_mut().find(|c| c.id == id).ok_or_else(|| not_found(&id))?;
            c.state = cri::ContainerState::ContainerRunning as i32;
            Ok(Response::new(cri::StartContainerResponse {}))
        }

        async fn stop_container(
            &self,
            r: Request<cri::StopContainerRequest>,
        ) -> Result<Response<cri::StopContainerResponse>, Status> {
            let r = r.into_inner();
            let mut s = self.state();
            s.stop_timeout = Some(r.timeout);
            let id = r.container_id;
            let c = s.containers.iter_mut().find(|c| c.id == id).ok_or_else(|| not_found(&id))?;
            c.state = cri::ContainerState::ContainerExited as i32;
            Ok(Response::new(cri::StopContainerResponse {}))
        }

        async fn remove_container(
            &self,
            r: Request<cri::RemoveContainerRequest>,
        ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
            let id = r.into_inner().container_id;
            let mut s = self.state();
            s.calls.push(format!("RemoveContainer {id}"));
            s.containers.retain(|c| c.id != id);
            Ok(Response::new(cri::RemoveContainerResponse {}))
        }

        async fn list_containers(
            &self,
            r: Request<cri::ListContainersRequest>,
        ) -> Result<Response<cri::ListContainersResponse>, Status> {
            let mut s = self.state();
            s.list_filter = r.into_inner().filter;
            Ok(Response::new(cri::ListContainersResponse {
                containers: s.containers.clone(),
            }))
        }

        async fn container_status(
            &self,
            r: Request<cri::ContainerStatusRequest>,
        ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
            let r = r.into_inner();
            let s = self.state();
            let id = r.container_id;
            let c = s.containers.iter().find(|c| c.id == id).ok_or_else(|| not_found(&id))?;
            let mut info = std::collections::HashMap::new();
            if r.verbose {
                info.insert("info".into(), r#"{"pid":4242}"#.into());
            }
            Ok(Response::new(cri::ContainerStatusResponse {
                status: Some(cri::ContainerStatus {
                    id: c.id.clone(),
                    metadata: c.metadata.clone(),
                    state: c.state,
                    log_path: s.log_path.clone(),
                    ..Default::default()
                }),
                info,
            }))
        }

        async fn get_container_events(
            &self,
            _: Request<cri::GetEventsRequest>,
        ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
            Err(Status::unimplemented("get_container_events"))
        }

        async fn exec_sync(
            &self,
            r: Request<cri::ExecSyncRequest>,
        ) -> Result<Response<cri::ExecSyncResponse>, Status> {
            self.state().exec = Some(r.into_inner());
            Ok(Response::new(cri::ExecSyncResponse {
                stdout: b"out\n".to_vec(),
                stderr: b"err\n".to_vec(),
                exit_code: 3,
            }))
        }
    }
    version(VersionRequest) -> VersionResponse;
    stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    exec(ExecRequest) -> ExecResponse;
    attach(AttachRequest) -> AttachResponse;
    port_forward(PortForwardRequest) -> PortForwardResponse;
    container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    status(StatusRequest) -> StatusResponse;
    checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
    list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
    list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
}

/// Accepted connections, for tonic.
struct Incoming(tokio::net::UnixListener);

impl tonic::codegen::tokio_stream::Stream for Incoming {
    type Item = std::io::Result<tokio::net::UnixStream>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_accept(cx).map(|r| Some(r.map(|(s, _)| s)))
    }
}

struct Daemon {
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    fake: Fake,
}

impl Daemon {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake(Arc::default());
        let listener = {
            let _g = rt.enter();
            tokio::net::UnixListener::bind(dir.path().join("cri.sock")).unwrap()
        };
        let service = RuntimeServiceServer::new(fake.clone());
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(Incoming(listener)),
        );
        Daemon { _rt: rt, dir, fake }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("-r")
            .arg(format!("unix://{}", self.path("cri.sock").display()))
            .arg("--config")
            .arg(self.path("no-crictl.yaml"))
            .args(args);
        c
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.fake.state()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn demo(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/demo")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn create_start_ps_inspect_stop_rm() {
    let d = Daemon::start();
    let o = d.berth(&[
        "create",
        "pod-1",
        &demo("container.yaml"),
        &demo("pod.yaml"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    assert_eq!(id, "c-httpd-0123456789abcdef");
    {
        let s = d.state();
        let r = s.created.as_ref().unwrap();
        assert_eq!(r.pod_sandbox_id, "pod-1");
        let config = r.config.as_ref().unwrap();
        assert_eq!(
            config.image.as_ref().unwrap().image,
            "berth.local/demo/busybox:latest"
        );
        assert_eq!(config.log_path, "httpd.log");
        assert_eq!(
            r.sandbox_config
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .name,
            "demo"
        );
    }

    let o = d.berth(&["start", &id]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), format!("{id}\n")));

    let o = d.berth(&["ps"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CONTAINER "), "{out}");
    assert!(lines[0].ends_with("POD ID"), "{out}");
    assert!(
        lines[1].starts_with("c-httpd-01234   berth.local/demo/busybox:latest"),
        "{out}"
    );
    assert!(
        lines[1].contains("Running") && lines[1].contains("pod-1"),
        "{out}"
    );
    assert_eq!(
        d.state().list_filter.clone().unwrap().state.unwrap().state,
        cri::ContainerState::ContainerRunning as i32
    );
    let o = d.berth(&["ps", "-a", "-q", "--pod", "pod-1", "--label", "app=demo"]);
    assert_eq!(stdout(&o), format!("{id}\n"));
    let f = d.state().list_filter.clone().unwrap();
    assert_eq!(f.state, None);
    assert_eq!(f.pod_sandbox_id, "pod-1");
    assert_eq!(f.label_selector["app"], "demo");
    let o = d.berth(&["ps", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());

    let o = d.berth(&["inspect", &id]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"]["id"], id.as_str());
    assert_eq!(v["info"]["pid"], 4242);
    let o = d.berth(&["inspect", "-o", "yaml", &id]);
    assert!(stdout(&o).contains("pid: 4242"), "{}", stdout(&o));

    let o = d.berth(&["stop", "--timeout", "3", &id]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), format!("{id}\n")));
    assert_eq!(d.state().stop_timeout, Some(3));
    let o = d.berth(&["stop", &id]);
    assert!(o.status.success());
    assert_eq!(d.state().stop_timeout, Some(10));

    let o = d.berth(&["rm", "-f", &id]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), format!("{id}\n")));
    assert!(d.state().containers.is_empty());
}

#[test]
fn errors_are_one_line_with_exit_code_1() {
    let d = Daemon::start();
    let o = d.berth(&["inspect", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "berth: NotFound: container \"nope\" not found\n"
    );
    let bad = d.path("bad.yaml");
    std::fs::write(
        &bad,
        "metadata: {name: a}\nimage: {image: b}\ncomand: [x]\n",
    )
    .unwrap();
    let o = d.berth(&["create", "pod-1", bad.to_str().unwrap(), &demo("pod.yaml")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("berth: ") && stderr(&o).contains("comand"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(d.state().calls.is_empty());
}

#[test]
fn exec_sync_passes_on_output_and_exit_code() {
    let d = Daemon::start();
    let o = d.berth(&["exec-sync", "--timeout", "5", "c1", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    let r = d.state().exec.clone().unwrap();
    assert_eq!(r.container_id, "c1");
    assert_eq!(r.cmd, ["sh", "-c", "exit 3"]);
    assert_eq!(r.timeout, 5);
}

#[test]
fn run_creates_and_starts_and_cleans_up_after_a_failure() {
    let d = Daemon::start();
    let o = d.berth(&["run", &demo("container.yaml"), &demo("pod.yaml")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "c-httpd-0123456789abcdef\n");
    assert_eq!(
        d.state().calls,
        [
            "RunPodSandbox",
            "CreateContainer pod-1",
            "StartContainer c-httpd-0123456789abcdef"
        ]
    );

    d.state().calls.clear();
    d.state().fail_start = true;
    let o = d.berth(&["run", &demo("container.yaml"), &demo("pod.yaml")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "berth: FailedPrecondition: exec: \"httpd\": not found\n"
    );
    assert_eq!(
        d.state().calls,
        [
            "RunPodSandbox",
            "CreateContainer pod-1",
            "StartContainer c-httpd-0123456789abcdef",
            "RemoveContainer c-httpd-0123456789abcdef",
            "RemovePodSandbox pod-1"
        ]
    );
}

fn add_container(d: &Daemon, state: cri::ContainerState) -> PathBuf {
    let log = d.path("0.log");
    let mut s = d.state();
    s.log_path = log.display().to_string();
    s.containers.push(cri::Container {
        id: "c1".into(),
        state: state as i32,
        ..Default::default()
    });
    log
}

#[test]
fn logs_split_streams_and_take_tail_since_and_timestamps() {
    let d = Daemon::start();
    let log = add_container(&d, cri::ContainerState::ContainerExited);
    std::fs::write(
        &log,
        "2024-05-01T12:00:00Z stdout F one\n\
         2024-05-01T12:00:01Z stderr F oops\n\
         malformed\n\
         2024-05-01T12:00:02Z stdout P tw\n\
         2024-05-01T12:00:03Z stdout F o\n",
    )
    .unwrap();
    let o = d.berth(&["logs", "c1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("one\ntwo\n", "oops\n")
    );
    let o = d.berth(&["logs", "--tail", "1", "--timestamps", "c1"]);
    assert_eq!(stdout(&o), "2024-05-01T12:00:02Z two\n");
    assert_eq!(stderr(&o), "");
    let o = d.berth(&["logs", "--since", "2024-05-01T12:00:01Z", "c1"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("two\n", "oops\n")
    );
    let o = d.berth(&["logs", "--since", "1h", "c1"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", ""));
    let o = d.berth(&["logs", "--since", "soon", "c1"]);
    assert_eq!(o.status.code(), Some(1));
    d.state().log_path.clear();
    let o = d.berth(&["logs", "c1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no log file"), "{}", stderr(&o));
}

#[test]
fn logs_follow_through_rotation_until_the_container_stops() {
    let d = Daemon::start();
    let log = add_container(&d, cri::ContainerState::ContainerRunning);
    std::fs::write(&log, "2024-05-01T12:00:00Z stdout F before\n").unwrap();
    let mut child = d
        .command(&["logs", "-f", "c1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let append = |s: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(s.as_bytes()).unwrap();
    };
    std::thread::sleep(Duration::from_millis(300));
    append("2024-05-01T12:00:01Z stdout P half ");
    std::thread::sleep(Duration::from_millis(300));
    append("\n2024-05-01T12:00:02Z stdout F and half\n");
    std::thread::sleep(Duration::from_millis(300));
    // kubelet's rotation: the file renamed away, the runtime reopens the path.
    append("2024-05-01T12:00:03Z stdout F last in the old file\n");
    std::fs::rename(&log, d.path("0.log.1")).unwrap();
    std::fs::write(
        &log,
        "2024-05-01T12:00:04Z stdout F first in the new file\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append("2024-05-01T12:00:05Z stdout F at the end\n");
    d.state().containers[0].state = cri::ContainerState::ContainerExited as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "logs -f did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "before\nhalf and half\nlast in the old file\nfirst in the new file\nat the end\n"
    );
}
