//! berth-shim against real containers (runc, busybox), as root.
//!
//! Kept as one file past ~600 lines: one binary under test through one
//! harness (tests/common), one request or behaviour of the shim per test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use berth_shim::proto::{ContainerState, ErrorKind, ExecSync, Exit, Request, Response, Status};
use common::*;

macro_rules! need_root {
    () => {
        if !can_run(std::thread::current().name().unwrap_or("test")) {
            return;
        }
    };
}

fn wait(env: &Env, id: &str) -> Exit {
    match env.call(&Request::Wait { id: id.into() }) {
        Response::Exited(e) => e,
        r => panic!("wait: {r:?}"),
    }
}

fn list(env: &Env) -> Vec<ContainerState> {
    match env.call(&Request::List) {
        Response::Containers { containers } => containers,
        r => panic!("list: {r:?}"),
    }
}

fn status(env: &Env, id: &str) -> Status {
    list(env).into_iter().find(|c| c.id == id).unwrap().status
}

fn error_kind(r: Response) -> (ErrorKind, String) {
    match r {
        Response::Error { kind, message } => (kind, message),
        r => panic!("expected an error, got {r:?}"),
    }
}

fn exec(env: &Env, id: &str, process: &Path, timeout_ms: u64) -> (i32, String, String, bool) {
    let req = Request::ExecSync(ExecSync {
        id: id.into(),
        process: process.to_path_buf(),
        timeout_ms,
        max_output: 1 << 20,
    });
    match env.call(&req) {
        Response::ExecResult {
            exit_code,
            stdout,
            stderr,
            timed_out,
        } => (
            exit_code,
            String::from_utf8(stdout).unwrap(),
            String::from_utf8(stderr).unwrap(),
            timed_out,
        ),
        r => panic!("exec: {r:?}"),
    }
}

const SLEEPER: &str = "trap 'exit 0' USR1; while :; do /bin/busybox sleep 1; done";

#[test]
fn hello_and_files() {
    need_root!();
    let mut env = Env::new();
    let pid = env.start_shim();
    assert_eq!(
        env.call(&Request::Hello),
        Response::Hello {
            version: berth_shim::proto::VERSION,
            pid,
            pod_id: "pod-1".into()
        }
    );
    let mode = fs::metadata(env.sock()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pid_file = fs::read_to_string(env.dir.join("shim.pid")).unwrap();
    assert_eq!(pid_file, format!("{pid}\n"));
    assert!(env.dir.join("shim.log").exists());
    // Not a child of whoever started it: it forked away.
    assert_ne!(ppid(pid), std::process::id());
    // Its own session.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let sid: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sid, pid);
    // SIGTERM and SIGINT do not stop it.
    for sig in [
        nix::sys::signal::SIGTERM,
        nix::sys::signal::SIGINT,
        nix::sys::signal::SIGHUP,
    ] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    }
    thread::sleep(Duration::from_millis(200));
    assert!(alive(pid));
    assert!(matches!(env.call(&Request::Hello), Response::Hello { .. }));
    // Malformed requests.
    let (kind, _) = error_kind(raw_call(&env.sock(), b"{\"op\":\"nope\"}\n"));
    assert_eq!(kind, ErrorKind::Invalid);
    let (kind, _) = error_kind(raw_call(&env.sock(), b"garbage\n"));
    assert_eq!(kind, ErrorKind::Invalid);
    // A second shim on the same dir refuses to start.
    let out = Command::new(SHIM)
        .args(["--pod-id", "pod-1", "--dir"])
        .arg(&env.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
    assert!(matches!(env.call(&Request::Hello), Response::Hello { .. }));
}

fn raw_call(sock: &Path, data: &[u8]) -> Response {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.write_all(data).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    serde_json::from_slice(&buf).unwrap()
}

#[test]
fn output_is_logged_in_cri_format_and_the_exit_recorded() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let script = "echo out1; echo err1 >&2; echo; \
        /bin/busybox head -c 20000 /dev/zero | /bin/busybox tr '\\0' a; echo; \
        printf 'crlf\\r\\n'; echo out2; printf 'no newline' >&2; exit 3";
    let b = env.bundle(script, |_| {});
    let log = env.tmp.path().join("c.log");
    let shim_fds = fd_count(env.shim_pid.unwrap());
    let pid = env.run(&b, Some(&log));
    let exit = wait(&env, &b.id);
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.signal, None);
    assert_eq!(exit.pid, pid);
    assert!(!exit.oom_killed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(exit.finished_at_ns <= now && exit.finished_at_ns > now - 60_000_000_000);
    // The exit record was written before the answer, and matches it.
    let record: Exit =
        serde_json::from_slice(&fs::read(env.dir.join(format!("{}.exit", b.id))).unwrap()).unwrap();
    assert_eq!(record, exit);
    // A second Wait answers at once.
    assert_eq!(wait(&env, &b.id), exit);
    assert_eq!(status(&env, &b.id), Status::Exited);

    let mode = fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let lines = parse_log(&fs::read(&log).unwrap());
    let of = |stream: &str| -> Vec<(String, Vec<u8>)> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| (l.tag.clone(), l.content.clone()))
            .collect()
    };
    let f = |s: &[u8]| ("F".to_string(), s.to_vec());
    let p = |s: &[u8]| ("P".to_string(), s.to_vec());
    assert_eq!(
        of("stdout"),
        vec![
            f(b"out1"),
            f(b""),
            p(&[b'a'; 16384]),
            f(&[b'a'; 20000 - 16384]),
            f(b"crlf"),
            f(b"out2"),
        ]
    );
    assert_eq!(of("stderr"), vec![f(b"err1"), p(b"no newline")]);
    // Timestamps do not go backwards within a stream.
    let data = fs::read_to_string(&log).unwrap();
    let ts: Vec<&str> = data
        .lines()
        .filter(|l| l.contains(" stdout "))
        .map(|l| &l[..30])
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));

    // Delete forgets it and removes the exit record.
    assert_eq!(
        env.call(&Request::Delete { id: b.id.clone() }),
        Response::Ok
    );
    assert!(!env.dir.join(format!("{}.exit", b.id)).exists());
    assert!(list(&env).is_empty());
    // Pipes and log file closed: no descriptor left behind.
    assert_eq!(fd_count(env.shim_pid.unwrap()), shim_fds);
    let (kind, _) = error_kind(env.call(&Request::Wait { id: b.id.clone() }));
    assert_eq!(kind, ErrorKind::NotFound);
    assert_eq!(
        env.call(&Request::Delete { id: b.id.clone() }),
        Response::Ok
    );
    // runc forgot it too.
    let out = Command::new(RUNC)
        .arg("--root")
        .arg(&env.runc_root)
        .args(["state", &b.id])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn kill_with_sigkill_is_137() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle(SLEEPER, |_| {});
    let pid = env.run(&b, None);
    assert_eq!(status(&env, &b.id), Status::Running);
    // Wait from another connection, answered when the kill lands.
    let sock = env.sock();
    let id = b.id.clone();
    let waiter =
        thread::spawn(move || call(&sock, &Request::Wait { id }, Duration::from_secs(60)).unwrap());
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        env.call(&Request::Kill {
            id: b.id.clone(),
            signal: 9
        }),
        Response::Ok
    );
    let Response::Exited(exit) = waiter.join().unwrap() else {
        panic!("wait")
    };
    assert_eq!((exit.exit_code, exit.signal, exit.pid), (137, Some(9), pid));
    assert!(!exit.oom_killed);
    assert!(!alive(pid));
    // Killing an exited container is fine.
    assert_eq!(
        env.call(&Request::Kill {
            id: b.id.clone(),
            signal: 15
        }),
        Response::Ok
    );
    let (kind, _) = error_kind(env.call(&Request::Kill {
        id: "nope".into(),
        signal: 9,
    }));
    assert_eq!(kind, ErrorKind::NotFound);
    let (kind, _) = error_kind(env.call(&Request::Kill {
        id: b.id.clone(),
        signal: 0,
    }));
    assert_eq!(kind, ErrorKind::Invalid);
    // Start after exit, create twice.
    let (kind, _) = error_kind(env.call(&Request::Start { id: b.id.clone() }));
    assert_eq!(kind, ErrorKind::InvalidState);
    let (kind, _) = error_kind(env.call(&Request::Create(env.create_request(&b, None))));
    assert_eq!(kind, ErrorKind::AlreadyExists);
}

#[test]
fn a_process_ignoring_sigterm_survives_kill_15() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle(
        "trap '' TERM; while :; do /bin/busybox sleep 1; done",
        |_| {},
    );
    let pid = env.run(&b, None);
    // Until the shell has run its trap, pid 1 may still be the runtime's
    // init (runc's is Go, whose SIGTERM handler exits): wait for the trap.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ignores_sigterm(pid) {
        assert!(std::time::Instant::now() < deadline, "trap never set");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        env.call(&Request::Kill {
            id: b.id.clone(),
            signal: 15
        }),
        Response::Ok
    );
    thread::sleep(Duration::from_millis(1500));
    assert!(alive(pid));
    assert_eq!(status(&env, &b.id), Status::Running);
    assert_eq!(
        env.call(&Request::Kill {
            id: b.id.clone(),
            signal: 9
        }),
        Response::Ok
    );
    let exit = wait(&env, &b.id);
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
}

#[test]
fn exec_sync_output_exit_code_and_errors() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle(SLEEPER, |_| {});
    let log = env.tmp.path().join("c.log");
    // Created, not started: no exec.
    let Response::Created { .. } = env.call(&Request::Create(env.create_request(&b, Some(&log))))
    else {
        panic!("create")
    };
    let p = env.process_file("p1", "echo hello; echo oops >&2; echo $$; exit 7");
    let req = Request::ExecSync(ExecSync {
        id: b.id.clone(),
        process: p.clone(),
        timeout_ms: 0,
        max_output: 100,
    });
    let (kind, _) = error_kind(env.call(&req));
    assert_eq!(kind, ErrorKind::InvalidState);
    assert_eq!(env.call(&Request::Start { id: b.id.clone() }), Response::Ok);
    let (kind, _) = error_kind(env.call(&Request::Start { id: b.id.clone() }));
    assert_eq!(kind, ErrorKind::InvalidState);

    let (code, out, err, timed_out) = exec(&env, &b.id, &p, 10_000);
    assert_eq!((code, timed_out), (7, false));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hello"));
    // It ran in the container's pid namespace.
    let ns_pid: u32 = lines.next().unwrap().parse().unwrap();
    assert!(ns_pid < 100, "pid {ns_pid} in the container");
    assert_eq!(err, "oops\n");
    // Output beyond max_output is dropped.
    let big = env.process_file("p2", "/bin/busybox head -c 300000 /dev/zero; echo done >&2");
    let Response::ExecResult {
        exit_code,
        stdout,
        stderr,
        ..
    } = env.call(&Request::ExecSync(ExecSync {
        id: b.id.clone(),
        process: big,
        timeout_ms: 0,
        max_output: 1000,
    }))
    else {
        panic!("exec")
    };
    assert_eq!(exit_code, 0);
    assert_eq!(stdout, vec![0u8; 1000]);
    assert_eq!(stderr, b"done\n");
    // Several at once.
    let sock = env.sock();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let p = env.process_file(
                &format!("par{i}"),
                &format!("/bin/busybox sleep 0.3; echo {i}; exit {i}"),
            );
            let (sock, id) = (sock.clone(), b.id.clone());
            thread::spawn(move || {
                let req = Request::ExecSync(ExecSync {
                    id,
                    process: p,
                    timeout_ms: 0,
                    max_output: 64,
                });
                (i, call(&sock, &req, Duration::from_secs(60)).unwrap())
            })
        })
        .collect();
    for h in handles {
        let (i, r) = h.join().unwrap();
        let Response::ExecResult {
            exit_code, stdout, ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(exit_code, i);
        assert_eq!(stdout, format!("{i}\n").into_bytes());
    }
    // A process that cannot start is the runtime's error.
    let bad = env.tmp.path().join("bad.json");
    fs::write(
        &bad,
        r#"{"terminal":false,"user":{"uid":0,"gid":0},"args":["/nonexistent"],"env":["PATH=/bin"],"cwd":"/"}"#,
    )
    .unwrap();
    let (kind, msg) = error_kind(env.call(&Request::ExecSync(ExecSync {
        id: b.id.clone(),
        process: bad,
        timeout_ms: 0,
        max_output: 64,
    })));
    assert_eq!(kind, ErrorKind::Runtime);
    assert!(msg.contains("/nonexistent"), "{msg}");
    // Killed by a signal: 128 + signal.
    let p = env.process_file("p3", "kill -9 $$");
    assert_eq!(exec(&env, &b.id, &p, 0).0, 137);
    // Exec output never reaches the container's log; no files left.
    let data = fs::read_to_string(&log).unwrap_or_default();
    assert!(!data.contains("hello"), "{data}");
    let left: Vec<_> = fs::read_dir(&env.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(status(&env, &b.id), Status::Running);
}

#[test]
fn exec_sync_timeout_kills_the_process() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle(SLEEPER, |_| {});
    let init = env.run(&b, None);
    let p = env.process_file("slow", "echo started; exec /bin/busybox sleep 777");
    let t0 = Instant::now();
    let (code, out, _, timed_out) = exec(&env, &b.id, &p, 700);
    let took = t0.elapsed();
    assert!(timed_out);
    assert_eq!(code, 137);
    assert_eq!(out, "started\n");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The process is gone, the container still runs.
    let sleeping = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.windows(9).any(|w| w == b"sleep\x00777"))
            })
    };
    assert!(wait_until(Duration::from_secs(5), || !sleeping()));
    assert!(alive(init));
    assert_eq!(status(&env, &b.id), Status::Running);
    // And serves more execs.
    let p = env.process_file("quick", "echo ok");
    assert_eq!(
        exec(&env, &b.id, &p, 5000),
        (0, "ok\n".into(), String::new(), false)
    );
}

#[test]
fn reopen_log_after_rename_writes_a_new_file() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle(
        "echo before; while [ ! -e /go ]; do /bin/busybox sleep 0.05; done; echo after; exit 0",
        |_| {},
    );
    let log = env.tmp.path().join("c.log");
    env.run(&b, Some(&log));
    assert!(wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&log).is_ok_and(|s| s.contains("before"))
    }));
    let rotated = env.tmp.path().join("c.log.1");
    fs::rename(&log, &rotated).unwrap();
    assert_eq!(
        env.call(&Request::ReopenLog { id: b.id.clone() }),
        Response::Ok
    );
    assert!(log.exists());
    fs::write(b.rootfs.join("go"), "").unwrap();
    assert_eq!(wait(&env, &b.id).exit_code, 0);
    let old = parse_log(&fs::read(&rotated).unwrap());
    let new = parse_log(&fs::read(&log).unwrap());
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].content, b"before");
    assert_eq!(new.len(), 1);
    assert_eq!(
        (new[0].stream.as_str(), new[0].content.as_slice()),
        ("stdout", &b"after"[..])
    );
    // Unknown container; no log at all is fine.
    let (kind, _) = error_kind(env.call(&Request::ReopenLog { id: "x".into() }));
    assert_eq!(kind, ErrorKind::NotFound);
}

#[test]
fn a_fresh_client_lists_and_waits() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let running = env.bundle(SLEEPER, |_| {});
    // stdin: false is a pipe at end of file (cat returns at once).
    let done = env.bundle("/bin/busybox cat; exit 5", |_| {});
    let pid = env.run(&running, None);
    env.run(&done, None);
    assert_eq!(wait(&env, &done.id).exit_code, 5);
    // "berthd restarts": new connections, nothing remembered client side.
    let states = list(&env);
    assert_eq!(states.len(), 2);
    let r = states.iter().find(|c| c.id == running.id).unwrap();
    assert_eq!(
        (r.pid, r.status, r.exit.clone()),
        (pid, Status::Running, None)
    );
    let d = states.iter().find(|c| c.id == done.id).unwrap();
    assert_eq!(d.status, Status::Exited);
    assert_eq!(d.exit.as_ref().unwrap().exit_code, 5);
    let record: Exit =
        serde_json::from_slice(&fs::read(env.dir.join(format!("{}.exit", done.id))).unwrap())
            .unwrap();
    assert_eq!(Some(record), d.exit);
    // A waiter that gives up does not disturb the others.
    {
        let mut s = std::os::unix::net::UnixStream::connect(env.sock()).unwrap();
        use std::io::Write;
        s.write_all(b"{\"op\":\"wait\",\"id\":\"").unwrap();
        s.write_all(running.id.as_bytes()).unwrap();
        s.write_all(b"\"}\n").unwrap();
    }
    let sock = env.sock();
    let id = running.id.clone();
    let waiter =
        thread::spawn(move || call(&sock, &Request::Wait { id }, Duration::from_secs(60)).unwrap());
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        env.call(&Request::Kill {
            id: running.id.clone(),
            signal: 10 // SIGUSR1: the trap exits 0
        }),
        Response::Ok
    );
    let Response::Exited(exit) = waiter.join().unwrap() else {
        panic!()
    };
    assert_eq!((exit.exit_code, exit.signal), (0, None));
}

#[test]
fn the_shim_survives_its_starter_and_its_process_group() {
    need_root!();
    let mut env = Env::new();
    // berthd-like: the starter runs in its own process group, which is
    // then killed whole.
    let mut starter = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "'{SHIM}' --pod-id pod-1 --dir '{}'; exec sleep 1000",
            env.dir.display()
        ))
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(starter.stdout.take().unwrap());
        r.read_line(&mut line).unwrap();
    }
    let pid: u32 = line.trim().parse().unwrap();
    env.shim_pid = Some(pid);
    let b = env.bundle(SLEEPER, |_| {});
    let init = env.run(&b, None);
    assert_ne!(ppid(pid), starter.id());
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(starter.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    starter.wait().unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(alive(pid));
    assert!(alive(init));
    assert!(matches!(env.call(&Request::Hello), Response::Hello { .. }));
    assert_eq!(status(&env, &b.id), Status::Running);
    // The container's init is the shim's child (subreaper).
    assert_eq!(ppid(init), pid);
}

#[test]
fn shutdown_kills_containers_and_exits() {
    need_root!();
    let mut env = Env::new();
    let pid = env.start_shim();
    let a = env.bundle(
        "trap '' TERM; while :; do /bin/busybox sleep 1; done",
        |_| {},
    );
    let b = env.bundle(SLEEPER, |_| {});
    let pa = env.run(&a, None);
    let pb = env.run(&b, None);
    // A waiter is answered before the shim goes.
    let sock = env.sock();
    let id = a.id.clone();
    let waiter =
        thread::spawn(move || call(&sock, &Request::Wait { id }, Duration::from_secs(60)).unwrap());
    thread::sleep(Duration::from_millis(200));
    assert_eq!(env.call(&Request::Shutdown), Response::Ok);
    // Gone at once: socket and pid file.
    assert!(!env.sock().exists());
    assert!(!env.dir.join("shim.pid").exists());
    assert!(wait_dead(pid, Duration::from_secs(10)));
    assert!(!alive(pa) && !alive(pb));
    let Response::Exited(exit) = waiter.join().unwrap() else {
        panic!()
    };
    assert_eq!(exit.exit_code, 137);
    for id in [&a.id, &b.id] {
        let record: Exit =
            serde_json::from_slice(&fs::read(env.dir.join(format!("{id}.exit"))).unwrap()).unwrap();
        assert_eq!((record.exit_code, record.signal), (137, Some(9)));
    }
}

#[test]
fn an_oom_kill_is_reported() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle(
        "/bin/busybox head -c 200m /dev/zero | /bin/busybox tail; exit 0",
        |c| {
            c["linux"]["resources"] = serde_json::json!({
                "memory": {"limit": 8 << 20, "swap": 8 << 20}
            });
        },
    );
    env.run(&b, None);
    let exit = wait(&env, &b.id);
    assert!(exit.oom_killed, "{exit:?}");
    // And a container that exits normally under a limit is not.
    let ok = env.bundle("exit 0", |c| {
        c["linux"]["resources"] = serde_json::json!({
            "memory": {"limit": 8 << 20, "swap": 8 << 20}
        });
    });
    env.run(&ok, None);
    assert!(!wait(&env, &ok.id).oom_killed);
}

#[test]
fn a_broken_bundle_is_the_runtimes_error_and_leaves_nothing() {
    need_root!();
    let mut env = Env::new();
    env.start_shim();
    let b = env.bundle("exit 0", |c| {
        c["root"]["path"] = "/nonexistent-berth-rootfs".into();
    });
    let log = env.tmp.path().join("c.log");
    let (kind, msg) = error_kind(env.call(&Request::Create(env.create_request(&b, Some(&log)))));
    assert_eq!(kind, ErrorKind::Runtime);
    assert!(msg.contains("/nonexistent-berth-rootfs"), "{msg}");
    assert!(!log.exists());
    assert!(list(&env).is_empty());
    assert!(!env.dir.join(format!("{}.exit", b.id)).exists());
    assert!(!b.path.join("init.pid").exists());
    let out = Command::new(RUNC)
        .arg("--root")
        .arg(&env.runc_root)
        .args(["state", &b.id])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!b.memory_cgroup().exists());
    // A missing runtime binary is a runtime error too.
    let mut req = env.create_request(&b, None);
    req.runtime.path = "/nonexistent/runc".into();
    let (kind, msg) = error_kind(env.call(&Request::Create(req)));
    assert_eq!(kind, ErrorKind::Runtime);
    assert!(msg.contains("/nonexistent/runc"), "{msg}");
    // The shim is fine and can run the fixed bundle.
    let good = env.bundle("exit 4", |_| {});
    env.run(&good, None);
    assert_eq!(wait(&env, &good.id).exit_code, 4);
}

#[test]
fn memory_with_one_running_container() {
    need_root!();
    let mut env = Env::new();
    let pid = env.start_shim();
    let b = env.bundle(
        "while :; do echo tick; /bin/busybox sleep 0.1; done",
        |_| {},
    );
    let log = env.tmp.path().join("c.log");
    env.run(&b, Some(&log));
    thread::sleep(Duration::from_millis(1500));
    let p = env.process_file("e", "echo hi");
    assert_eq!(exec(&env, &b.id, &p, 5000).0, 0);
    let rss = kib(&format!("/proc/{pid}/status"), "VmRSS");
    let anon = kib(&format!("/proc/{pid}/status"), "RssAnon");
    let pss = kib(&format!("/proc/{pid}/smaps_rollup"), "Pss");
    println!(
        "berth-shim with one running container: VmRSS {rss} KiB, RssAnon {anon} KiB, Pss {pss} KiB"
    );
    assert!(rss < 4096, "VmRSS {rss} KiB");
    assert!(fs::read_to_string(&log).unwrap().contains("stdout F tick"));
}

/// Whether `pid` ignores SIGTERM (bit 15 of SigIgn in its status).
fn ignores_sigterm(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << 14) != 0)
}
