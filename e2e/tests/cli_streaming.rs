//! `berth exec`, `attach` and `port-forward` against a real berthd, as
//! root: the CLI binary run as a user would, under a real pseudo-terminal
//! (util-linux `script`) where a terminal matters.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::setup::{Setup, setup};
use berth_e2e::{bin_path, root_or_skip};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

fn endpoint(s: &Setup) -> String {
    format!("unix://{}", s.e.d.socket.display())
}

fn berth(ep: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin_path("berth"));
    c.arg("-r")
        .arg(ep)
        .args(args)
        .env_remove("BERTH_RUNTIME_ENDPOINT");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `script` (a shell command line) under a new pseudo-terminal;
/// its output (the terminal's, so with CRLF line ends).
fn under_pty(script: &str) -> Output {
    let mut child = Command::new("script")
        .args(["-qec", script, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{script:?} hung; so far: {}", text(&o.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Waits for `child` at most `within`; its exit code.
fn wait_for_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_from_the_command_line() {
    if !root_or_skip("exec_from_the_command_line") {
        return;
    }
    let mut s = setup("cliexec", "berth", fixture::busybox()).await;
    let id = s.run("c", &["sleep", "3600"]).await;
    let ep = endpoint(&s);
    let short = &id[..12];

    for t in TRANSPORTS {
        // Exit code, stdout and stderr apart; an id prefix will do.
        let o = berth(
            &ep,
            &[
                "exec",
                "--transport",
                t,
                short,
                "--",
                "sh",
                "-c",
                "echo hi; echo oops >&2; exit 3",
            ],
        )
        .output()
        .unwrap();
        assert_eq!(
            o.status.code(),
            Some(3),
            "{t}: {}\n{}",
            text(&o.stderr),
            s.e.d.log()
        );
        assert_eq!(text(&o.stdout), "hi\n", "{t}");
        assert_eq!(text(&o.stderr), "oops\n", "{t}");

        // -i: our stdin reaches the command, its end too.
        let mut child = berth(&ep, &["exec", "-i", "--transport", t, &id, "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"echo me\n").unwrap();
        stdin.write_all(&[b'x'; 100_000]).unwrap();
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{t}: {}", text(&o.stderr));
        assert_eq!(o.stdout.len(), 8 + 100_000, "{t}");
        assert!(o.stdout.starts_with(b"echo me\nxxx"), "{t}");
    }

    // crictl's --sync: ExecSync, with its own --timeout.
    let o = berth(
        &ep,
        &[
            "exec",
            "-s",
            "--timeout",
            "10",
            &id,
            "sh",
            "-c",
            "echo sync; exit 4",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "sync\n");

    // A missing container: one line, exit 1.
    let o = berth(&ep, &["exec", "nosuchcontainer", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("NotFound"), "{}", text(&o.stderr));

    let bin = bin_path("berth");
    let berth_cmd = format!("{} -r {ep}", bin.display());
    for t in TRANSPORTS {
        // -t under a real terminal: its size at the start, then a change
        // (SIGWINCH) passed on. Until the first size arrives the remote
        // terminal is 0x0, which busybox's stty fails to print.
        let remote = "i=0; until [ -n \"$(stty size 2>/dev/null)\" ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done; \
             echo first=$(stty size); i=0; while [ \"$(stty size)\" != \"50 120\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
             echo second=$(stty size); exit 5";
        let script = format!(
            "stty rows 40 cols 100; {berth_cmd} exec -t --transport {t} {id} -- sh -c '{remote}' & p=$!; \
             sleep 1.5; stty rows 50 cols 120; wait $p; echo rc=$?"
        );
        let o = under_pty(&script);
        let out = text(&o.stdout);
        assert!(out.contains("first=40 100\r"), "{t}: {out:?}");
        assert!(out.contains("second=50 120\r"), "{t}: {out:?}");
        assert!(out.contains("rc=5"), "{t}: {out:?}");

        // -it: raw mode while it runs, restored when it ends and when
        // it is stopped by SIGTERM.
        let script = format!(
            "{berth_cmd} exec -it --transport {t} {id} -- sh -c 'stty size; exit 2' </dev/tty; echo rc=$?; \
             stty -a | grep -o -- '-\\?icanon' | sed s/^/after-exit:/; \
             {berth_cmd} exec -it --transport {t} {id} -- sleep 100 </dev/tty & p=$!; sleep 1.5; \
             stty -a | grep -o -- '-\\?icanon' | sed s/^/running:/; kill -TERM $p; wait $p; echo rc=$?; \
             stty -a | grep -o -- '-\\?icanon' | sed s/^/after-term:/"
        );
        let o = under_pty(&script);
        let out = text(&o.stdout);
        assert!(out.contains("rc=2"), "{t}: {out:?}");
        assert!(out.contains("after-exit:icanon"), "{t}: {out:?}");
        assert!(out.contains("running:-icanon"), "{t}: {out:?}");
        assert!(out.contains("rc=143"), "{t}: {out:?}");
        assert!(out.contains("after-term:icanon"), "{t}: {out:?}");
    }
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_from_the_command_line() {
    if !root_or_skip("attach_from_the_command_line") {
        return;
    }
    let mut s = setup("cliattach", "berth", fixture::busybox()).await;
    let ep = endpoint(&s);
    for t in TRANSPORTS {
        // Lines printed while attached show; the end of the container
        // ends the attach, with exit code 0.
        let name = format!("ticker-{t}");
        let id = s
            .run(
                &name,
                &[
                    "sh",
                    "-c",
                    "sleep 2; for i in 1 2 3; do echo tick$i; echo tock$i >&2; sleep 0.2; done",
                ],
            )
            .await;
        let o = berth(&ep, &["attach", "--transport", t, &id])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{t}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "tick1\ntick2\ntick3\n", "{t}");
        assert_eq!(text(&o.stderr), "tock1\ntock2\ntock3\n", "{t}");

        // A container that goes on: Ctrl-C (here SIGINT) detaches.
        let name = format!("talker-{t}");
        let id = s
            .run(
                &name,
                &[
                    "sh",
                    "-c",
                    "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.1; done",
                ],
            )
            .await;
        let mut child = berth(&ep, &["attach", "--transport", t, &id])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..3 {
            let l = lines.next().unwrap().unwrap();
            assert!(l.starts_with("line"), "{t}: {l}");
        }
        signal(&child, Signal::SIGINT);
        assert_eq!(
            wait_for_exit(&mut child, Duration::from_secs(10)),
            Some(130)
        );
        // The container goes on.
        let st = s.status(&id).await;
        assert_eq!(
            st.state,
            k8s_cri::v1::ContainerState::ContainerRunning as i32
        );
    }
    s.finish().await;
}

/// An HTTP/1.0 GET of `/index.html` at 127.0.0.1:`port`: the whole answer.
fn http_get(port: u16) -> String {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    text(&got)
}

/// Spawns `berth port-forward`; the local port of its first line.
fn port_forward(ep: &str, args: &[&str]) -> (Child, u16, String) {
    let mut child = berth(ep, &[&["port-forward"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Forwarding from 127.0.0.1:PORT -> REMOTE
    let port = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("not a port-forward line: {line:?} {err}")
        });
    // Keep the pipe open (and drained) for what it prints later.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {}
    });
    (child, port, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_from_the_command_line() {
    if !root_or_skip("port_forward_from_the_command_line") {
        return;
    }
    let mut s = setup("clipf", "berth", fixture::busybox()).await;
    s.run(
        "httpd",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )
    .await;
    let ep = endpoint(&s);
    let pod = s.pod.clone();
    for t in TRANSPORTS {
        let (mut child, port, line) = port_forward(&ep, &["--transport", t, &pod, ":8080"]);
        assert!(line.ends_with(" -> 8080\n"), "{line:?}");
        assert_ne!(port, 8080);
        // httpd may not listen yet: a refused connection fails that
        // connection only.
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = loop {
            let got = http_get(port);
            if got.contains("hello-from-the-pod") || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(first.starts_with("HTTP/1."), "{t}: {first}");
        assert!(first.contains(" 200 "), "{t}: {first}");
        assert!(first.contains("hello-from-the-pod"), "{t}: {first}");
        // More connections, some at once, on the same session.
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || http_get(port)))
            .collect();
        for h in handles {
            assert!(h.join().unwrap().contains("hello-from-the-pod"), "{t}");
        }
        // berthd restarts: the session dies with its streaming server;
        // the next connection is carried by a new one (a new URL).
        s.e.d.kill9();
        s.restart().await;
        let again = http_get(port);
        assert!(
            again.contains("hello-from-the-pod"),
            "{t}: after a restart: {again:?}\n{}",
            s.e.d.log()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{t}: port-forward ended"
        );
        signal(&child, Signal::SIGTERM);
        assert_eq!(wait_for_exit(&mut child, Duration::from_secs(10)), Some(0));
    }

    // LOCAL:REMOTE on a port of our choosing, a pod id prefix, and a pod
    // that is not there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("{free}:8080");
    let (mut child, port, _) = port_forward(&ep, &[&pod[..12], &spec]);
    assert_eq!(port, free);
    assert!(http_get(port).contains("hello-from-the-pod"));
    signal(&child, Signal::SIGINT);
    assert_eq!(wait_for_exit(&mut child, Duration::from_secs(10)), Some(0));
    let o = berth(&ep, &["port-forward", "nosuchpod", "8080"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("NotFound"), "{}", text(&o.stderr));
    s.finish().await;
}

/// With `[streaming] tls_cert` and `tls_key` the URLs are https: `berth
/// --streaming-ca` trusting the CA that issued the certificate execs
/// through them (both transports), and without it the CLI refuses the URL.
#[tokio::test]
async fn exec_over_https_with_a_trusted_certificate() {
    if !root_or_skip("exec_over_https_with_a_trusted_certificate") {
        return;
    }
    let certs = berth_testkit::scratch_dir("clitls-certs");
    let test_ca = fixture::TestCa::new(&certs, "clitls-ca");
    let (cert, key) = test_ca.server("127.0.0.1");
    let (c, k) = (
        format!("{:?}", cert.display().to_string()),
        format!("{:?}", key.display().to_string()),
    );
    let mut s = berth_e2e::setup::setup_with("clitls", "berth", fixture::busybox(), |b| {
        b.config("streaming", "tls_cert", &c)
            .config("streaming", "tls_key", &k)
    })
    .await;
    let id = s.run("c", &["sleep", "3600"]).await;
    let ep = endpoint(&s);
    let ca = test_ca.cert.display().to_string();
    for t in TRANSPORTS {
        let out = berth(
            &ep,
            &[
                "--streaming-ca",
                &ca,
                "exec",
                "--transport",
                t,
                &id,
                "--",
                "echo",
                "over-tls",
            ],
        )
        .output()
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{t}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "over-tls\n", "{t}");
    }
    let out = berth(&ep, &["exec", &id, "--", "true"])
        .env_remove("BERTH_STREAMING_CA")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("https"), "{}", text(&out.stderr));
    s.finish().await;
    let _ = std::fs::remove_dir_all(&certs);
}
