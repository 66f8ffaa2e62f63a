//! The streaming server against berth's own clients, over real TCP, with
//! a backend that runs real host processes (`sh`) and connects to real
//! listeners on loopback. Containers, terminals and independent clients
//! are covered in berth-e2e.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use berth_streaming::backend::{Backend, BackendError, BoxFuture, Control, Ended, Process};
use berth_streaming::client::{self, ClientError, CommandOptions, LocalIo, Transport};
use berth_streaming::fdio::{self, FdWriter};
use berth_streaming::{Config, StreamRequest, Streaming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Runs commands on the host; remembers the last pid it started.
#[derive(Default)]
struct Host {
    last_pid: Arc<AtomicI32>,
}

struct HostControl {
    pid: i32,
    child: Option<std::process::Child>,
    exited: watch::Sender<bool>,
}

impl Control for HostControl {
    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, String>> {
        Box::pin(async move {
            let mut child = self.child.take().ok_or("waited twice")?;
            let status = tokio::task::spawn_blocking(move || child.wait())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let _ = self.exited.send(true);
            use std::os::unix::process::ExitStatusExt;
            Ok(Ended::Exited(
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            ))
        })
    }
    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.pid).unwrap(),
                rustix::process::Signal::KILL,
            );
            if let Some(mut c) = self.child.take() {
                let _ = tokio::task::spawn_blocking(move || c.wait()).await;
            }
            let _ = self.exited.send(true);
        })
    }
}

impl Backend for Host {
    async fn exec(
        &self,
        _id: &str,
        cmd: &[String],
        _tty: bool,
        stdin: bool,
    ) -> Result<Process, BackendError> {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..])
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let pid = child.id() as i32;
        self.last_pid.store(pid, Ordering::SeqCst);
        let out: OwnedFd = child.stdout.take().unwrap().into();
        let err: OwnedFd = child.stderr.take().unwrap().into();
        let stdin_w = child
            .stdin
            .take()
            .map(|s| Box::new(FdWriter::new(s.into()).unwrap()) as _);
        let (tx, rx) = watch::channel(false);
        Ok(Process {
            stdin: stdin_w,
            output: fdio::pump(Some(out), Some(err), rx),
            resize: None,
            control: Box::new(HostControl {
                pid,
                child: Some(child),
                exited: tx,
            }),
        })
    }

    async fn attach(&self, _: &str, _: bool, _: bool, _: bool) -> Result<Process, BackendError> {
        Err(BackendError::NotReady("no attach on the host".into()))
    }

    async fn connect(&self, _pod: &str, port: u16) -> Result<TcpStream, BackendError> {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| BackendError::Connect(format!("connecting to localhost:{port}: {e}")))
    }
}

async fn server() -> (Arc<Streaming>, Arc<AtomicI32>) {
    server_with(Config::default()).await
}

async fn server_with(config: Config) -> (Arc<Streaming>, Arc<AtomicI32>) {
    let host = Host::default();
    let pids = host.last_pid.clone();
    let (streaming, bound) = berth_streaming::bind(&config).await.unwrap();
    berth_streaming::serve(bound, Arc::new(host));
    (streaming, pids)
}

fn exec(cmd: &[&str], stdin: bool) -> StreamRequest {
    StreamRequest::Exec {
        container_id: "c".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin,
        stdout: true,
        stderr: true,
    }
}

/// Collects what the command writes.
#[derive(Clone, Default)]
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

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

async fn run(
    url: &str,
    transport: Transport,
    stdin: Option<&'static [u8]>,
) -> (Result<i32, ClientError>, Vec<u8>, Vec<u8>) {
    let (out, err) = (Sink::default(), Sink::default());
    let local = LocalIo {
        stdin: stdin.map(|s| Box::new(s) as _),
        stdout: Box::new(out.clone()),
        stderr: Box::new(err.clone()),
        resize: None,
    };
    let opts = CommandOptions {
        stdin: stdin.is_some(),
        stdout: true,
        stderr: true,
        tty: false,
    };
    let res = match transport {
        Transport::Spdy => client::remote_command_spdy(url, opts, local).await,
        Transport::WebSocket => client::remote_command_ws(url, opts, local).await,
    };
    (res, out.take(), err.take())
}

const BOTH: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

#[tokio::test]
async fn exit_codes_and_separate_streams_come_back() {
    let (s, _) = server().await;
    for t in BOTH {
        let url = s
            .url(exec(&["sh", "-c", "echo out; echo err >&2; exit 3"], false))
            .unwrap();
        let (code, out, err) = run(&url, t, None).await;
        assert_eq!(code.unwrap(), 3, "{t:?}");
        assert_eq!(out, b"out\n", "{t:?}");
        assert_eq!(err, b"err\n", "{t:?}");
    }
}

#[tokio::test]
async fn stdin_reaches_the_process_and_its_end_is_end_of_file() {
    let (s, _) = server().await;
    for t in BOTH {
        let url = s.url(exec(&["cat"], true)).unwrap();
        let (code, out, _) = run(&url, t, Some(b"round trip\n")).await;
        assert_eq!(code.unwrap(), 0, "{t:?}");
        assert_eq!(out, b"round trip\n", "{t:?}");
    }
}

#[tokio::test]
async fn twenty_megabytes_arrive_whole_and_in_order() {
    let (s, _) = server().await;
    // 20 MB of numbered lines: any loss or reordering changes them.
    let expected: Vec<u8> = {
        let mut v = Vec::new();
        let mut i = 1u64;
        while v.len() < 20_000_000 {
            v.extend_from_slice(format!("{i}\n").as_bytes());
            i += 1;
        }
        v
    };
    let lines = expected.iter().filter(|b| **b == b'\n').count();
    for t in BOTH {
        let url = s
            .url(exec(&["seq", "1", &lines.to_string()], false))
            .unwrap();
        let (code, out, _) = run(&url, t, None).await;
        assert_eq!(code.unwrap(), 0);
        assert_eq!(out.len(), expected.len(), "{t:?}");
        assert!(out == expected, "{t:?}: the output differs");
    }
}

#[tokio::test]
async fn an_exec_ends_with_its_process_even_if_a_child_keeps_the_pipes() {
    let (s, _) = server().await;
    for t in BOTH {
        let url = s
            .url(exec(&["sh", "-c", "sleep 30 & echo done"], false))
            .unwrap();
        let (code, out, _) = tokio::time::timeout(Duration::from_secs(10), run(&url, t, None))
            .await
            .expect("the exec did not end with its process");
        assert_eq!(code.unwrap(), 0);
        assert_eq!(out, b"done\n");
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_client_that_leaves_takes_its_process_with_it() {
    let (s, pids) = server().await;
    for t in BOTH {
        let url = s.url(exec(&["sleep", "100"], false)).unwrap();
        let run = tokio::spawn(async move { run(&url, t, None).await });
        let mut pid = 0;
        for _ in 0..100 {
            pid = pids.load(Ordering::SeqCst);
            if pid != 0 && alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(alive(pid));
        run.abort();
        let mut gone = false;
        for _ in 0..250 {
            if !alive(pid) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "{t:?}: process {pid} outlived its client");
        pids.store(0, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn tokens_are_single_use_and_unknown_ones_refused() {
    let (s, _) = server().await;
    for t in BOTH {
        let url = s.url(exec(&["true"], false)).unwrap();
        assert_eq!(run(&url, t, None).await.0.unwrap(), 0);
        match run(&url, t, None).await.0 {
            Err(ClientError::Refused { status: 404, .. }) => {}
            other => panic!("{t:?}: a reused token gave {other:?}"),
        }
        let unknown = format!("http://{}/exec/AAAAAAAAAAAAAAAAAAAAAA", s.addr());
        assert!(matches!(
            run(&unknown, t, None).await.0,
            Err(ClientError::Refused { status: 404, .. })
        ));
    }
    // A token for one kind is not good for another.
    let url = s.url(exec(&["true"], false)).unwrap();
    let wrong = url.replace("/exec/", "/attach/");
    assert!(matches!(
        run(&wrong, Transport::Spdy, None).await.0,
        Err(ClientError::Refused { status: 404, .. })
    ));
}

#[tokio::test]
async fn unsupported_protocols_and_plain_requests_get_a_clean_refusal() {
    let (s, _) = server().await;
    let url = s.url(exec(&["true"], false)).unwrap();
    match client::upgrade(
        &url,
        "SPDY/3.1",
        &[("X-Stream-Protocol-Version", "v9.channel.k8s.io")],
    )
    .await
    {
        Err(ClientError::Refused {
            status: 403,
            message,
        }) => {
            assert!(
                message.contains("unable to negotiate protocol"),
                "{message}"
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let url = s.url(exec(&["true"], false)).unwrap();
    match client::upgrade(&url, "h2c", &[]).await {
        Err(ClientError::Refused { status: 400, .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A garbage SPDY session ends without harm to the server.
    let url = s.url(exec(&["true"], false)).unwrap();
    let (mut io, _) = client::upgrade(
        &url,
        "SPDY/3.1",
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await
    .unwrap();
    io.get_mut()
        .write_all(&[0x80, 0x03, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest)).await;
    let url = s.url(exec(&["true"], false)).unwrap();
    assert_eq!(
        run(&url, Transport::Spdy, None).await.0.unwrap(),
        0,
        "still serving"
    );
}

async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn port_forward_carries_concurrent_connections_and_reports_closed_ports() {
    let (s, _) = server().await;
    let (port, _echo) = echo_server().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for t in BOTH {
        let url = s
            .url(StreamRequest::PortForward {
                pod_id: "p".into(),
                ports: vec![port],
            })
            .unwrap();
        let pf = Arc::new(client::PortForwarder::connect(&url, t).await.unwrap());
        let mut conns = Vec::new();
        for i in 0..20u8 {
            let pf = pf.clone();
            conns.push(tokio::spawn(async move {
                let (data, _err) = pf.open(port).await.unwrap();
                let (mut rd, mut wr) = data.into_split();
                let msg = vec![i; 100_000];
                let send = async {
                    wr.write_all(&msg).await.unwrap();
                    wr.shutdown().await.unwrap();
                };
                let mut got = Vec::new();
                let recv = rd.read_to_end(&mut got);
                let (_, r) = tokio::join!(send, recv);
                r.unwrap();
                assert_eq!(got, msg);
            }));
        }
        for c in conns {
            c.await.unwrap();
        }
        // A closed port fails that connection only.
        let (data, mut err) = pf.open(closed).await.unwrap();
        let mut m = String::new();
        err.read_to_string(&mut m).await.unwrap();
        assert!(
            m.contains(&format!("error forwarding port {closed}")),
            "{m}"
        );
        drop(data);
        let (data, _) = pf.open(port).await.unwrap();
        let (mut rd, mut wr) = data.into_split();
        wr.write_all(b"still up").await.unwrap();
        wr.shutdown().await.unwrap();
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still up", "{t:?}");
        pf.close();
    }
}

#[tokio::test]
async fn idle_port_forward_sessions_are_closed() {
    let (s, _) = server_with(Config {
        idle_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let (port, _echo) = echo_server().await;
    for t in BOTH {
        let url = s
            .url(StreamRequest::PortForward {
                pod_id: "p".into(),
                ports: vec![port],
            })
            .unwrap();
        let pf = client::PortForwarder::connect(&url, t).await.unwrap();
        // In use: not idle.
        let (data, _err) = pf.open(port).await.unwrap();
        drop(data);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            pf.open(port).await.is_err(),
            "{t:?}: an idle session stayed open"
        );
    }
}

#[tokio::test]
async fn tls_serves_https_urls_to_clients_that_trust_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = server_with(Config {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..Config::default()
    })
    .await;
    let url = s.url(exec(&["echo", "over tls"], false)).unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // Not trusted yet: refused before any byte goes out.
    assert!(run(&url, Transport::Spdy, None).await.0.is_err());
    client::trust(&cert).unwrap();
    for t in BOTH {
        let url = s.url(exec(&["echo", "over tls"], false)).unwrap();
        let (code, out, _) = run(&url, t, None).await;
        assert_eq!(code.unwrap(), 0, "{t:?}");
        assert_eq!(out, b"over tls\n", "{t:?}");
    }
    // Plain HTTP to the TLS port gets nowhere, and harms nothing.
    let url = s.url(exec(&["true"], false)).unwrap();
    let plain = url.replacen("https://", "http://", 1);
    assert!(run(&plain, Transport::Spdy, None).await.0.is_err());
    let url = s.url(exec(&["true"], false)).unwrap();
    assert_eq!(run(&url, Transport::Spdy, None).await.0.unwrap(), 0);
}
