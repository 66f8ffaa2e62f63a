//! The server's SPDY sessions: remote command (the client opens one
//! stream per channel, each named by its `streamtype` header) and
//! port-forward (an error and a data stream per connection, paired by
//! their `requestid` header).

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::Backend;
use crate::remotecommand::{Activity, StatusFormat, Wiring};
use crate::server::{Server, flags};
use crate::spdy::{self, RstStatus, Stream};
use crate::tokens::StreamRequest;

/// How long a client has to open the streams of a remote command
/// (kubelet's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

fn stream_type(s: &Stream) -> String {
    s.headers()
        .get("streamtype")
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl<B: Backend> Server<B> {
    /// Serves one upgraded SPDY connection speaking `proto`.
    pub(crate) async fn spdy_session<IO>(&self, io: IO, proto: &'static str, request: StreamRequest)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (handle, mut incoming) = spdy::server(io, spdy::Limits::default());
        match request {
            StreamRequest::PortForward { pod_id, .. } => {
                self.spdy_port_forward(&mut incoming, &pod_id).await;
            }
            exec_or_attach => {
                let (tty, stdin, stdout, stderr) = flags(&exec_or_attach);
                let version = match proto {
                    "v4.channel.k8s.io" => 4,
                    "v3.channel.k8s.io" => 3,
                    "v2.channel.k8s.io" => 2,
                    _ => 1,
                };
                let mut wanted: Vec<&str> = vec!["error"];
                if stdin {
                    wanted.push("stdin");
                }
                if stdout {
                    wanted.push("stdout");
                }
                if stderr && !tty {
                    wanted.push("stderr");
                }
                if tty && version >= 3 {
                    wanted.push("resize");
                }
                let mut got: HashMap<String, Stream> = HashMap::new();
                let collect = async {
                    while got.len() < wanted.len() {
                        let Some(s) = incoming.next().await else {
                            return false;
                        };
                        let t = stream_type(&s);
                        if wanted.contains(&t.as_str()) && !got.contains_key(&t) {
                            got.insert(t, s);
                        } else {
                            tracing::debug!(stream_type = %t, "streaming: unexpected SPDY stream");
                            s.reset(RstStatus::PROTOCOL_ERROR);
                        }
                    }
                    true
                };
                match tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => {
                        tracing::debug!("streaming: the client did not open its streams in time");
                        handle.close();
                        return;
                    }
                }
                let Some(error) = got.remove("error") else {
                    return;
                };
                // Only the read side of stdin and resize, the write side
                // of the rest; the unused halves close (FIN) when dropped.
                let reader = |s: Option<Stream>| {
                    s.map(|s| Box::new(s.into_split().0) as crate::remotecommand::ClientReader)
                };
                let writer = |s: Option<Stream>| {
                    s.map(|s| Box::new(s.into_split().1) as crate::remotecommand::ClientWriter)
                };
                let h = handle.clone();
                let wiring = Wiring {
                    stdin: reader(got.remove("stdin")),
                    stdout: writer(got.remove("stdout")),
                    stderr: writer(got.remove("stderr")),
                    resize: reader(got.remove("resize")),
                    error: Box::new(error.into_split().1),
                    status: if version >= 4 {
                        StatusFormat::Json
                    } else {
                        StatusFormat::Text
                    },
                    gone: Box::pin(async move { h.closed().await }),
                };
                // Streams opened later are refused.
                let refuse = tokio::spawn(async move {
                    while let Some(s) = incoming.next().await {
                        s.reset(RstStatus::REFUSED_STREAM);
                    }
                });
                self.run_command(exec_or_attach, wiring).await;
                refuse.abort();
            }
        }
        // Queued data and FINs go out, then GOAWAY.
        handle.close();
        handle.closed().await;
    }

    async fn spdy_port_forward(&self, incoming: &mut spdy::Incoming, pod_id: &str) {
        let activity = Activity::default();
        activity.touch();
        // Streams of a connection whose partner has not come yet, by
        // request id: (error, data).
        let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
        let mut forwards = tokio::task::JoinSet::new();
        loop {
            let s = tokio::select! {
                s = incoming.next() => match s {
                    Some(s) => s,
                    None => break,
                },
                Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
                () = activity.idle(self.idle) => {
                    tracing::debug!(pod_id, "streaming: idle port-forward session closed");
                    break;
                }
            };
            activity.touch();
            let kind = stream_type(&s);
            let id = s.id();
            let request_id = match s.headers().get("requestid") {
                Some(r) => r.to_owned(),
                // Clients before request ids open the error stream, then
                // the data stream: ids two apart.
                None if kind == "data" => id.saturating_sub(2).to_string(),
                None => id.to_string(),
            };
            let entry = pending.entry(request_id.clone()).or_default();
            match kind.as_str() {
                "error" if entry.0.is_none() => entry.0 = Some(s),
                "data" if entry.1.is_none() => entry.1 = Some(s),
                _ => {
                    tracing::debug!(stream_type = %kind, "streaming: unexpected port-forward stream");
                    s.reset(RstStatus::PROTOCOL_ERROR);
                    continue;
                }
            }
            if let Some((Some(_), Some(_))) = pending.get(&request_id)
                && let Some((Some(err), Some(data))) = pending.remove(&request_id)
            {
                let port = data
                    .headers()
                    .get("port")
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 0);
                let backend = self.backend.clone();
                let pod_id = pod_id.to_owned();
                let activity = activity.clone();
                forwards.spawn(async move {
                    let (_, err_wr) = err.into_split();
                    let (data_rd, data_wr) = data.into_split();
                    match port {
                        Some(port) => {
                            crate::portforward::forward(
                                &*backend, &pod_id, port, data_rd, data_wr, err_wr, &activity,
                            )
                            .await;
                        }
                        None => {
                            use tokio::io::AsyncWriteExt;
                            let mut err_wr = err_wr;
                            let _ = err_wr
                                .write_all(b"the data stream has no valid port header")
                                .await;
                            let _ = err_wr.shutdown().await;
                            drop(data_rd);
                            let mut data_wr = data_wr;
                            let _ = data_wr.shutdown().await;
                        }
                    }
                });
            }
        }
        // The client closed the session: its connections go with it.
        forwards.abort_all();
    }
}
