//! create, start, stop, rm, ps, inspect, logs, exec-sync and run:
//! containers from crictl-style configs, crictl's commands.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use berth_cli::client::CriClient;
use berth_cli::container_config;
use berth_cli::logs::{self, LogFile, Reader, Stream};
use berth_cli::output::{self, Format};
use k8s_cri::v1 as cri;

use super::{Outcome, pod, status_msg};

/// `--state` of `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

impl From<State> for cri::ContainerState {
    fn from(s: State) -> Self {
        match s {
            State::Created => cri::ContainerState::ContainerCreated,
            State::Running => cri::ContainerState::ContainerRunning,
            State::Exited => cri::ContainerState::ContainerExited,
            State::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }
}

/// `--label KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: use KEY=VALUE")),
    }
}

pub async fn create(
    c: &mut CriClient,
    pod_id: &str,
    config: &Path,
    pod_config: &Path,
) -> Result<String, String> {
    let config = container_config::load(config)?;
    let sandbox = pod::load(pod_config)?;
    let id = create_container(c, pod_id, config, sandbox).await?;
    Ok(format!("{id}\n"))
}

async fn create_container(
    c: &mut CriClient,
    pod_id: &str,
    config: cri::ContainerConfig,
    sandbox: cri::PodSandboxConfig,
) -> Result<String, String> {
    Ok(c.runtime
        .create_container(container_config::create_request(pod_id, config, sandbox))
        .await
        .map_err(status_msg)?
        .into_inner()
        .container_id)
}

async fn start_container(c: &mut CriClient, id: &str) -> Result<(), String> {
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .map_err(status_msg)?;
    Ok(())
}

/// Prints each id once done with it, like crictl.
pub async fn start(c: &mut CriClient, ids: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for id in ids {
        start_container(c, id).await?;
        out += &format!("{id}\n");
    }
    Ok(out)
}

pub async fn stop(c: &mut CriClient, ids: &[String], timeout: i64) -> Result<String, String> {
    let mut out = String::new();
    for id in ids {
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout,
            })
            .await
            .map_err(status_msg)?;
        out += &format!("{id}\n");
    }
    Ok(out)
}

/// RemoveContainer removes a running container too (the CRI says so), so
/// `--force` changes nothing; it is accepted for crictl's sake.
pub async fn rm(c: &mut CriClient, ids: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for id in ids {
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(status_msg)?;
        out += &format!("{id}\n");
    }
    Ok(out)
}

#[derive(Debug, Default)]
pub struct PsOptions {
    pub all: bool,
    pub quiet: bool,
    pub pod: Option<String>,
    pub state: Option<State>,
    pub labels: Vec<(String, String)>,
}

/// The ListContainers filter: an explicit `--state` wins; without it and
/// without `--all`, running containers only.
pub fn ps_filter(o: &PsOptions) -> cri::ContainerFilter {
    let state = o
        .state
        .map(cri::ContainerState::from)
        .or((!o.all).then_some(cri::ContainerState::ContainerRunning));
    cri::ContainerFilter {
        state: state.map(|s| cri::ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: o.pod.clone().unwrap_or_default(),
        label_selector: o.labels.iter().cloned().collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn state_name(s: i32) -> &'static str {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// The IMAGE column: what the user asked for if known, else the image
/// spec, an image id shortened to 13 characters.
fn image_column(c: &cri::Container) -> String {
    let spec = c.image.clone().unwrap_or_default();
    if !spec.user_specified_image.is_empty() {
        return spec.user_specified_image;
    }
    match spec.image.strip_prefix("sha256:") {
        Some(hex) => hex.chars().take(13).collect(),
        None => spec.image,
    }
}

/// crictl's `ps` table, newest first.
pub fn ps_table(items: &[cri::Container], now_ns: i64) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            let m = c.metadata.clone().unwrap_or_default();
            vec![
                c.id.chars().take(13).collect(),
                image_column(c),
                output::ago(c.created_at, now_ns),
                state_name(c.state).into(),
                m.name,
                m.attempt.to_string(),
                c.pod_sandbox_id.chars().take(13).collect(),
            ]
        })
        .collect();
    output::table(
        &[
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
        ],
        &rows,
    )
}

pub async fn ps(c: &mut CriClient, o: &PsOptions, fmt: Format) -> Result<String, String> {
    let mut items = c
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(ps_filter(o)),
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .containers;
    items.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if o.quiet {
        return Ok(items.iter().map(|c| format!("{}\n", c.id)).collect());
    }
    Ok(output::render(fmt, &items, || {
        ps_table(&items, output::now_ns())
    }))
}

async fn status(
    c: &mut CriClient,
    id: &str,
    verbose: bool,
) -> Result<cri::ContainerStatusResponse, tonic::Status> {
    Ok(c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose,
        })
        .await?
        .into_inner())
}

/// crictl's inspect object: `status`, then each verbose info entry parsed
/// as JSON (berthd's is `info`, always present, null if missing).
pub fn inspect_value(r: cri::ContainerStatusResponse) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert(
        "status".into(),
        serde_json::to_value(&r.status).unwrap_or_default(),
    );
    obj.insert("info".into(), serde_json::Value::Null);
    let mut keys: Vec<_> = r.info.into_iter().collect();
    keys.sort();
    for (k, v) in keys {
        let v = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
        obj.insert(k, v);
    }
    serde_json::Value::Object(obj)
}

pub async fn inspect(c: &mut CriClient, ids: &[String], fmt: Format) -> Result<String, String> {
    let mut out = Vec::new();
    for id in ids {
        let r = status(c, id, true).await.map_err(status_msg)?;
        out.push(inspect_value(r));
    }
    let fmt = if fmt == Format::Table {
        Format::Json
    } else {
        fmt
    };
    let value = if out.len() == 1 {
        out.remove(0)
    } else {
        serde_json::Value::Array(out)
    };
    Ok(output::render(fmt, &value, String::new))
}

pub async fn exec_sync(
    c: &mut CriClient,
    id: &str,
    cmd: &[String],
    timeout: i64,
) -> Result<Outcome, String> {
    let r = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.to_vec(),
            timeout,
        })
        .await
        .map_err(status_msg)?
        .into_inner();
    // Best effort: a closed stdout must not hide the exit code.
    let _ = std::io::stdout().write_all(&r.stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(&r.stderr);
    Ok(Outcome {
        out: String::new(),
        code: exit_code(r.exit_code),
    })
}

/// A process exit status as ours: 0..=255 as is, anything else failure.
pub fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// RunPodSandbox, CreateContainer, StartContainer; on failure, the pod
/// sandbox goes again (with any container in it) and the error is the
/// first one.
pub async fn run(
    c: &mut CriClient,
    config: &Path,
    pod_config: &Path,
    handler: &str,
) -> Result<String, String> {
    let config = container_config::load(config)?;
    let sandbox = pod::load(pod_config)?;
    let pod_id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: handler.to_owned(),
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .pod_sandbox_id;
    let mut created = None;
    let result = async {
        let id = create_container(c, &pod_id, config, sandbox).await?;
        created = Some(id.clone());
        start_container(c, &id).await?;
        Ok::<_, String>(id)
    }
    .await;
    match result {
        Ok(id) => Ok(format!("{id}\n")),
        Err(e) => {
            let mut cleanup = Vec::new();
            if let Some(id) = created {
                let r = c
                    .runtime
                    .remove_container(cri::RemoveContainerRequest { container_id: id })
                    .await;
                if let Err(s) = r {
                    cleanup.push(status_msg(s));
                }
            }
            let r = c
                .runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod_id.clone(),
                })
                .await;
            if let Err(s) = r {
                cleanup.push(format!("pod sandbox {pod_id} left: {}", status_msg(s)));
            }
            if cleanup.is_empty() {
                Err(e)
            } else {
                Err(format!("{e} (cleaning up: {})", cleanup.join("; ")))
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct LogsOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub timestamps: bool,
}

/// Lines to our stdout or stderr as the container wrote them. `Ok(false)`
/// once our stdout or stderr is closed (`berth logs ID | head`).
fn emit(lines: &[logs::Line], timestamps: bool) -> Result<bool, String> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut write = || -> std::io::Result<()> {
        for l in lines {
            let bytes = logs::render(l, timestamps);
            match l.stream {
                Stream::Stdout => out.write_all(&bytes)?,
                Stream::Stderr => err.write_all(&bytes)?,
            }
        }
        out.flush()?;
        err.flush()
    };
    match write() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// How often `--follow` looks for new output, and how many looks between
/// asking whether the container still runs.
const POLL: Duration = Duration::from_millis(100);
const POLLS_PER_STATUS: u32 = 10;

pub async fn logs(c: &mut CriClient, id: &str, o: &LogsOptions) -> Result<String, String> {
    let since = o
        .since
        .as_deref()
        .map(|s| logs::parse_since(s, output::now_ns()))
        .transpose()?;
    let st = status(c, id, false)
        .await
        .map_err(status_msg)?
        .status
        .unwrap_or_default();
    if st.log_path.is_empty() {
        return Err(format!(
            "container {id} has no log file (its config sets no log_path)"
        ));
    }
    let path = Path::new(&st.log_path);
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = LogFile::open(path).map_err(io)?;
    let mut reader = Reader::new(since);
    let mut running = st.state == cri::ContainerState::ContainerRunning as i32;
    let mut lines = reader.feed(&file.read_new().map_err(io)?);
    if !(o.follow && running) {
        lines.extend(reader.finish());
    }
    if !emit(&logs::tail(lines, o.tail), o.timestamps)? || !o.follow {
        return Ok(String::new());
    }
    let mut polls = 0;
    while running {
        tokio::time::sleep(POLL).await;
        polls += 1;
        if polls % POLLS_PER_STATUS == 0 {
            // Gone (removed) counts as stopped.
            running = status(c, id, false).await.is_ok_and(|r| {
                r.status
                    .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32)
            });
        }
        // Once stopped, one last read drains what the container wrote.
        let mut lines = reader.feed(&file.read_new().map_err(io)?);
        if file.replaced() {
            lines.extend(reader.feed(&file.read_new().map_err(io)?));
            file.reopen().map_err(io)?;
            lines.extend(reader.feed(&file.read_new().map_err(io)?));
        }
        if !running {
            lines.extend(reader.finish());
        }
        if !emit(&lines, o.timestamps)? {
            break;
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str, image: &str, state: i32, created_at: i64) -> cri::Container {
        cri::Container {
            id: id.into(),
            pod_sandbox_id: "f00dfeedcafe0123456789".into(),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 1,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            state,
            created_at,
            ..Default::default()
        }
    }

    #[test]
    fn ps_lists_running_containers_unless_told_otherwise() {
        let running = Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        });
        assert_eq!(ps_filter(&PsOptions::default()).state, running);
        let all = PsOptions {
            all: true,
            ..Default::default()
        };
        assert_eq!(ps_filter(&all).state, None);
        let exited = PsOptions {
            state: Some(State::Exited),
            pod: Some("p1".into()),
            labels: vec![("app".into(), "demo".into()), ("tier".into(), "x".into())],
            ..Default::default()
        };
        let f = ps_filter(&exited);
        assert_eq!(
            f.state.unwrap().state,
            cri::ContainerState::ContainerExited as i32
        );
        assert_eq!(f.pod_sandbox_id, "p1");
        assert_eq!(f.label_selector.len(), 2);
        assert_eq!(f.label_selector["app"], "demo");
        assert_eq!(f.id, "");
    }

    #[test]
    fn labels_parse() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("a="), Ok(("a".into(), String::new())));
        assert!(parse_label("a").is_err());
        assert!(parse_label("=b").is_err());
    }

    #[test]
    fn the_ps_table_looks_like_crictls() {
        let s = 1_000_000_000;
        let items = [
            container(
                "0123456789abcdef0123",
                "httpd",
                "berth.local/demo/busybox:latest",
                cri::ContainerState::ContainerRunning as i32,
                95 * s,
            ),
            container(
                "fedcba9876543210",
                "old",
                "sha256:aaaabbbbccccddddeeee",
                cri::ContainerState::ContainerExited as i32,
                0,
            ),
        ];
        let t = ps_table(&items, 100 * s);
        assert_eq!(
            t,
            "CONTAINER       IMAGE                             CREATED              STATE     NAME    ATTEMPT   POD ID\n\
             0123456789abc   berth.local/demo/busybox:latest   5 seconds ago        Running   httpd   1         f00dfeedcafe0\n\
             fedcba9876543   aaaabbbbccccd                     About a minute ago   Exited    old     1         f00dfeedcafe0\n"
        );
    }

    #[test]
    fn inspect_parses_the_verbose_info() {
        let r = cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: "c1".into(),
                exit_code: 3,
                ..Default::default()
            }),
            info: HashMap::from([
                ("info".into(), r#"{"pid":42,"runtimeSpec":{}}"#.into()),
                ("note".into(), "not json".into()),
            ]),
        };
        let v = inspect_value(r);
        assert_eq!(v["status"]["id"], "c1");
        assert_eq!(v["status"]["exit_code"], 3);
        assert_eq!(v["info"]["pid"], 42);
        assert_eq!(v["note"], "not json");
        let v = inspect_value(cri::ContainerStatusResponse::default());
        assert!(v["info"].is_null() && v["status"].is_null());
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3), 3);
        assert_eq!(exit_code(137), 137);
        assert_eq!(exit_code(256), 1);
        assert_eq!(exit_code(-1), 1);
    }

    #[test]
    fn the_demo_configs_make_a_create_request() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo");
        let config = container_config::load(&demo.join("container.yaml")).unwrap();
        let sandbox = pod::load(&demo.join("pod.yaml")).unwrap();
        let r = container_config::create_request("pod1", config, sandbox);
        assert_eq!(r.sandbox_config.unwrap().metadata.unwrap().name, "demo");
        let ns = r
            .config
            .unwrap()
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    }
}
