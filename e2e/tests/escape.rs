//! The runtime-binary escape (CVE-2019-5736 and its kin), tried from inside
//! containers as an attacker would, on each runtime handler: a process that
//! berth runs in a container's namespaces (create's init until the
//! container's program starts, exec's joining child, the shared PID
//! namespace's holder) must never lead the container to a writable host
//! file through `/proc/<pid>/exe`.
//!
//! The containers run a scanner (busybox sh): for every process it can see,
//! it reads the exe link and classifies it (`ROOTFS`: a file of that
//! process's rootfs; `MEMFD`: an in-memory copy; `DENIED`: the link cannot be read,
//! the process being non-dumpable; `HOST`: anything else, i.e. a host
//! file), and for everything but `ROOTFS` tries to write through it, both
//! directly and by reopening a descriptor it holds (`WROTE` if either
//! succeeds). The tests assert that nothing is `HOST` or `WROTE`, that the
//! scanner did see the processes in question, and that the host's
//! binaries hash the same before and after.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, pod_config, setup};
use k8s_cri::v1::*;
use sha2::{Digest, Sha256};

/// One pass over the visible processes: a line `VERDICT PID TARGET` per
/// process that is not the scanner itself (pid `$$` or the pid in `$1`).
const SCAN_FN: &str = r#"
scan() {
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$p" in "$$"|"$1") continue;; esac
    t=$(readlink $d/exe 2>/dev/null)
    if [ -z "$t" ]; then
      [ -d $d ] && echo "DENIED $p -"
      continue
    fi
    a=$(stat -L -c %d:%i $d/exe 2>/dev/null)
    # The file at that path in the process's own root (a sibling
    # container's root differs from ours).
    b=$(stat -c %d:%i "$d/root$t" 2>/dev/null)
    # Gone or changed meanwhile (it exited or exec'd): look again next
    # pass. Both stats were made while it still ran this executable.
    [ "$(readlink $d/exe 2>/dev/null)" = "$t" ] || continue
    case "$t" in
      /memfd:*) v=MEMFD ;;
      *) if [ -n "$a" ] && [ "$a" = "$b" ]; then v=ROOTFS; else v=HOST; fi ;;
    esac
    if [ $v != ROOTFS ]; then
      { printf x >> $d/exe; } 2>/dev/null && v=WROTE
      ( exec 7< $d/exe && printf x >> /proc/self/fd/7 ) 2>/dev/null && v=WROTE
    fi
    echo "$v $p $t"
  done
}
"#;

/// The scanner as a container's main process: passes until /tmp/stop
/// exists, everything but `ROOTFS` lines into /tmp/report, then `END n`.
fn scan_loop() -> String {
    format!(
        "{SCAN_FN}\n: > /tmp/report\nn=0\nwhile [ ! -e /tmp/stop ]; do scan | grep -v '^ROOTFS' >> /tmp/report; n=$((n+1)); done\necho \"END $n\" >> /tmp/report\nexec sleep 100000\n"
    )
}

/// A single pass, run by ExecSync (its shell's own pid excluded).
fn scan_once() -> String {
    format!("{SCAN_FN}\nscan $PPID\n")
}

/// The exploit's first step: a script whose interpreter is the executable
/// of the process that runs it. Run by the runtime's exec, that is the
/// runtime binary, now inside the container. (The image is the dynamic
/// busybox with glibc, so that a dynamically linked test build of the
/// runtime gets as far as its loader there.)
const EVIL: &str = "printf '#!/proc/self/exe\\n' > /tmp/evil && chmod +x /tmp/evil";

#[derive(Debug, Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn parse(text: &str) -> Report {
        Report {
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    fn count(&self, verdict: &str) -> usize {
        self.lines
            .iter()
            .filter(|l| l.split(' ').next() == Some(verdict))
            .count()
    }

    /// How many passes a scan loop made.
    fn passes(&self) -> usize {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("END ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Nothing reached a host file or wrote through an exe link.
    fn assert_clean(&self, what: &str) {
        let bad: Vec<&String> = self
            .lines
            .iter()
            .filter(|l| l.starts_with("HOST") || l.starts_with("WROTE"))
            .collect();
        assert!(bad.is_empty(), "{what}: {bad:?}");
    }
}

/// The host files a container might reach: the handler's runtime and the
/// shim (the PID namespace holder), with their SHA-256.
fn host_binaries(handler: &str) -> Vec<(PathBuf, String)> {
    let runtime = match handler {
        "runc" => which("runc"),
        _ => berth_e2e::bin_path("berth-runtime"),
    };
    [runtime, berth_e2e::bin_path("berth-shim")]
        .into_iter()
        .map(|p| {
            let hash = hex::encode(Sha256::digest(fs::read(&p).unwrap()));
            (p, hash)
        })
        .collect()
}

fn which(name: &str) -> PathBuf {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| PathBuf::from(d).join(name))
    .find(|p| p.is_file())
    .unwrap_or_else(|| panic!("{name} not found"))
}

/// Seen from the host (which may look): the process runs from a sealed
/// in-memory copy, not from a file.
fn assert_runs_sealed(pid: i32, what: &str) {
    let link = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "{what} (pid {pid}) runs from {}",
        link.display()
    );
    let exe = fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        berth_process::sealed::is_sealed(&exe),
        "{what} (pid {pid}): {} is not sealed",
        link.display()
    );
}

/// ExecSync of the exploit script: the runtime binary is its interpreter.
/// It fails either way: the runtime refuses its command line, or (a
/// dynamically linked test build) its libraries are not in the image.
async fn evil_refused(s: &mut Setup, id: &str) -> bool {
    match s.exec(id, &["/tmp/evil"], 10).await {
        Ok(r) => r.exit_code != 0,
        Err(st) => st.message().contains("/tmp/evil"),
    }
}

/// Finds the runtime's `exec` process of a running ExecSync and checks that
/// it runs from the sealed copy.
async fn exec_runs_sealed(s: &mut Setup, id: &str, handler: &str) {
    let runtime: &[u8] = match handler {
        "runc" => b"runc",
        _ => b"berth-runtime",
    };
    let mut c = s.e.d.client().await;
    let target = id.to_owned();
    let exec = tokio::spawn(async move {
        c.runtime
            .exec_sync(ExecSyncRequest {
                container_id: target,
                cmd: vec!["sleep".into(), "3".into()],
                timeout: 10,
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let found = loop {
        let found = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_exec = args.first()?.ends_with(runtime)
                && args.iter().any(|a| *a == b"exec")
                && args.contains(&id.as_bytes());
            is_exec.then_some(pid)
        });
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid = found.expect("no runtime exec process seen");
    assert_runs_sealed(pid, "the runtime's exec");
    assert_eq!(exec.await.unwrap().unwrap().into_inner().exit_code, 0);
}

/// The holder can reach nothing the pod cannot: the pod's network
/// namespace, an empty root, no capabilities, no new privileges.
fn assert_holder_isolated(pid: i32, pod_netns: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let ns = fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    let pinned = fs::metadata(pod_netns).unwrap();
    assert_eq!((ns.dev(), ns.ino()), (pinned.dev(), pinned.ino()));
    let root: Vec<_> = fs::read_dir(format!("/proc/{pid}/root")).unwrap().collect();
    assert!(root.is_empty(), "the holder's root is not empty: {root:?}");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field}"));
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
}

async fn wait_for_report(s: &mut Setup, id: &str) -> Report {
    s.sh(id, "touch /tmp/stop").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out) = s.sh(id, "cat /tmp/report").await;
        if out.lines().any(|l| l.starts_with("END ")) {
            return Report::parse(&out);
        }
        assert!(Instant::now() < deadline, "the scanner never ended: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pod sharing one PID namespace: a scanner container watches 50 sibling
/// containers being created (held created, so their init runs the
/// runtime's code in the pod's namespaces) and 50 execs of the exploit
/// script, and looks at each created sibling once more while it waits.
async fn shared_pid_namespace(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox_dynamic()).await;
    let before = host_binaries(handler);
    let mut cfg = pod_config("shared", &s.e.d.dir.join("logs/pod"));
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = NamespaceMode::Pod as i32;
    let pod =
        s.c.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
    let holder = fs::read_to_string(
        s.e.d
            .pod_cgroup("/sys/fs/cgroup/pids", &pod)
            .join("cgroup.procs"),
    )
    .unwrap();
    let holder: i32 = holder.lines().next().unwrap().parse().unwrap();
    assert_runs_sealed(holder, "the PID namespace holder");
    assert_holder_isolated(holder, &s.e.d.state_dir.join("netns").join(&pod));

    let cfg = s.config("scanner", &["sh", "-c", &scan_loop()]);
    let scanner = s.create_in(&pod, cfg).await.unwrap();
    s.start(&scanner).await;
    s.sh(&scanner, EVIL).await;
    let mut evil_failures = 0;
    for i in 0..50 {
        let cfg = s.config(&format!("victim{i}"), &["sleep", "1000"]);
        let victim = s.create_in(&pod, cfg).await.unwrap();
        // Created, not started: its init waits in the pod's namespaces.
        let pid = s.init_pid(&victim).await;
        assert_runs_sealed(pid, "a created container's init");
        if i % 10 == 0 {
            let (_, out) = s.sh(&scanner, &scan_once()).await;
            let once = Report::parse(&out);
            once.assert_clean("one pass while a sibling is created");
            // The holder and the created init at least: berth's are
            // non-dumpable (runc's init may show its own sealed copy).
            let locked = match handler {
                "berth" => once.count("DENIED"),
                _ => once.count("DENIED") + once.count("MEMFD"),
            };
            assert!(
                locked >= 2,
                "the scanner did not see the holder and the created init locked: {out}"
            );
        }
        if evil_refused(&mut s, &scanner).await {
            evil_failures += 1;
        }
        s.start(&victim).await;
        s.stop(&victim, 0).await;
        s.remove(&victim).await;
    }
    // The runtime ran the script and refused it each time.
    assert_eq!(evil_failures, 50);
    let report = wait_for_report(&mut s, &scanner).await;
    report.assert_clean("scanning during 50 creates and 50 execs");
    assert!(report.passes() >= 10, "the scanner hardly ran: {report:?}");
    eprintln!(
        "{handler}: {} passes, {} DENIED, {} MEMFD",
        report.passes(),
        report.count("DENIED"),
        report.count("MEMFD")
    );
    assert_eq!(host_binaries(handler), before, "a host binary changed");
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    s.finish().await;
}

/// A container with its own PID namespace (the default): the exploit
/// script exec'd 50 times while the container's scanner watches.
async fn own_pid_namespace(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox_dynamic()).await;
    let before = host_binaries(handler);
    let cfg = s.config("scanner", &["sh", "-c", &scan_loop()]);
    let id = s.create(cfg).await.unwrap();
    let pid = s.init_pid(&id).await;
    assert_runs_sealed(pid, "a created container's init");
    s.start(&id).await;
    s.sh(&id, EVIL).await;
    for _ in 0..50 {
        assert!(evil_refused(&mut s, &id).await);
        let r = s.exec(&id, &["true"], 10).await.unwrap();
        assert_eq!(r.exit_code, 0);
    }
    // While an exec runs, its runtime process (the shim's child, which
    // entered the container's namespaces to start it) runs sealed.
    exec_runs_sealed(&mut s, &id, handler).await;
    let report = wait_for_report(&mut s, &id).await;
    report.assert_clean("scanning during 100 execs");
    assert!(report.passes() >= 10, "the scanner hardly ran: {report:?}");
    eprintln!(
        "{handler}: {} passes, {} DENIED, {} MEMFD",
        report.passes(),
        report.count("DENIED"),
        report.count("MEMFD")
    );
    assert_eq!(host_binaries(handler), before, "a host binary changed");
    s.finish().await;
}

#[tokio::test]
async fn a_shared_pid_namespace_never_exposes_a_host_binary() {
    if !root_or_skip("a_shared_pid_namespace_never_exposes_a_host_binary") {
        return;
    }
    shared_pid_namespace("escshared", "berth").await;
}

#[tokio::test]
async fn a_shared_pid_namespace_never_exposes_a_host_binary_with_runc() {
    if !root_or_skip("a_shared_pid_namespace_never_exposes_a_host_binary_with_runc") {
        return;
    }
    shared_pid_namespace("escsharedrunc", "runc").await;
}

#[tokio::test]
async fn an_exec_never_exposes_a_host_binary() {
    if !root_or_skip("an_exec_never_exposes_a_host_binary") {
        return;
    }
    own_pid_namespace("escexec", "berth").await;
}

#[tokio::test]
async fn an_exec_never_exposes_a_host_binary_with_runc() {
    if !root_or_skip("an_exec_never_exposes_a_host_binary_with_runc") {
        return;
    }
    own_pid_namespace("escexecrunc", "runc").await;
}
