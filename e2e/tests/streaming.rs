//! Exec, attach and port-forward through berthd's streaming server, with
//! real containers, over both transports, with berth's own client (the
//! independent peers are in `streaming_peers.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, setup};
use berth_streaming::client::{self, ClientError, CommandOptions, LocalIo, Transport};
use k8s_cri::v1::*;

const BOTH: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

/// Collects what a stream writes.
#[derive(Clone, Debug, Default)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Sink {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

struct Ran {
    code: Result<i32, ClientError>,
    out: Vec<u8>,
    err: Vec<u8>,
}

async fn exec_url(s: &mut Setup, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> String {
    s.c.runtime
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap_or_else(|e| panic!("Exec: {e:?}"))
        .into_inner()
        .url
}

async fn run(
    url: &str,
    t: Transport,
    stdin: Option<Vec<u8>>,
    tty: bool,
    sizes: Option<tokio::sync::mpsc::Receiver<client::TerminalSize>>,
) -> Ran {
    let (out, err) = (Sink::default(), Sink::default());
    let opts = CommandOptions {
        stdin: stdin.is_some(),
        stdout: true,
        stderr: !tty,
        tty,
    };
    let local = LocalIo {
        stdin: stdin.map(|s| Box::new(std::io::Cursor::new(s)) as _),
        stdout: Box::new(out.clone()),
        stderr: Box::new(err.clone()),
        resize: sizes,
    };
    let code = match t {
        Transport::Spdy => client::remote_command_spdy(url, opts, local).await,
        Transport::WebSocket => client::remote_command_ws(url, opts, local).await,
    };
    Ran {
        code,
        out: out.take(),
        err: err.take(),
    }
}

/// Waits until `sink` holds `text`.
async fn wait_for(sink: &Sink, text: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if String::from_utf8_lossy(&sink.0.lock().unwrap()).contains(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: no {text:?} in {:?}",
            String::from_utf8_lossy(&sink.0.lock().unwrap())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An interactive session: stdin written as the test goes, output
/// watched, terminal sizes sent on demand.
struct Live {
    stdin: tokio::io::DuplexStream,
    out: Sink,
    sizes: tokio::sync::mpsc::Sender<client::TerminalSize>,
    done: tokio::task::JoinHandle<Result<i32, ClientError>>,
}

fn live(url: String, t: Transport, tty: bool, stdin: bool) -> Live {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let out = Sink::default();
    let (sizes, rx) = tokio::sync::mpsc::channel(4);
    let opts = CommandOptions {
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    };
    let local = LocalIo {
        stdin: stdin.then(|| Box::new(theirs) as _),
        stdout: Box::new(out.clone()),
        stderr: Box::new(out.clone()),
        resize: Some(rx),
    };
    let done = tokio::spawn(async move {
        match t {
            Transport::Spdy => client::remote_command_spdy(&url, opts, local).await,
            Transport::WebSocket => client::remote_command_ws(&url, opts, local).await,
        }
    });
    Live {
        stdin: ours,
        out,
        sizes,
        done,
    }
}

/// Numbered lines, as `seq 1 n` prints them.
fn seq(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.extend_from_slice(format!("{i}\n").as_bytes());
    }
    v
}

/// Processes in the container whose command line contains `needle`.
async fn procs(s: &mut Setup, id: &str, needle: &str) -> usize {
    let (_, out) = s
        .sh(
            id,
            "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; echo",
        )
        .await;
    out.matches(needle).count()
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn shim_pid(s: &Setup) -> i32 {
    let dir = s.e.d.state_dir.join("shims").join(&s.pod[..32]);
    std::fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn exec_suite(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox()).await;
    let id = s.run("c", &["sleep", "3600"]).await;
    // 2.8 M numbered lines: 20 MB whose loss or reordering shows.
    let lines = 2_800_000;
    let expected = seq(lines);
    assert!(expected.len() > 20_000_000);
    for t in BOTH {
        let url = exec_url(
            &mut s,
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        )
        .await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let r = run(&url, t, None, false, None).await;
        assert_eq!(r.code.unwrap(), 3, "{t:?}\n{}", s.e.d.log());
        assert_eq!(r.out, b"out\n", "{t:?}");
        assert_eq!(r.err, b"err\n", "{t:?}");

        let url = exec_url(&mut s, &id, &["cat"], true, false).await;
        let r = run(&url, t, Some(b"echo me\n".to_vec()), false, None).await;
        assert_eq!(r.code.unwrap(), 0, "{t:?}");
        assert_eq!(r.out, b"echo me\n", "{t:?}");

        let url = exec_url(&mut s, &id, &["seq", "1", &lines.to_string()], false, false).await;
        let r = run(&url, t, None, false, None).await;
        assert_eq!(r.code.unwrap(), 0, "{t:?}");
        assert_eq!(r.out.len(), expected.len(), "{t:?}");
        assert!(r.out == expected, "{t:?}: 20 MB came back different");

        // A background child keeps the pipes: the exec still ends.
        let url = exec_url(
            &mut s,
            &id,
            &["sh", "-c", "sleep 300 & echo bg"],
            false,
            false,
        )
        .await;
        let r = tokio::time::timeout(Duration::from_secs(20), run(&url, t, None, false, None))
            .await
            .expect("the exec waited for its background child");
        assert_eq!((r.code.unwrap(), r.out), (0, b"bg\n".to_vec()), "{t:?}");
        s.sh(&id, "pkill -f 'sleep 300' || kill $(pidof sleep | tr ' ' '\\n' | grep -v '^1$') 2>/dev/null; true").await;

        // A terminal: its size follows the client's resizes.
        let url = exec_url(
            &mut s,
            &id,
            &["sh", "-c", "read a; stty size; read b; stty size"],
            true,
            true,
        )
        .await;
        let mut l = live(url, t, true, true);
        use tokio::io::AsyncWriteExt;
        l.sizes
            .send(client::TerminalSize {
                width: 100,
                height: 40,
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        l.stdin.write_all(b"go\r").await.unwrap();
        wait_for(&l.out, "40 100", &format!("{handler} {t:?} first size")).await;
        l.sizes
            .send(client::TerminalSize {
                width: 120,
                height: 50,
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        l.stdin.write_all(b"go\r").await.unwrap();
        wait_for(&l.out, "50 120", &format!("{handler} {t:?} resized")).await;
        let code = tokio::time::timeout(Duration::from_secs(10), l.done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code.unwrap(), 0);

        // The end of stdin reaches a terminal's reader as end of file.
        let url = exec_url(
            &mut s,
            &id,
            &["sh", "-c", "cat; echo cat-ended"],
            true,
            true,
        )
        .await;
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            run(&url, t, Some(b"typed\n".to_vec()), true, None),
        )
        .await
        .expect("a terminal's stdin end did not reach cat");
        assert_eq!(r.code.unwrap(), 0, "{t:?}");
        assert!(
            String::from_utf8_lossy(&r.out).contains("cat-ended"),
            "{t:?}"
        );

        // A client that disconnects mid-stream leaves nothing behind.
        let shim = shim_pid(&s);
        let berthd = s.e.d.pid().as_raw();
        let (shim_fds, berthd_fds) = (fd_count(shim), fd_count(berthd));
        let url = exec_url(
            &mut s,
            &id,
            &["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
            true,
            false,
        )
        .await;
        let l = live(url, t, false, true);
        wait_for(&l.out, "tick", "the looping exec").await;
        assert!(procs(&mut s, &id, "while true").await >= 1);
        l.done.abort();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while procs(&mut s, &id, "while true").await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{t:?}: the exec outlived its client"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while fd_count(shim) > shim_fds || fd_count(berthd) > berthd_fds {
            assert!(
                std::time::Instant::now() < deadline,
                "{t:?}: descriptors left: shim {} (was {shim_fds}), berthd {} (was {berthd_fds})",
                fd_count(shim),
                fd_count(berthd)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    s.finish().await;
}

#[tokio::test]
async fn exec_streams_with_berth_runtime() {
    if !root_or_skip("exec_streams_with_berth_runtime") {
        return;
    }
    exec_suite("strexec", "berth").await;
}

#[tokio::test]
async fn exec_streams_with_runc() {
    if !root_or_skip("exec_streams_with_runc") {
        return;
    }
    exec_suite("strexecrunc", "runc").await;
}

async fn attach_url(s: &mut Setup, id: &str, stdin: bool, tty: bool) -> String {
    s.c.runtime
        .attach(AttachRequest {
            container_id: id.into(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap_or_else(|e| panic!("Attach: {e:?}"))
        .into_inner()
        .url
}

/// Attach delivers a container's live output, writes to its stdin when it
/// kept one, reaches a terminal's console, and closes stdin after the
/// first attach with `stdin_once`.
#[tokio::test]
async fn attach_follows_the_main_process() {
    if !root_or_skip("attach_follows_the_main_process") {
        return;
    }
    use tokio::io::AsyncWriteExt;
    for (tag, handler) in [("strattach", "berth"), ("strattachrunc", "runc")] {
        let mut s = setup(tag, handler, fixture::busybox()).await;
        let ticker = s
            .run(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "while true; do echo tick; echo tock >&2; sleep 0.2; done",
                ],
            )
            .await;
        let mut cfg = s.config("cat", &["sh", "-c", "cat; echo stdin-closed; sleep 3600"]);
        cfg.stdin = true;
        cfg.stdin_once = true;
        let cat = s.create(cfg).await.unwrap();
        s.start(&cat).await;
        let mut cfg = s.config(
            "term",
            &["sh", "-c", "while read l; do echo \"got $l\"; done"],
        );
        cfg.tty = true;
        cfg.stdin = true;
        let term = s.create(cfg).await.unwrap();
        s.start(&term).await;
        for t in BOTH {
            let url = attach_url(&mut s, &ticker, false, false).await;
            let (out, err) = (Sink::default(), Sink::default());
            let local = LocalIo {
                stdin: None,
                stdout: Box::new(out.clone()),
                stderr: Box::new(err.clone()),
                resize: None,
            };
            let opts = CommandOptions {
                stdin: false,
                stdout: true,
                stderr: true,
                tty: false,
            };
            let task = tokio::spawn(async move {
                match t {
                    Transport::Spdy => client::remote_command_spdy(&url, opts, local).await,
                    Transport::WebSocket => client::remote_command_ws(&url, opts, local).await,
                }
            });
            wait_for(&out, "tick", &format!("{handler} {t:?} attach stdout")).await;
            wait_for(&err, "tock", &format!("{handler} {t:?} attach stderr")).await;
            assert!(!String::from_utf8_lossy(&out.take()).contains("tock"));
            task.abort();

            let url = attach_url(&mut s, &term, true, true).await;
            let mut l = live(url, t, true, true);
            l.stdin.write_all(b"hello\r").await.unwrap();
            wait_for(&l.out, "got hello", &format!("{handler} {t:?} tty attach")).await;
            l.done.abort();
        }
        // stdin_once: the first attach's end closes the container's stdin.
        let url = attach_url(&mut s, &cat, true, false).await;
        let mut l = live(url, Transport::Spdy, false, true);
        l.stdin.write_all(b"through stdin\n").await.unwrap();
        wait_for(&l.out, "through stdin", &format!("{handler} stdin attach")).await;
        drop(l.stdin);
        wait_for(&l.out, "stdin-closed", &format!("{handler} stdin_once")).await;
        l.done.abort();
        s.finish().await;
    }
}

/// Port-forward reaches a port on the pod's loopback: many connections on
/// one session, 50 MB through one, a closed port failing alone, and a
/// host-network pod.
#[tokio::test]
async fn port_forward_reaches_the_pods_ports() {
    if !root_or_skip("port_forward_reaches_the_pods_ports") {
        return;
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = setup("strpf", "berth", fixture::busybox()).await;
    let web = s
        .run(
            "web",
            &["sh", "-c", "mkdir -p /www && echo hello-pf > /www/index.html && seq 1 6500000 > /www/big && exec httpd -f -p 127.0.0.1:8080 -h /www"],
        )
        .await;
    let big = seq(6_500_000);
    assert!(big.len() > 50_000_000);
    // httpd is up once the file is served in the pod.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s
        .sh(&web, "wget -qO- http://127.0.0.1:8080/index.html")
        .await
        .1
        != "hello-pf"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "httpd did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    async fn get(pf: &client::PortForwarder, port: u16, path: &str) -> Vec<u8> {
        let (data, _err) = pf.open(port).await.unwrap();
        let (mut rd, mut wr) = data.into_split();
        wr.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = Vec::new();
        rd.read_to_end(&mut resp).await.unwrap();
        let at = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&resp)));
        resp.split_off(at + 4)
    }
    for t in BOTH {
        let url =
            s.c.runtime
                .port_forward(PortForwardRequest {
                    pod_sandbox_id: s.pod.clone(),
                    port: vec![8080],
                })
                .await
                .unwrap()
                .into_inner()
                .url;
        let pf = Arc::new(client::PortForwarder::connect(&url, t).await.unwrap());
        let mut gets = Vec::new();
        for _ in 0..20 {
            let pf = pf.clone();
            gets.push(tokio::spawn(
                async move { get(&pf, 8080, "/index.html").await },
            ));
        }
        for g in gets {
            assert_eq!(g.await.unwrap(), b"hello-pf\n", "{t:?}");
        }
        let body = get(&pf, 8080, "/big").await;
        assert_eq!(body.len(), big.len(), "{t:?}");
        assert!(body == big, "{t:?}: 50 MB came back different");
        // Nothing listens on 8081: that connection fails, the session not.
        let (_data, mut err) = pf.open(8081).await.unwrap();
        let mut m = String::new();
        err.read_to_string(&mut m).await.unwrap();
        assert!(m.contains("error forwarding port 8081"), "{t:?}: {m}");
        assert_eq!(get(&pf, 8080, "/index.html").await, b"hello-pf\n", "{t:?}");
        pf.close();
    }

    // A host-network pod: its loopback is the node's.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut host = setup_pod_config("hostnet", &s);
    host.linux
        .as_mut()
        .unwrap()
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    });
    let hpod =
        s.c.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(host.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
    let script = format!(
        "mkdir -p /www && echo hello-host > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    );
    let cfg = s.config("hweb", &["sh", "-c", &script]);
    let created = tokio::time::timeout(
        Duration::from_secs(30),
        s.c.runtime.create_container(CreateContainerRequest {
            pod_sandbox_id: hpod.clone(),
            config: Some(cfg),
            sandbox_config: Some(host),
        }),
    )
    .await;
    let hid = match created {
        Ok(r) => r.unwrap().into_inner().container_id,
        Err(_) => panic!("create hung\n{}", s.e.d.log()),
    };
    s.start(&hid).await;
    let url =
        s.c.runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: hpod.clone(),
                port: vec![i32::from(port)],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
    let pf = client::PortForwarder::connect(&url, Transport::Spdy)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (data, mut err) = pf.open(port).await.unwrap();
        let mut m = String::new();
        let (mut rd, mut wr) = data.into_split();
        let _ = wr.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await;
        let mut resp = Vec::new();
        let _ = rd.read_to_end(&mut resp).await;
        let _ = err.read_to_string(&mut m).await;
        if String::from_utf8_lossy(&resp).contains("hello-host") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "host-network forward: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pf.close();
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: hpod,
        })
        .await
        .unwrap();
    s.finish().await;
}

fn setup_pod_config(name: &str, s: &Setup) -> PodSandboxConfig {
    let mut c = s.pod_config.clone();
    let m = c.metadata.as_mut().unwrap();
    m.name = name.into();
    m.uid = format!("uid-{name}");
    c.hostname = name.into();
    c
}

/// Requests berthd cannot serve get specific errors, and streams never
/// hold up the container's lifecycle.
#[tokio::test]
async fn bad_streaming_requests_are_refused_and_streams_never_block_stop() {
    if !root_or_skip("bad_streaming_requests_are_refused_and_streams_never_block_stop") {
        return;
    }
    let mut s = setup("strbad", "berth", fixture::busybox()).await;
    let id = s.run("c", &["sleep", "3600"]).await;
    let code = |r: Result<tonic::Response<ExecResponse>, tonic::Status>| r.unwrap_err().code();
    let req = |id: &str, cmd: &[&str], tty: bool, stderr: bool| ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|c| c.to_string()).collect(),
        tty,
        stdin: false,
        stdout: true,
        stderr,
    };
    assert_eq!(
        code(s.c.runtime.exec(req("nope", &["true"], false, true)).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(s.c.runtime.exec(req(&id, &[], false, true)).await),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(s.c.runtime.exec(req(&id, &["true"], true, true)).await),
        tonic::Code::InvalidArgument
    );
    let created = s.create(s.config("idle", &["true"])).await.unwrap();
    assert_eq!(
        code(
            s.c.runtime
                .exec(req(&created, &["true"], false, true))
                .await
        ),
        tonic::Code::FailedPrecondition
    );
    let bad_port =
        s.c.runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: s.pod.clone(),
                port: vec![70000],
            })
            .await
            .unwrap_err()
            .code();
    assert_eq!(bad_port, tonic::Code::InvalidArgument);

    // A client that reads nothing while the process floods its stdout:
    // StopContainer and RemoveContainer still answer at once.
    let url = exec_url(
        &mut s,
        &id,
        &["sh", "-c", "while true; do echo flood-flood-flood; done"],
        false,
        false,
    )
    .await;
    let (io, _) = client::upgrade(
        &url,
        "SPDY/3.1",
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await
    .unwrap();
    let session = berth_streaming::spdy::client(io, berth_streaming::spdy::Limits::default());
    let _error = session
        .open(
            berth_streaming::spdy::Headers::new().with("streamtype", "error"),
            false,
        )
        .await
        .unwrap();
    let _stdout = session
        .open(
            berth_streaming::spdy::Headers::new().with("streamtype", "stdout"),
            false,
        )
        .await
        .unwrap();
    let _stderr = session
        .open(
            berth_streaming::spdy::Headers::new().with("streamtype", "stderr"),
            false,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), async {
        s.stop(&id, 0).await;
        s.remove(&id).await;
    })
    .await
    .expect("a stalled stream held up Stop/Remove");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(session);
    s.remove(&created).await;
    s.finish().await;
}

/// A flood of connections cannot exhaust berthd's descriptors: at most
/// `max_sessions` are taken in, the rest wait in the listen backlog (or,
/// past it, in the clients' SYN retries); once they go, streaming works.
#[tokio::test]
async fn a_connection_flood_is_bounded_by_max_sessions() {
    if !root_or_skip("a_connection_flood_is_bounded_by_max_sessions") {
        return;
    }
    let mut s = berth_e2e::setup::setup_with("strflood", "berth", fixture::busybox(), |b| {
        b.config("streaming", "max_sessions", "8")
    })
    .await;
    let id = s.run("c", &["sleep", "3600"]).await;
    let url = exec_url(&mut s, &id, &["true"], false, false).await;
    let (host, _) = client::split_url(&url).unwrap();
    let berthd = s.e.d.pid().as_raw();
    let before = fd_count(berthd);
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let host = host.clone();
        attempts.spawn(async move {
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(host))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut flood = Vec::new();
    while let Some(r) = attempts.join_next().await {
        flood.extend(r.unwrap());
    }
    assert!(
        flood.len() >= 100,
        "only {} connections got through",
        flood.len()
    );
    let during = fd_count(berthd);
    assert!(
        during <= before + 8 + 2,
        "{} connections took {} descriptors in berthd (max_sessions 8)",
        flood.len(),
        during.saturating_sub(before)
    );
    drop(flood);
    // The slots come back (closed connections end at once).
    let url = exec_url(&mut s, &id, &["echo", "ok"], false, false).await;
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        run(&url, Transport::Spdy, None, false, None),
    )
    .await
    .expect("streaming did not recover after the flood");
    assert_eq!((r.code.unwrap(), r.out), (0, b"ok\n".to_vec()));
    s.finish().await;
}

/// A berthd restart ends the streams it served, not the processes: an
/// exec'd process keeps running (the shim drains its output) and can be
/// found and ended afterwards.
#[tokio::test]
async fn an_exec_survives_a_berthd_restart() {
    if !root_or_skip("an_exec_survives_a_berthd_restart") {
        return;
    }
    let mut s = setup("strrestart", "berth", fixture::busybox()).await;
    let id = s.run("c", &["sleep", "3600"]).await;
    let url = exec_url(
        &mut s,
        &id,
        &[
            "sh",
            "-c",
            "while true; do echo survivor-loop; sleep 0.05; done",
        ],
        false,
        false,
    )
    .await;
    let l = live(url, Transport::Spdy, false, false);
    wait_for(&l.out, "survivor-loop", "the exec").await;
    s.e.d.kill9();
    let ended = tokio::time::timeout(Duration::from_secs(10), l.done)
        .await
        .expect("the client did not notice berthd going");
    assert!(ended.unwrap().is_err(), "no exit status without berthd");
    s.restart().await;
    // Still running, and writing (its pipe is drained, not full).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(procs(&mut s, &id, "survivor-loop").await, 1);
    let (_, a) = s
        .sh(
            &id,
            "cat /proc/$(pgrep -f survivor-loop | head -1)/stat | cut -d' ' -f3",
        )
        .await;
    assert_ne!(a, "T", "stopped");
    s.sh(&id, "pkill -f survivor-loop; true").await;
    s.finish().await;
}
