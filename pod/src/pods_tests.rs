//! The sandbox state machine without root: a fake kernel (namespaces are
//! plain files, the holder a recorded pid, /dev/shm a marker file), a fake
//! network that can fail, cgroups in a temp directory standing in for a
//! cgroup2 mount, and a real store. Each test checks what a pod leaves
//! behind after it is run, unwound, stopped, removed or recovered.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_cgroups::{Cgroups, Hierarchy};

use super::*;
use crate::kernel::PodKernel;
use crate::ns::{NsError, NsRequest};
use crate::spec::{Metadata, NsOptions};

#[derive(Debug, Default)]
struct FakeKernel {
    calls: Mutex<Vec<String>>,
}

impl FakeKernel {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
}

impl PodKernel for FakeKernel {
    fn create_namespaces(&self, req: &NsRequest) -> Result<(), NsError> {
        let user = req.user.as_ref().map(|(p, _)| p);
        for p in [&req.net, &req.ipc, &req.uts]
            .into_iter()
            .flatten()
            .chain(user)
        {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"pinned").unwrap();
        }
        self.record("namespaces".into());
        Ok(())
    }
    fn unpin_namespace(&self, path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
    fn holds_pid_namespaces(&self) -> bool {
        true
    }
    fn spawn_holder(
        &self,
        pod_id: &str,
        user: Option<&Path>,
        _join: &[PathBuf],
    ) -> std::io::Result<u32> {
        match user {
            Some(u) => self.record(format!("holder {pod_id} in {}", u.display())),
            None => self.record(format!("holder {pod_id}")),
        }
        Ok(4242)
    }
    fn stop_holders(&self, pod_id: &str, known: Option<u32>) {
        self.record(format!("stop holders {pod_id} {known:?}"));
    }
    fn mount_shm(
        &self,
        path: &Path,
        _size_mib: u64,
        owner: Option<(u32, u32)>,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(path)?;
        std::fs::write(path.join(".mounted"), format!("{owner:?}"))
    }
    fn own(&self, path: &Path, owner: (u32, u32)) -> std::io::Result<()> {
        let name = path.file_name().unwrap().to_string_lossy();
        self.record(format!("own {name} {owner:?}"));
        Ok(())
    }
    fn unmount_shm(&self, path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path.join(".mounted")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Default)]
struct FakeNetwork {
    fail_setup: AtomicBool,
    fail_teardown: AtomicBool,
    attached: Mutex<Vec<String>>,
}

impl PodNetwork for FakeNetwork {
    async fn setup(&self, req: NetRequest<'_>) -> Result<Vec<IpAddr>, NetworkError> {
        if self.fail_setup.load(Ordering::SeqCst) {
            return Err(NetworkError::Failed("the plugin failed".into()));
        }
        self.attached.lock().unwrap().push(req.id.to_owned());
        Ok(vec!["10.0.0.2".parse().unwrap()])
    }
    async fn teardown(&self, req: NetRequest<'_>) -> Result<(), NetworkError> {
        if self.fail_teardown.load(Ordering::SeqCst) {
            return Err(NetworkError::Failed("DEL failed too".into()));
        }
        self.attached.lock().unwrap().retain(|p| p != req.id);
        Ok(())
    }
}

struct World {
    tmp: tempfile::TempDir,
    pods: Pods<Arc<FakeNetwork>>,
    kernel: Arc<FakeKernel>,
    network: Arc<FakeNetwork>,
}

impl PodNetwork for Arc<FakeNetwork> {
    async fn setup(&self, req: NetRequest<'_>) -> Result<Vec<IpAddr>, NetworkError> {
        (**self).setup(req).await
    }
    async fn teardown(&self, req: NetRequest<'_>) -> Result<(), NetworkError> {
        (**self).teardown(req).await
    }
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("meta.redb")).unwrap();
    let cgroups = Cgroups::new(&tmp.path().join("cgroup"), Hierarchy::Unified);
    std::fs::create_dir_all(tmp.path().join("cgroup")).unwrap();
    let kernel = Arc::new(FakeKernel::default());
    let network = Arc::new(FakeNetwork::default());
    let mut pods = Pods::new(
        Config::default(),
        store,
        cgroups,
        Dirs {
            root: tmp.path().join("root"),
            state: tmp.path().join("state"),
        },
        network.clone(),
    )
    .with_kernel(kernel.clone());
    pods.host_resolv = tmp.path().join("resolv.conf");
    World {
        tmp,
        pods,
        kernel,
        network,
    }
}

fn spec(name: &str, pid: NsMode) -> SandboxSpec {
    SandboxSpec {
        metadata: Metadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "test".into(),
            attempt: 0,
        },
        hostname: String::new(),
        log_directory: String::new(),
        dns: None,
        port_mappings: Vec::new(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        cgroup_parent: String::new(),
        sysctls: BTreeMap::new(),
        namespaces: NsOptions {
            network: NsMode::Pod,
            pid,
            ipc: NsMode::Pod,
        },
        userns: None,
        runtime_handler: String::new(),
        cri_config: String::new(),
    }
}

impl World {
    /// Every file and directory under the temp dir but the store and the
    /// cgroup root itself, relative.
    fn left(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.tmp.path(), self.tmp.path(), &mut out);
        out.retain(|p| {
            !p.starts_with("meta.redb")
                && !matches!(p.as_str(), "cgroup" | "cgroup/berth" | "root" | "root/pods")
                && !matches!(p.as_str(), "state" | "state/pods" | "state/netns")
        });
        out.sort();
        out
    }

    fn records(&self) -> usize {
        self.pods.store.list(&PODS).unwrap().len() + self.pods.store.list(&POD_NAMES).unwrap().len()
    }
}

#[tokio::test]
async fn a_failed_network_setup_unwinds_everything() {
    let w = world();
    w.network.fail_setup.store(true, Ordering::SeqCst);
    let e = w
        .pods
        .run(spec("web", NsMode::Container))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PodError::Network(NetworkError::Failed(_))),
        "{e}"
    );
    // No record, no name, no namespace pin, no state or files dir (the
    // state dir was left behind before), no /dev/shm, no cgroup.
    assert_eq!(w.records(), 0);
    assert_eq!(w.left(), Vec::<String>::new());
    // The name is free again.
    w.network.fail_setup.store(false, Ordering::SeqCst);
    let id = w.pods.run(spec("web", NsMode::Container)).await.unwrap();
    assert_eq!(w.pods.status(&id).unwrap().state, SandboxState::Ready);
}

fn userns_spec(name: &str) -> SandboxSpec {
    let map = |host_id| crate::spec::IdMap {
        container_id: 0,
        host_id,
        length: 65536,
    };
    SandboxSpec {
        userns: Some(crate::spec::UserNs {
            uids: map(200_000),
            gids: map(300_000),
        }),
        ..spec(name, NsMode::Pod)
    }
}

#[tokio::test]
async fn a_user_namespace_owns_the_pods_namespaces_files_and_holder() {
    let w = world();
    let id = w.pods.run(userns_spec("web")).await.unwrap();
    let rec = w.pods.status(&id).unwrap();
    let user = rec.userns.clone().unwrap();
    assert_eq!(user, w.tmp.path().join("state/pods").join(&id).join("user"));
    assert!(user.exists(), "pinned with the others");
    let calls = w.kernel.calls();
    assert!(
        calls.contains(&format!("holder {id} in {}", user.display())),
        "{calls:?}"
    );
    for f in ["hostname", "hosts", "resolv.conf"] {
        assert!(
            calls.contains(&format!("own {f} (200000, 300000)")),
            "{f}: {calls:?}"
        );
    }
    let shm = std::fs::read_to_string(rec.shm.as_ref().unwrap().join(".mounted")).unwrap();
    assert_eq!(shm, "Some((200000, 300000))");
    // The fake holder's pid, a real file here, would keep the cgroup.
    let procs = w
        .tmp
        .path()
        .join("cgroup")
        .join(rec.cgroup.trim_start_matches('/'))
        .join("cgroup.procs");
    std::fs::remove_file(procs).unwrap();
    w.pods.remove(&id).await.unwrap();
    assert!(!user.exists());
    assert_eq!(w.left(), Vec::<String>::new());

    // Without its own network, IPC or PID namespace: refused before any
    // work.
    let mut host_net = userns_spec("host-net");
    host_net.namespaces.network = NsMode::Node;
    let e = w.pods.run(host_net).await.unwrap_err();
    assert!(matches!(e, PodError::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains("network"), "{e}");
    assert_eq!(w.records(), 0);
}

#[tokio::test]
async fn a_pod_leaves_nothing_after_removal() {
    let w = world();
    let id = w.pods.run(spec("web", NsMode::Container)).await.unwrap();
    let rec = w.pods.status(&id).unwrap();
    assert_eq!(rec.ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert!(rec.netns.as_ref().unwrap().exists());
    assert!(!w.left().is_empty());
    w.pods.stop(&id).await.unwrap();
    assert!(w.network.attached.lock().unwrap().is_empty());
    assert!(!rec.netns.as_ref().unwrap().exists());
    w.pods.remove(&id).await.unwrap();
    assert_eq!(w.records(), 0);
    assert_eq!(w.left(), Vec::<String>::new());
}

#[tokio::test]
async fn an_unwind_that_fails_keeps_the_record_until_remove_succeeds() {
    let w = world();
    w.network.fail_setup.store(true, Ordering::SeqCst);
    // The holder's pid is written into cgroup.procs: in this stand-in for
    // a cgroup mount, a real file that keeps the pod's cgroup from going,
    // as a live holder keeps a real one.
    let e = w.pods.run(spec("web", NsMode::Pod)).await.unwrap_err();
    assert!(matches!(e, PodError::Network(_)));
    let calls = w.kernel.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("stop holders")),
        "{calls:?}"
    );
    let all = w.pods.list(&PodFilter::default()).unwrap();
    assert_eq!(all.len(), 1, "the half-undone sandbox must stay recorded");
    let rec = (*all[0]).clone();
    assert_eq!(rec.state, SandboxState::NotReady);
    assert!(rec.incomplete);
    // Once the cgroup can go, RemovePodSandbox finishes it.
    let procs = w
        .tmp
        .path()
        .join("cgroup")
        .join(rec.cgroup.trim_start_matches('/'))
        .join("cgroup.procs");
    std::fs::remove_file(procs).unwrap();
    w.pods.remove(&rec.id).await.unwrap();
    assert_eq!(w.records(), 0);
    assert_eq!(w.left(), Vec::<String>::new());
}

#[tokio::test]
async fn recovery_stops_holders_a_crash_left_unrecorded() {
    let w = world();
    // As a crash during RunPodSandbox leaves it: the record in Creating,
    // the namespaces pinned and the cgroup made, the holder's pid never
    // recorded.
    let s = spec("web", NsMode::Pod);
    let key = s.metadata.reservation_key();
    let rec = w.pods.record_for("p1", s).unwrap();
    w.pods
        .store
        .write(|tx| {
            tx.put(&PODS, "p1", &rec)?;
            tx.put(&POD_NAMES, &key, &"p1".to_string())?;
            Ok::<(), PodError>(())
        })
        .unwrap();
    w.pods.cgroups.create(&rec.cgroup).unwrap();
    w.kernel
        .create_namespaces(&NsRequest {
            net: rec.netns.clone(),
            ipc: rec.ipcns.clone(),
            uts: rec.utsns.clone(),
            ..Default::default()
        })
        .unwrap();
    w.pods.recover().await.unwrap();
    let calls = w.kernel.calls();
    assert!(
        calls.contains(&"stop holders p1 None".to_string()),
        "holders found by their command line: {calls:?}"
    );
    assert_eq!(w.records(), 0);
    assert_eq!(w.left(), Vec::<String>::new());
}

#[tokio::test]
async fn an_unwind_whose_network_teardown_fails_still_removes_the_state_dir() {
    let w = world();
    w.network.fail_setup.store(true, Ordering::SeqCst);
    w.network.fail_teardown.store(true, Ordering::SeqCst);
    assert!(w.pods.run(spec("web", NsMode::Container)).await.is_err());
    // The network may still hold something: the record stays, but no
    // namespace pin and no empty state directory.
    let left = w.left();
    assert!(
        !left.iter().any(|p| p.starts_with("state/")),
        "left in the state dir: {left:?}"
    );
    w.network.fail_teardown.store(false, Ordering::SeqCst);
    let rec = w.pods.list(&PodFilter::default()).unwrap()[0].clone();
    w.pods.remove(&rec.id).await.unwrap();
    assert_eq!(w.records(), 0);
    assert_eq!(w.left(), Vec::<String>::new());
}

#[tokio::test]
async fn recovery_sweeps_state_dirs_and_pins_no_record_owns() {
    let w = world();
    let id = w.pods.run(spec("kept", NsMode::Container)).await.unwrap();
    let orphan = w.tmp.path().join("state/pods/orphan");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("ipc"), b"pinned").unwrap();
    std::fs::write(w.tmp.path().join("state/netns/orphan"), b"pinned").unwrap();
    w.pods.recover().await.unwrap();
    let left = w.left();
    assert!(!left.iter().any(|p| p.contains("orphan")), "{left:?}");
    // The recorded pod keeps its namespaces.
    assert!(w.pods.status(&id).unwrap().netns.unwrap().exists());
}

#[tokio::test]
async fn a_host_port_another_pod_holds_is_refused_until_it_stops() {
    use crate::spec::{PortMapping, Protocol};
    let w = world();
    let with_port = |name: &str, port: u16, ip: &str| SandboxSpec {
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_port: port,
            host_ip: ip.into(),
        }],
        ..spec(name, NsMode::Container)
    };
    let web = w.pods.run(with_port("web", 8080, "")).await.unwrap();
    let e = w
        .pods
        .run(with_port("copy", 8080, "127.0.0.1"))
        .await
        .unwrap_err();
    assert!(matches!(e, PodError::PortInUse(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("8080/Tcp") && msg.contains("test/web") && msg.contains(&web),
        "{msg}"
    );
    // Refused before any work: no record, nothing attached.
    assert_eq!(w.network.attached.lock().unwrap().len(), 1);
    // Another port is free; host-network pods bind their own.
    w.pods.run(with_port("other", 8081, "")).await.unwrap();
    let mut host = with_port("hostnet", 8080, "");
    host.namespaces.network = NsMode::Node;
    w.pods.run(host).await.unwrap();
    // Once the holder stops, the port is free.
    w.pods.stop(&web).await.unwrap();
    w.pods
        .run(with_port("copy", 8080, "127.0.0.1"))
        .await
        .unwrap();
}
