//! `exec`, `attach` and `port-forward`: the CRI call that issues a
//! single-use URL on the runtime's streaming server, then berth-streaming's
//! client on it (as crictl and kubectl do), with the local terminal in raw
//! mode for an interactive terminal session.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use berth_cli::client::CriClient;
use berth_streaming::client::{
    self as stream_client, CommandOptions, LocalIo, PortForwarder, TerminalSize, Transport,
};
use k8s_cri::v1 as cri;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::container::exit_code;
use super::{Outcome, status_msg};

/// `--transport`: the upgrade asked of the streaming server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportArg {
    /// SPDY/3.1, as kubelet and crictl use by default.
    #[default]
    Spdy,
    /// WebSocket (`v5.channel.k8s.io`; port-forward tunnels SPDY in it).
    Websocket,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Spdy => Transport::Spdy,
            TransportArg::Websocket => Transport::WebSocket,
        }
    }
}

/// How `exec` and `attach` stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Pass our stdin on (`-i`).
    pub stdin: bool,
    /// A terminal (`-t`): stdout carries stderr too.
    pub tty: bool,
    pub transport: Transport,
}

/// `berth exec`: CRI Exec, then the command's streams; exits with its exit
/// code.
pub async fn exec(
    c: &mut CriClient,
    id: &str,
    cmd: &[String],
    o: StreamOptions,
) -> Result<Outcome, String> {
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: id.to_owned(),
            cmd: cmd.to_vec(),
            tty: o.tty,
            stdin: o.stdin,
            stdout: true,
            stderr: !o.tty,
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .url;
    let code = remote_command(&url, o).await?;
    Ok(Outcome {
        out: String::new(),
        code,
    })
}

/// `berth attach`: CRI Attach, then the container's streams until they
/// end (or we are interrupted).
pub async fn attach(c: &mut CriClient, id: &str, o: StreamOptions) -> Result<Outcome, String> {
    let url = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: id.to_owned(),
            stdin: o.stdin,
            tty: o.tty,
            stdout: true,
            stderr: !o.tty,
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .url;
    let code = remote_command(&url, o).await?;
    Ok(Outcome {
        out: String::new(),
        code,
    })
}

/// SIGINT, SIGTERM and SIGHUP, caught so that the terminal is restored
/// and the session closed before we exit.
struct Interrupts {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Interrupts {
    fn catch() -> Result<Interrupts, String> {
        let on = |kind: SignalKind| signal(kind).map_err(|e| format!("catching signals: {e}"));
        Ok(Interrupts {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// The next one's number.
    async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => 2,
            _ = self.term.recv() => 15,
            _ = self.hup.recv() => 1,
        }
    }
}

/// Runs the remote command at `url` with our stdio; its exit code (128 +
/// the signal's number if we were interrupted).
async fn remote_command(url: &str, o: StreamOptions) -> Result<u8, String> {
    // Caught before the terminal goes raw: no signal can leave it so.
    let mut interrupts = Interrupts::catch()?;
    let terminal = if o.tty { Terminal::open(o.stdin) } else { None };
    let (resize, watcher) = match terminal.as_ref().and_then(Terminal::watch_size) {
        Some((rx, task)) => (Some(rx), Some(task)),
        None => (None, None),
    };
    let opts = CommandOptions {
        stdin: o.stdin,
        stdout: true,
        stderr: !o.tty,
        tty: o.tty,
    };
    let local = LocalIo {
        stdin: o
            .stdin
            .then(|| Box::new(tokio::io::stdin()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        resize,
    };
    let run = async {
        match o.transport {
            Transport::Spdy => stream_client::remote_command_spdy(url, opts, local).await,
            Transport::WebSocket => stream_client::remote_command_ws(url, opts, local).await,
        }
    };
    let res = tokio::select! {
        r = run => r.map(exit_code).map_err(|e| e.to_string()),
        sig = interrupts.next() => Ok(128 + sig),
    };
    if let Some(task) = watcher {
        task.abort();
    }
    // Restored here, before main prints anything.
    drop(terminal);
    res
}

/// The local terminal of a `-t` session: its size, and raw mode while we
/// pass our input on (restored on drop, so on every way out but SIGKILL).
#[derive(Debug)]
struct Terminal {
    /// The settings to put back, if we changed them.
    saved: Option<Termios>,
}

impl Terminal {
    /// `None` unless stdin or stdout is a terminal. Raw mode only with
    /// `raw` (`-i`): without our input passed on, a raw terminal would
    /// only swallow Ctrl-C (kubectl and crictl do the same).
    fn open(raw: bool) -> Option<Terminal> {
        let stdin = io::stdin();
        if !termios::isatty(stdin.as_fd()) {
            if termios::isatty(io::stdout().as_fd()) {
                return Some(Terminal { saved: None });
            }
            return None;
        }
        if !raw {
            return Some(Terminal { saved: None });
        }
        let saved = match termios::tcgetattr(stdin.as_fd()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("berth: cannot read the terminal's settings: {e}");
                return Some(Terminal { saved: None });
            }
        };
        let mut raw = saved.clone();
        raw.make_raw();
        if let Err(e) = termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw) {
            eprintln!("berth: cannot put the terminal in raw mode: {e}");
            return Some(Terminal { saved: None });
        }
        Some(Terminal { saved: Some(saved) })
    }

    /// The current size: stdout's terminal, else stdin's.
    fn size() -> Option<TerminalSize> {
        let ws = termios::tcgetwinsize(io::stdout().as_fd())
            .or_else(|_| termios::tcgetwinsize(io::stdin().as_fd()))
            .ok()?;
        (ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
            width: ws.ws_col,
            height: ws.ws_row,
        })
    }

    /// The size now, then at every SIGWINCH: for [`LocalIo::resize`], and
    /// the task to stop once the session ends.
    fn watch_size(&self) -> Option<(mpsc::Receiver<TerminalSize>, JoinHandle<()>)> {
        let mut winch = match signal(SignalKind::window_change()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("berth: terminal size changes will not be passed on: {e}");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = Terminal::size();
                if now.is_some() && now != last {
                    last = now;
                    if let Some(s) = now
                        && tx.send(s).await.is_err()
                    {
                        return;
                    }
                }
                if winch.recv().await.is_none() {
                    return;
                }
            }
        });
        Some((rx, task))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved
            && let Err(e) = termios::tcsetattr(io::stdin().as_fd(), OptionalActions::Now, saved)
        {
            eprintln!("berth: cannot restore the terminal (try `reset`): {e}");
        }
    }
}

/// One `[LOCAL:]REMOTE` of `port-forward`: local 0 is a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: u16,
}

/// kubectl's and crictl's syntax: `PORT` (the same locally), `LOCAL:REMOTE`,
/// `:REMOTE` or `0:REMOTE` (a free local port).
pub fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    let port = |p: &str, what: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{s:?}: {what} port {p:?} is not in 0-65535"))
    };
    let (local, remote) = match s.split_once(':') {
        Some(("", r)) => (0, port(r, "remote")?),
        Some((l, r)) => (port(l, "local")?, port(r, "remote")?),
        None => {
            let p = port(s, "remote")?;
            (p, p)
        }
    };
    if remote == 0 {
        return Err(format!("{s:?}: the remote port cannot be 0"));
    }
    Ok(PortSpec { local, remote })
}

/// `--address`: an IP address or `localhost` (127.0.0.1).
pub fn parse_address(s: &str) -> Result<IpAddr, String> {
    if s == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP address or localhost"))
}

/// The port-forward session in use, made anew (a new URL from the
/// runtime) when the last one has died.
struct Sessions {
    c: CriClient,
    pod: String,
    ports: Vec<i32>,
    transport: Transport,
    current: tokio::sync::Mutex<Option<Arc<PortForwarder>>>,
}

impl Sessions {
    async fn connect(&self) -> Result<PortForwarder, String> {
        let url = self
            .c
            .clone()
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: self.pod.clone(),
                port: self.ports.clone(),
            })
            .await
            .map_err(status_msg)?
            .into_inner()
            .url;
        PortForwarder::connect(&url, self.transport)
            .await
            .map_err(|e| e.to_string())
    }

    /// The live session, connecting if there is none.
    async fn get(&self) -> Result<Arc<PortForwarder>, String> {
        let mut current = self.current.lock().await;
        if let Some(pf) = &*current {
            return Ok(pf.clone());
        }
        let pf = Arc::new(self.connect().await?);
        *current = Some(pf.clone());
        Ok(pf)
    }

    /// Forgets `dead` (unless another connection replaced it already).
    async fn forget(&self, dead: &Arc<PortForwarder>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|pf| Arc::ptr_eq(pf, dead)) {
            *current = None;
        }
        dead.close();
    }

    /// Carries `local` to `remote` in the pod, over the live session; once
    /// more over a new one if that session turns out to have died.
    async fn forward(&self, remote: u16, local: TcpStream) -> Result<(), String> {
        let mut tries = 0;
        let (data, err) = loop {
            let pf = self.get().await?;
            match pf.open(remote).await {
                Ok(streams) => break streams,
                Err(e) => {
                    self.forget(&pf).await;
                    tries += 1;
                    if tries == 2 {
                        return Err(e.to_string());
                    }
                }
            }
        };
        match stream_client::splice_connection(data, err, local).await {
            Ok(()) => Ok(()),
            Err(stream_client::ClientError::Remote(m)) => Err(m.trim().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// `berth port-forward`: listens on each local port, prints
/// `Forwarding from ADDRESS:LOCAL -> REMOTE` for each, and carries each
/// connection to the pod until interrupted.
pub async fn port_forward(
    c: &CriClient,
    pod: &str,
    addresses: &[IpAddr],
    specs: &[PortSpec],
    transport: Transport,
) -> Result<Outcome, String> {
    let mut interrupts = Interrupts::catch()?;
    let mut ports: Vec<i32> = specs.iter().map(|s| i32::from(s.remote)).collect();
    ports.sort_unstable();
    ports.dedup();
    let sessions = Arc::new(Sessions {
        c: c.clone(),
        pod: pod.to_owned(),
        ports,
        transport,
        current: tokio::sync::Mutex::new(None),
    });
    // The first session now: a wrong pod fails before we listen.
    sessions.get().await?;

    let mut listeners = Vec::new();
    for spec in specs {
        let mut local = spec.local;
        for addr in addresses {
            let l = TcpListener::bind(SocketAddr::new(*addr, local))
                .await
                .map_err(|e| format!("listening on {}: {e}", SocketAddr::new(*addr, local)))?;
            let bound = l
                .local_addr()
                .map_err(|e| format!("listening on {addr}: {e}"))?;
            // Every address gets the port the first one was given.
            local = bound.port();
            println!("Forwarding from {bound} -> {}", spec.remote);
            listeners.push((l, spec.remote));
        }
    }
    let _ = io::stdout().flush();

    let (failed_tx, mut failed_rx) = mpsc::channel::<String>(1);
    let mut accepting = Vec::new();
    for (l, remote) in listeners {
        let sessions = sessions.clone();
        let failed = failed_tx.clone();
        accepting.push(tokio::spawn(async move {
            loop {
                let (conn, peer) = match l.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = failed.send(format!("accepting a connection: {e}")).await;
                        return;
                    }
                };
                let _ = conn.set_nodelay(true);
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    if let Err(e) = sessions.forward(remote, conn).await {
                        eprintln!("berth: forwarding {peer} to port {remote}: {e}");
                    }
                });
            }
        }));
    }
    drop(failed_tx);
    let res = tokio::select! {
        _ = interrupts.next() => Ok(Outcome::default()),
        Some(e) = failed_rx.recv() => Err(e),
    };
    for t in accepting {
        t.abort();
    }
    if let Some(pf) = sessions.current.lock().await.take() {
        pf.close();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_as_kubectls() {
        let p = |s| parse_port_spec(s).unwrap();
        assert_eq!(
            p("8080"),
            PortSpec {
                local: 8080,
                remote: 8080
            }
        );
        assert_eq!(
            p("5000:80"),
            PortSpec {
                local: 5000,
                remote: 80
            }
        );
        assert_eq!(
            p(":80"),
            PortSpec {
                local: 0,
                remote: 80
            }
        );
        assert_eq!(
            p("0:80"),
            PortSpec {
                local: 0,
                remote: 80
            }
        );
        for bad in ["", "0", "80:0", "x", "1:2:3", "70000", ":", "-1:80"] {
            assert!(parse_port_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            parse_address("localhost").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(parse_address("::1").unwrap().to_string(), "::1");
        assert!(parse_address("example.com").is_err());
    }

    #[test]
    fn transports_map() {
        assert_eq!(Transport::from(TransportArg::Spdy), Transport::Spdy);
        assert_eq!(
            Transport::from(TransportArg::Websocket),
            Transport::WebSocket
        );
    }
}
