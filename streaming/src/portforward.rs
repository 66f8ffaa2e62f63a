//! Port-forward, independent of the transport: one client stream pair
//! (data, error) per connection to a port on the pod's loopback.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backend::Backend;
use crate::remotecommand::Activity;

/// How long the client's direction may go on after the pod closed its
/// side (containerd waits as long): a client that never half-closes, as
/// over the WebSocket channel protocol, must not keep the forward open.
const GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies both ways between the client's data stream and the pod's
/// connection. The client's end of file is passed on as a half close and
/// the pod's answer still flows; the pod's end of file ends the forward
/// (after a short grace for the client's side). A reset on either side
/// ends only this connection.
pub async fn splice<R, W>(
    client_rd: R,
    client_wr: W,
    tcp: tokio::net::TcpStream,
    activity: &Activity,
) where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin,
{
    let (mut tcp_rd, mut tcp_wr) = tcp.into_split();
    let up = async move {
        let mut client_rd = client_rd;
        let _ = copy(&mut client_rd, &mut tcp_wr, activity).await;
        let _ = tcp_wr.shutdown().await;
    };
    let down = async move {
        let mut client_wr = client_wr;
        let _ = copy(&mut tcp_rd, &mut client_wr, activity).await;
        let _ = client_wr.shutdown().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => {
            let _ = tokio::time::timeout(GRACE, &mut up).await;
        }
        () = &mut up => down.await,
    }
}

async fn copy<R, W>(from: &mut R, to: &mut W, activity: &Activity) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        activity.touch();
        to.write_all(buf.get(..n).unwrap_or_default()).await?;
        to.flush().await?;
        total += n as u64;
    }
}

/// The message kubelet writes on a port's error stream.
pub fn error_message(port: u16, pod_id: &str, err: &dyn std::fmt::Display) -> String {
    format!("error forwarding port {port} to pod {pod_id}, uid : {err}")
}

/// Forwards one connection: connects to `port` in the pod, then splices;
/// a failure to connect goes to `error` (and the data stream is closed).
pub async fn forward<B, R, W, E>(
    backend: &B,
    pod_id: &str,
    port: u16,
    data_rd: R,
    mut data_wr: W,
    mut error: E,
    activity: &Activity,
) where
    B: Backend,
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin,
    E: AsyncWrite + Send + Unpin,
{
    match backend.connect(pod_id, port).await {
        Ok(tcp) => splice(data_rd, data_wr, tcp, activity).await,
        Err(e) => {
            tracing::debug!(pod_id, port, error = %e, "streaming: port-forward connect failed");
            let _ = error
                .write_all(error_message(port, pod_id, &e).as_bytes())
                .await;
            let _ = data_wr.shutdown().await;
        }
    }
    let _ = error.shutdown().await;
}
