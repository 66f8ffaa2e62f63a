//! The streaming scenarios: Exec, Attach and PortForward as kubelet serves
//! them, through the URL the CRI call returns and the runtime's streaming
//! server, with berth's client (`berth_streaming::client`, which speaks
//! kubelet's protocols: SPDY/3.1 `v4.channel.k8s.io` and
//! `portforward.k8s.io`, and WebSocket `v5`/`v4.channel.k8s.io`).
//!
//! - exec-stream: `true` (non-TTY, stdout and stderr), the whole path:
//!   the Exec call, connect, upgrade, streams, exit status.
//! - attach-first-byte: from the Attach call to the first byte of a
//!   container that prints a line every 10 ms (so up to ~10 ms of each
//!   sample, ~5 on average, is the workload's own wait, on both runtimes).
//! - port-forward: busybox httpd on the pod's loopback; on an established
//!   session, a new connection to the first byte of an HTTP response, and
//!   MB/s downloading 100 MiB through one connection.
//! - attach-memory: the pod's shim RSS before and while one attach is
//!   open and idle (the attach is checked live afterwards: the container
//!   prints a line on SIGUSR1, which must reach it).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use berth_cli::client::CriClient;
use berth_streaming::client::{self, CommandOptions, LocalIo, PortForwarder, Transport};
use k8s_cri::v1::*;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::containers::{Ctx, create, run_pod, single, start};
use super::scenario::{RunOpts, Scenario, StepResult, run_iterations, settle};
use super::target::Target;

/// A line every 10 ms, forever.
const TICKER: &str = "while true; do echo x; sleep 0.01; done";
/// Prints nothing until SIGUSR1 (`sleep & wait`: a shell runs its trap
/// only once the foreground command is done).
const IDLE: &str = "trap 'echo attached' USR1; while :; do sleep 1 & wait $!; done";
/// The httpd's port on the pod's loopback.
const HTTP_PORT: u16 = 8080;
/// The size of the file the throughput step downloads.
const BIG_MIB: usize = 100;
/// Downloads per round: each moves 100 MiB.
const MAX_DOWNLOADS: usize = 10;
/// How long any one stream may take before the scenario fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Counts what is written to it.
#[derive(Debug, Clone, Default)]
struct Count(Arc<AtomicUsize>);

impl AsyncWrite for Count {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.fetch_add(b.len(), Ordering::Relaxed);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Tells once that a byte arrived, then discards.
#[derive(Debug)]
struct FirstByte(Option<oneshot::Sender<()>>);

impl AsyncWrite for FirstByte {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !b.is_empty()
            && let Some(tx) = self.0.take()
        {
            let _ = tx.send(());
        }
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const OUT_AND_ERR: CommandOptions = CommandOptions {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Spdy => "SPDY",
        Transport::WebSocket => "WebSocket",
    }
}

/// Runs a remote command at `url` over `t` with `local`.
async fn remote(url: &str, t: Transport, local: LocalIo) -> Result<i32, String> {
    let run = async {
        match t {
            Transport::Spdy => client::remote_command_spdy(url, OUT_AND_ERR, local).await,
            Transport::WebSocket => client::remote_command_ws(url, OUT_AND_ERR, local).await,
        }
    };
    tokio::time::timeout(DEADLINE, run)
        .await
        .map_err(|_| format!("{} stream: no end after {DEADLINE:?}", transport_name(t)))?
        .map_err(|e| format!("{} stream: {e}", transport_name(t)))
}

async fn exec_url(c: &mut CriClient, id: &str, cmd: &[&str]) -> Result<String, String> {
    c.runtime
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        })
        .await
        .map(|r| r.into_inner().url)
        .map_err(|e| format!("Exec: {e}"))
}

async fn attach_url(c: &mut CriClient, id: &str) -> Result<String, String> {
    c.runtime
        .attach(AttachRequest {
            container_id: id.into(),
            stdin: false,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .map(|r| r.into_inner().url)
        .map_err(|e| format!("Attach: {e}"))
}

/// One exec of `true` over `t`: the time of the Exec call and of the
/// whole round trip.
async fn exec_true(
    c: &mut CriClient,
    id: &str,
    t: Transport,
) -> Result<(Duration, Duration), String> {
    let (out, err) = (Count::default(), Count::default());
    let local = LocalIo {
        stdin: None,
        stdout: Box::new(out.clone()),
        stderr: Box::new(err.clone()),
        resize: None,
    };
    let started = Instant::now();
    let url = exec_url(c, id, &["true"]).await?;
    let rpc = started.elapsed();
    let code = remote(&url, t, local).await?;
    let total = started.elapsed();
    let (o, e) = (out.0.load(Ordering::Relaxed), err.0.load(Ordering::Relaxed));
    if code != 0 || o != 0 || e != 0 {
        return Err(format!(
            "exec true over {}: exit {code}, {o} bytes of stdout, {e} of stderr",
            transport_name(t)
        ));
    }
    Ok((rpc, total))
}

/// A running pod with one container running `cmd`: the container's id.
async fn one_container(
    client: &CriClient,
    ctx: &Ctx,
    name: &str,
    cmd: &[&str],
) -> Result<String, String> {
    let mut c = client.clone();
    let pod = run_pod(&mut c, ctx, name).await?;
    let id = create(&mut c, &pod, ctx.container(name, cmd)).await?;
    start(&mut c, &id).await?;
    Ok(id)
}

/// An HTTP/1.0 GET through a new connection of `pf`: the time to the
/// first byte of the response, the body's size, and its first 64 KiB
/// (the rest is counted, not kept).
///
/// `half_close`: end the request side once it is sent. containerd 1.6
/// (kubelet's forwarder) waits at most 1 s for the client's side to end
/// once the pod's side ended, and cuts the pod's side 1 s after the
/// client's ended: a small GET half-closes, so that neither runtime holds
/// the connection for that second; a download does not (it would be cut),
/// and reads the body up to its Content-Length.
async fn get(
    pf: &PortForwarder,
    path: &str,
    half_close: bool,
) -> Result<(Duration, usize, Vec<u8>), String> {
    const KEEP: usize = 64 * 1024;
    let started = Instant::now();
    let (data, _err) = pf
        .open(HTTP_PORT)
        .await
        .map_err(|e| format!("opening a connection: {e}"))?;
    let (mut rd, mut wr) = data.into_split();
    wr.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    if half_close {
        wr.shutdown()
            .await
            .map_err(|e| format!("ending the request: {e}"))?;
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut resp = Vec::new();
    let mut total = 0;
    let mut first = None;
    let mut body_at = None;
    let mut want = None;
    loop {
        let n = rd
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {path}: reading the response: {e}"))?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| started.elapsed());
        total += n;
        if resp.len() < KEEP {
            resp.extend_from_slice(&buf[..n]);
        }
        if body_at.is_none()
            && let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&resp[..i]).into_owned();
            if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
                return Err(format!(
                    "GET {path}: {}",
                    head.lines().next().unwrap_or_default()
                ));
            }
            body_at = Some(i + 4);
            want = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
        }
        if let (Some(at), Some(len)) = (body_at, want)
            && total >= at + len
        {
            break;
        }
    }
    let (Some(first), Some(at)) = (first, body_at) else {
        return Err(format!("GET {path}: no response ({} bytes)", resp.len()));
    };
    Ok((first, total - at, resp.split_off(at)))
}

pub(super) async fn measure(
    scenario: Scenario,
    target: &Target,
    client: &CriClient,
    opts: RunOpts,
    ctx: &Arc<Ctx>,
) -> Result<Vec<StepResult>, String> {
    match scenario {
        Scenario::ExecStream => {
            let id = one_container(client, ctx, "exec", &["sleep", "2147483647"]).await?;
            // containerd 1.6 serves kubelet's WebSocket protocols for exec
            // too; a runtime that does not is measured over SPDY only.
            let mut transports = vec![Transport::Spdy];
            exec_true(&mut client.clone(), &id, Transport::Spdy).await?;
            match exec_true(&mut client.clone(), &id, Transport::WebSocket).await {
                Ok(_) => transports.push(Transport::WebSocket),
                Err(e) if matches!(target, Target::Berth(_)) => return Err(e),
                Err(e) => eprintln!(
                    "berth-bench: exec-stream on {}: no WebSocket exec ({e}): measured over SPDY only",
                    target.name()
                ),
            }
            settle().await;
            let id = Arc::new(id);
            run_iterations(client, opts, move |mut c, _, rec| {
                let (id, transports) = (id.clone(), transports.clone());
                async move {
                    for t in transports {
                        let (rpc, total) = exec_true(&mut c, &id, t).await?;
                        if t == Transport::Spdy {
                            rec.record("Exec call", rpc).await;
                        }
                        rec.record(&format!("exec true {}", transport_name(t)), total)
                            .await;
                    }
                    Ok(())
                }
            })
            .await
        }
        Scenario::AttachFirstByte => {
            let id = one_container(client, ctx, "ticker", &["sh", "-c", TICKER]).await?;
            settle().await;
            let id = Arc::new(id);
            run_iterations(client, opts, move |mut c, _, rec| {
                let id = id.clone();
                async move {
                    let (tx, rx) = oneshot::channel();
                    let local = LocalIo {
                        stdin: None,
                        stdout: Box::new(FirstByte(Some(tx))),
                        stderr: Box::new(Count::default()),
                        resize: None,
                    };
                    let started = Instant::now();
                    let url = attach_url(&mut c, &id).await?;
                    let rpc = started.elapsed();
                    let session = remote(&url, Transport::Spdy, local);
                    tokio::select! {
                        r = session => {
                            return Err(format!("attach ended before any output: {r:?}"));
                        }
                        got = rx => {
                            got.map_err(|_| "attach: no output".to_string())?;
                        }
                    }
                    // The session was dropped: the client closed it, as a
                    // kubectl that stops.
                    let first = started.elapsed();
                    rec.record("Attach call", rpc).await;
                    rec.record("Attach to first byte", first).await;
                    Ok(())
                }
            })
            .await
        }
        Scenario::PortForward => {
            let script = format!(
                "mkdir -p /www && echo hello > /www/index.html && dd if=/dev/zero of=/www/big bs=1048576 count={BIG_MIB} 2>/dev/null && exec httpd -f -p 127.0.0.1:{HTTP_PORT} -h /www"
            );
            let mut c = client.clone();
            let pod = run_pod(&mut c, ctx, "pf").await?;
            let id = create(&mut c, &pod, ctx.container("httpd", &["sh", "-c", &script])).await?;
            start(&mut c, &id).await?;
            // Up once httpd serves (the file is written first), checked
            // from inside the pod: kubelet's forwarder (containerd) stalls
            // the session's later streams after data was sent on a
            // connection whose dial failed.
            wait_for_httpd(&mut c, &id).await?;
            let url = c
                .runtime
                .port_forward(PortForwardRequest {
                    pod_sandbox_id: pod.id.clone(),
                    port: vec![i32::from(HTTP_PORT)],
                })
                .await
                .map_err(|e| format!("PortForward: {e}"))?
                .into_inner()
                .url;
            let pf = PortForwarder::connect(&url, Transport::Spdy)
                .await
                .map_err(|e| format!("port-forward session: {e}"))?;
            // One GET warms the session.
            let (_, _, body) = get(&pf, "/index.html", true).await?;
            if body != b"hello\n" {
                return Err(format!("GET /index.html: {body:?}"));
            }
            settle().await;
            let pf = Arc::new(pf);
            let forwarder = pf.clone();
            let mut steps = run_iterations(client, opts, move |_, _, rec| {
                let pf = forwarder.clone();
                async move {
                    let (first, _, body) =
                        tokio::time::timeout(DEADLINE, get(&pf, "/index.html", true))
                            .await
                            .map_err(|_| "GET /index.html: timed out".to_string())??;
                    if body != b"hello\n" {
                        return Err(format!("GET /index.html: {body:?}"));
                    }
                    rec.record("connect to first byte", first).await;
                    Ok(())
                }
            })
            .await?;
            let mut rates = Vec::new();
            for _ in 0..opts.iterations.clamp(1, MAX_DOWNLOADS) {
                settle().await;
                let started = Instant::now();
                let (_, size, _) = tokio::time::timeout(DEADLINE, get(&pf, "/big", false))
                    .await
                    .map_err(|_| "GET /big: timed out".to_string())??;
                let t = started.elapsed().as_secs_f64();
                if size != BIG_MIB << 20 {
                    return Err(format!("GET /big: {size} bytes, want {}", BIG_MIB << 20));
                }
                rates.push(size as f64 / 1e6 / t);
            }
            pf.close();
            steps.push(StepResult {
                step: format!("throughput {BIG_MIB} MiB"),
                unit: "MB/s",
                samples: rates,
            });
            Ok(steps)
        }
        Scenario::AttachMemory => attach_memory(target, client, ctx).await,
        other => Err(format!("{} is not a streaming scenario", other.name())),
    }
}

/// Waits until httpd in container `id` serves, asked from inside the pod.
async fn wait_for_httpd(c: &mut CriClient, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = c
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: [
                    "wget",
                    "-q",
                    "-O",
                    "-",
                    &format!("http://127.0.0.1:{HTTP_PORT}/index.html"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                timeout: 10,
            })
            .await
            .map_err(|e| format!("ExecSync wget: {e}"))?
            .into_inner();
        if r.exit_code == 0 && r.stdout == b"hello\n" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "httpd in the pod did not answer: exit {}, {}",
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shims' RSS in KiB (one pod: its shim), once the machine is idle.
async fn shim_rss(target: &Target) -> Result<u64, String> {
    settle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = target
        .memory()
        .ok_or("memory is only measured for runtimes the harness started")?;
    if m.shim_count != 1 {
        return Err(format!("{} shims for one pod", m.shim_count));
    }
    Ok(m.shims.rss_kib)
}

async fn attach_memory(
    target: &Target,
    client: &CriClient,
    ctx: &Arc<Ctx>,
) -> Result<Vec<StepResult>, String> {
    // One sample per round, as density: the scenario is its own iteration.
    let id = one_container(client, ctx, "idle", &["sh", "-c", IDLE]).await?;
    let before = shim_rss(target).await?;
    let mut c = client.clone();
    let url = attach_url(&mut c, &id).await?;
    let out = Count::default();
    let local = LocalIo {
        stdin: None,
        stdout: Box::new(out.clone()),
        stderr: Box::new(Count::default()),
        resize: None,
    };
    let mut session = tokio::spawn(async move { remote(&url, Transport::Spdy, local).await });
    let attached = shim_rss(target).await;
    // The attach was live while measured: the line the container prints
    // on SIGUSR1 reaches it.
    let wrote = c
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id,
            cmd: ["kill", "-USR1", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            timeout: 10,
        })
        .await
        .map_err(|e| format!("ExecSync: {e}"))?
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        if out.0.load(Ordering::Relaxed) > 0 {
            break Ok(());
        }
        if session.is_finished() {
            break Err(format!("the attach ended: {:?}", (&mut session).await));
        }
        if Instant::now() > deadline {
            break Err(format!(
                "the attach got nothing (exec: exit {}, {})",
                wrote.exit_code,
                String::from_utf8_lossy(&wrote.stderr)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    session.abort();
    let attached = attached?;
    match live {
        Err(e) if matches!(target, Target::Berth(_)) => return Err(e),
        // containerd serves attaches in its daemon, not in the shim; its
        // CRI log of this container stayed empty too.
        Err(e) => eprintln!(
            "berth-bench: attach-memory on {}: the line printed on SIGUSR1 did not arrive: {e}",
            target.name()
        ),
        Ok(()) => {}
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(vec![
        single("shim RSS", "MiB", mib(before)),
        single("shim RSS attached", "MiB", mib(attached)),
        single("shim RSS growth", "KiB", attached as f64 - before as f64),
    ])
}
