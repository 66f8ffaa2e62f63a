//! berth-shim's streaming requests (Exec, Attach) against real containers,
//! as root: runc, and berth-runtime when it is built next to the shim
//! (`cargo build --workspace --bins`). The descriptors come over the
//! socket with SCM_RIGHTS as berthd receives them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

mod common;

use std::fs;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_shim::proto::{self, ErrorKind, Exec, Request, Response, Runtime, StreamFd};
use common::*;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde_json::json;

macro_rules! need_root {
    () => {
        if !can_run(std::thread::current().name().unwrap_or("test")) {
            return;
        }
    };
}

/// berth-runtime, when built in the same target dir as the shim.
fn berth_runtime() -> Option<PathBuf> {
    let p = Path::new(SHIM).with_file_name("berth-runtime");
    if p.exists() {
        Some(p)
    } else {
        println!("berth-runtime not built next to the shim: runc only");
        None
    }
}

/// The runtimes to test with: runc, then berth-runtime if built.
fn runtimes(env: &Env) -> Vec<(&'static str, Runtime)> {
    let mut v = vec![("runc", env.runtime())];
    if let Some(p) = berth_runtime() {
        v.push((
            "berth-runtime",
            Runtime {
                path: p,
                root: Some(env.tmp.path().join("berth-runtime")),
                systemd_cgroup: false,
                options: vec![],
            },
        ));
    }
    eprintln!(
        "runtimes: {:?}",
        v.iter().map(|(n, r)| (n, &r.path)).collect::<Vec<_>>()
    );
    v
}

/// A devpts on /dev/pts (as CRI specs have): terminals need /dev/ptmx.
fn devpts(v: &mut serde_json::Value) {
    v["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/dev/pts", "type": "devpts", "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    }));
}

/// Create + Start with that runtime; `edit` changes the Create request.
fn run_with(
    env: &mut Env,
    rt: &Runtime,
    script: &str,
    edit: impl FnOnce(&mut proto::Create),
) -> String {
    let b = env.bundle(script, devpts);
    run_bundle(env, rt, &b, edit)
}

fn run_bundle(
    env: &mut Env,
    rt: &Runtime,
    b: &Bundle,
    edit: impl FnOnce(&mut proto::Create),
) -> String {
    let mut c = env.create_request(b, None);
    c.runtime = rt.clone();
    edit(&mut c);
    match env.call(&Request::Create(c)) {
        Response::Created { .. } => {}
        r => panic!("create: {r:?}"),
    }
    assert_eq!(env.call(&Request::Start { id: b.id.clone() }), Response::Ok);
    b.id.clone()
}

/// A streaming connection as berthd holds it.
struct Conn {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Sends `req`, reads the first line and the descriptors sent with it.
    fn open(env: &Env, req: &Request) -> (Response, Vec<OwnedFd>, Conn) {
        let mut s = UnixStream::connect(env.sock()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        s.write_all(&line).unwrap();
        let mut buf = Vec::new();
        let mut fds = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let mut iov = [IoSliceMut::new(&mut chunk)];
            let mut space = nix::cmsg_space!([RawFd; 8]);
            let msg = recvmsg::<()>(
                s.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .unwrap();
            let n = msg.bytes;
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: SCM_RIGHTS installed these for this call.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            assert!(n > 0, "closed before answering");
            buf.extend_from_slice(&chunk[..n]);
            if buf.contains(&b'\n') {
                break;
            }
        }
        let mut conn = Conn { s, buf };
        let first = conn.line().unwrap();
        (first, fds, conn)
    }

    /// The next JSON line; None at end of file.
    fn line(&mut self) -> Option<Response> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Some(serde_json::from_slice(&line[..p]).unwrap());
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "partial line {:?}", self.buf);
                return None;
            }
        }
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next attach frame; None at end of file.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() >= 5 + len {
                    let stream = self.buf[0];
                    assert!(stream == 1 || stream == 2, "stream byte {stream}");
                    let data = self.buf[5..5 + len].to_vec();
                    self.buf.drain(..5 + len);
                    return Some((stream, data));
                }
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "partial frame");
                return None;
            }
        }
    }

    /// Frames until `pred` holds for the output of `stream` seen so far.
    fn frames_until(&mut self, stream: u8, pred: impl Fn(&str) -> bool) -> String {
        let mut seen = String::new();
        while !pred(&seen) {
            let (s, data) = self.frame().expect("attach ended early");
            if s == stream {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
        seen
    }

    fn send(&mut self, v: serde_json::Value) {
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        self.s.write_all(&line).unwrap();
    }
}

/// Everything readable from `fd` until end of file (EIO of a pty).
fn read_all(fd: OwnedFd) -> String {
    let mut f = fs::File::from(fd);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A process JSON for a streaming exec of `sh -c script`.
fn process(env: &Env, name: &str, script: &str, tty: bool) -> PathBuf {
    let p = env.tmp.path().join(format!("{name}.json"));
    let v = json!({
        "terminal": tty,
        "user": {"uid": 0, "gid": 0},
        "args": ["/bin/busybox", "sh", "-c", script],
        "env": ["PATH=/bin", "TERM=xterm"],
        "cwd": "/"
    });
    fs::write(&p, v.to_string()).unwrap();
    p
}

fn exec_req(id: &str, process: PathBuf, tty: bool, stdin: bool) -> Request {
    Request::Exec(Exec {
        id: id.into(),
        process,
        tty,
        stdin,
    })
}

/// The pieces of an ExecStarted answer, by kind.
fn started(first: Response, fds: Vec<OwnedFd>) -> (u32, Vec<(StreamFd, OwnedFd)>) {
    match first {
        Response::ExecStarted { pid, fds: kinds } => {
            assert_eq!(kinds.len(), fds.len(), "{kinds:?}");
            (pid, kinds.into_iter().zip(fds).collect())
        }
        r => panic!("exec: {r:?}"),
    }
}

fn take(fds: &mut Vec<(StreamFd, OwnedFd)>, kind: StreamFd) -> OwnedFd {
    let i = fds.iter().position(|(k, _)| *k == kind).unwrap();
    fds.remove(i).1
}

/// No exec pid files, logs or console sockets left in the shim dir.
fn no_exec_files(env: &Env) {
    let left: Vec<String> = fs::read_dir(&env.dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("exec-") || n.starts_with("tty-"))
        .collect();
    assert!(left.is_empty(), "left in the shim dir: {left:?}");
}

/// The shim's descriptor count settles back to `base`.
fn fds_back_to(shim: u32, base: usize) {
    let ok = wait_until(Duration::from_secs(10), || fd_count(shim) == base);
    assert!(ok, "shim fds: {} (was {base})", fd_count(shim));
}

#[test]
fn exec_streams_separated_with_the_exit_code() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let id = run_with(&mut env, &rt, "exec /bin/busybox sleep 1000", |_| {});
        let base = fd_count(shim);
        let p = process(&env, "sep", "echo out; echo err >&2; exit 3", false);
        let (first, fds, mut conn) = Conn::open(&env, &exec_req(&id, p, false, false));
        let (pid, mut fds) = started(first, fds);
        assert!(pid > 0);
        // No stdin asked: stdout then stderr.
        assert_eq!(
            fds.iter().map(|f| f.0).collect::<Vec<_>>(),
            [StreamFd::Stdout, StreamFd::Stderr],
            "{name}"
        );
        let out = read_all(take(&mut fds, StreamFd::Stdout));
        let err = read_all(take(&mut fds, StreamFd::Stderr));
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"), "{name}");
        assert_eq!(
            conn.line(),
            Some(Response::ExecExited {
                exit_code: 3,
                signal: None
            }),
            "{name}"
        );
        assert_eq!(conn.line(), None, "closed after the exit");
        fds_back_to(shim, base);
        no_exec_files(&env);

        // A command that does not exist: the runtime's error, nothing left.
        let p = env.tmp.path().join("nope.json");
        fs::write(
            &p,
            json!({"terminal": false, "user": {"uid": 0, "gid": 0},
                   "args": ["/nope"], "env": ["PATH=/bin"], "cwd": "/"})
            .to_string(),
        )
        .unwrap();
        let (first, fds, _) = Conn::open(&env, &exec_req(&id, p, false, true));
        match first {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Runtime, "{name}: {message}");
                assert!(fds.is_empty());
            }
            r => panic!("{name}: {r:?}"),
        }
        fds_back_to(shim, base);
        no_exec_files(&env);
    }
    // Unknown container; ExecSync still works.
    let p = process(&env, "x", "true", false);
    let (first, _, _) = Conn::open(&env, &exec_req("nope", p, false, false));
    assert!(
        matches!(
            first,
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            }
        ),
        "{first:?}"
    );
}

#[test]
fn exec_stdin_round_trip_and_kill() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let id = run_with(&mut env, &rt, "exec /bin/busybox sleep 1000", |_| {});
        let base = fd_count(shim);
        let p = process(&env, "cat", "exec /bin/busybox cat", false);
        let (first, fds, mut conn) = Conn::open(&env, &exec_req(&id, p, false, true));
        let (_, mut fds) = started(first, fds);
        assert_eq!(
            fds.iter().map(|f| f.0).collect::<Vec<_>>(),
            [StreamFd::Stdin, StreamFd::Stdout, StreamFd::Stderr],
            "{name}"
        );
        let mut stdin = fs::File::from(take(&mut fds, StreamFd::Stdin));
        let mut stdout = fs::File::from(take(&mut fds, StreamFd::Stdout));
        stdin.write_all(b"hello\n").unwrap();
        let mut got = [0u8; 6];
        stdout.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello\n", "{name}");
        // Our copy is the only one: closing it is the end of file.
        drop(stdin);
        assert_eq!(read_all(stdout.into()), "");
        assert_eq!(
            conn.line(),
            Some(Response::ExecExited {
                exit_code: 0,
                signal: None
            }),
            "{name}"
        );
        drop(fds);
        fds_back_to(shim, base);

        // Kill through the connection.
        let p = process(&env, "sleep", "exec /bin/busybox sleep 1000", false);
        let (first, fds, mut conn) = Conn::open(&env, &exec_req(&id, p, false, false));
        let (pid, fds) = started(first, fds);
        assert!(alive(pid));
        conn.send(json!({"op": "kill", "signal": 9}));
        assert_eq!(
            conn.line(),
            Some(Response::ExecExited {
                exit_code: 137,
                signal: Some(9)
            }),
            "{name}"
        );
        drop(fds);
        fds_back_to(shim, base);
        no_exec_files(&env);
    }
}

#[test]
fn tty_exec_gets_a_pty_and_its_size() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let id = run_with(&mut env, &rt, "exec /bin/busybox sleep 1000", |_| {});
        let base = fd_count(shim);
        let p = process(
            &env,
            "tty",
            "read x; /bin/busybox stty size; [ -t 0 ] && echo is-a-tty; exit 5",
            true,
        );
        let (first, fds, mut conn) = Conn::open(&env, &exec_req(&id, p, true, true));
        let (_, mut fds) = started(first, fds);
        assert_eq!(fds.len(), 1, "{name}");
        let pty = take(&mut fds, StreamFd::Pty);
        let size = rustix::termios::Winsize {
            ws_row: 37,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(pty.as_fd(), size).unwrap();
        let mut f = fs::File::from(pty);
        f.write_all(b"go\n").unwrap();
        let out = read_all(f.into());
        assert!(out.contains("37 101"), "{name}: {out:?}");
        assert!(out.contains("is-a-tty"), "{name}: {out:?}");
        assert_eq!(
            conn.line(),
            Some(Response::ExecExited {
                exit_code: 5,
                signal: None
            }),
            "{name}"
        );
        fds_back_to(shim, base);
        no_exec_files(&env);
    }
}

#[test]
fn a_dropped_exec_keeps_running_drained_and_is_reaped() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let b = env.bundle("exec /bin/busybox sleep 1000", devpts);
        let id = run_bundle(&mut env, &rt, &b, |_| {});
        let base = fd_count(shim);
        for tty in [false, true] {
            let _ = fs::remove_file(b.rootfs.join("stop"));
            let _ = fs::remove_file(b.rootfs.join("progress"));
            // 64 KiB a round: 50 rounds are far more than a pipe or a pty
            // holds.
            let script = "i=0; while [ ! -e /stop ]; do \
                /bin/busybox head -c 65536 /dev/zero; echo x >&2; \
                i=$((i+1)); echo $i > /progress; done; exit 7";
            let p = process(&env, "flood", script, tty);
            let (first, fds, conn) = Conn::open(&env, &exec_req(&id, p, tty, false));
            let (pid, fds) = started(first, fds);
            // berthd goes away: connection and descriptors.
            drop(conn);
            drop(fds);
            let progress = || {
                fs::read_to_string(b.rootfs.join("progress"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let t = Instant::now();
            assert!(
                wait_until(Duration::from_secs(60), || progress() > 50),
                "{name} tty {tty}: not drained (progress {}); shim log:\n{}",
                progress(),
                fs::read_to_string(env.dir.join("shim.log")).unwrap_or_default()
            );
            eprintln!("{name} tty {tty}: 50 rounds in {:?}", t.elapsed());
            assert!(alive(pid), "{name} tty {tty}: still running");
            fs::write(b.rootfs.join("stop"), "").unwrap();
            assert!(
                wait_dead(pid, Duration::from_secs(10)),
                "{name} tty {tty}: reaped"
            );
            fds_back_to(shim, base);
            no_exec_files(&env);
        }
    }
    // The shim still serves.
    assert!(matches!(env.call(&Request::Hello), Response::Hello { .. }));
}

#[test]
fn attach_streams_live_output_and_detaches() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let log = env.tmp.path().join(format!("{name}.log"));
        let b = env.bundle(
            "i=0; while :; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); /bin/busybox sleep 0.05; done",
            |_| {},
        );
        let mut c = env.create_request(&b, Some(&log));
        c.runtime = rt.clone();
        assert!(matches!(
            env.call(&Request::Create(c)),
            Response::Created { .. }
        ));
        // Not running yet: no attach.
        let attach = |stdin, stdout, stderr| Request::Attach {
            id: b.id.clone(),
            stdin,
            stdout,
            stderr,
        };
        let (first, _, _) = Conn::open(&env, &attach(false, true, true));
        assert!(
            matches!(
                first,
                Response::Error {
                    kind: ErrorKind::InvalidState,
                    ..
                }
            ),
            "{first:?}"
        );
        assert_eq!(env.call(&Request::Start { id: b.id.clone() }), Response::Ok);
        let base = fd_count(shim);

        // stdout only; stdin asked but the container keeps none.
        let (first, fds, mut conn) = Conn::open(&env, &attach(true, true, false));
        assert_eq!(
            first,
            Response::Attached {
                tty: false,
                stdin: false
            }
        );
        assert!(fds.is_empty());
        let mut lines = 0;
        while lines < 5 {
            let (s, data) = conn.frame().unwrap();
            assert_eq!(s, 1, "{name}: only stdout asked");
            lines += data.iter().filter(|&&b| b == b'\n').count();
        }
        // Both.
        let (_, _, mut both) = Conn::open(&env, &attach(false, true, true));
        both.frames_until(2, |s| s.contains("tock-"));
        both.frames_until(1, |s| s.contains("tick-"));
        // Detach both; the log goes on.
        drop(conn);
        drop(both);
        fds_back_to(shim, base);
        let before = fs::metadata(&log).unwrap().len();
        assert!(wait_until(Duration::from_secs(5), || fs::metadata(&log)
            .unwrap()
            .len()
            > before));
        assert_eq!(
            env.call(&Request::Kill {
                id: b.id.clone(),
                signal: 9
            }),
            Response::Ok
        );
    }
}

#[test]
fn attach_ends_with_the_container_and_stdin_once_closes_stdin() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let script = "while read l; do echo got:$l; done; echo eof; exit 4";
        let id = run_with(&mut env, &rt, script, |c| {
            c.stdin = true;
            c.stdin_once = true;
        });
        let base = fd_count(shim);
        let req = Request::Attach {
            id: id.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
        };
        // A watcher without stdin, to the end.
        let (_, _, mut watcher) = Conn::open(
            &env,
            &Request::Attach {
                id: id.clone(),
                stdin: false,
                stdout: true,
                stderr: false,
            },
        );
        let (first, mut fds, mut conn) = Conn::open(&env, &req);
        assert_eq!(
            first,
            Response::Attached {
                tty: false,
                stdin: true
            },
            "{name}"
        );
        assert_eq!(fds.len(), 1);
        let mut stdin = fs::File::from(fds.pop().unwrap());
        stdin.write_all(b"a\n").unwrap();
        conn.frames_until(1, |s| s.contains("got:a\n"));
        // Detach: berthd drops its copy and the connection; stdin_once
        // makes that the container's end of file.
        drop(stdin);
        drop(conn);
        let seen = watcher.frames_until(1, |s| s.contains("eof\n"));
        assert!(seen.contains("got:a"), "{name}: {seen:?}");
        // The container exited: the watcher is flushed and closed.
        while watcher.frame().is_some() {}
        match env.call(&Request::Wait { id: id.clone() }) {
            Response::Exited(e) => assert_eq!(e.exit_code, 4, "{name}"),
            r => panic!("{r:?}"),
        }
        assert_eq!(env.call(&Request::Delete { id: id.clone() }), Response::Ok);
        // Pipes, attach connections: all gone with the container.
        assert!(fd_count(shim) < base, "{name}");
    }
}

#[test]
fn attach_to_a_tty_container_writes_the_pty() {
    need_root!();
    let mut env = Env::new();
    let _shim = env.start_shim();
    for (name, rt) in runtimes(&env) {
        let b = env.bundle("while read l; do echo got:$l; done", |v| {
            v["process"]["terminal"] = json!(true);
            devpts(v);
        });
        let id = run_bundle(&mut env, &rt, &b, |c| {
            c.stdin = true;
            c.tty = true;
        });
        let (first, mut fds, mut conn) = Conn::open(
            &env,
            &Request::Attach {
                id: id.clone(),
                stdin: true,
                stdout: true,
                stderr: true,
            },
        );
        assert_eq!(
            first,
            Response::Attached {
                tty: true,
                stdin: true
            },
            "{name}"
        );
        let mut pty = fs::File::from(fds.pop().unwrap());
        pty.write_all(b"hi\n").unwrap();
        conn.frames_until(1, |s| s.contains("got:hi"));
        assert_eq!(
            env.call(&Request::Kill {
                id: id.clone(),
                signal: 9
            }),
            Response::Ok
        );
        while conn.frame().is_some() {}
    }
}

#[test]
fn a_slow_attacher_is_dropped_and_logging_goes_on() {
    need_root!();
    let mut env = Env::new();
    let shim = env.start_shim();
    let log = env.tmp.path().join("flood.log");
    let b = env.bundle(
        "while :; do /bin/busybox head -c 1000000 /dev/zero | /bin/busybox tr '\\0' a; echo; done",
        |_| {},
    );
    env.run(&b, Some(&log));
    let base = fd_count(shim);
    let (first, _, conn) = Conn::open(
        &env,
        &Request::Attach {
            id: b.id.clone(),
            stdin: false,
            stdout: true,
            stderr: true,
        },
    );
    assert_eq!(
        first,
        Response::Attached {
            tty: false,
            stdin: false
        }
    );
    // Never read: the shim closes the connection once it is 1 MiB behind.
    assert!(
        wait_until(Duration::from_secs(30), || fd_count(shim) == base),
        "not dropped"
    );
    let mut conn = conn;
    let mut total = 0usize;
    let end = Instant::now() + Duration::from_secs(30);
    while let Some((_, data)) = conn.frame() {
        total += data.len();
        assert!(Instant::now() < end);
    }
    assert!(total > 0);
    let before = fs::metadata(&log).unwrap().len();
    assert!(wait_until(Duration::from_secs(10), || fs::metadata(&log)
        .unwrap()
        .len()
        > before + 1_000_000));
}
