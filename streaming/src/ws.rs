//! Kubernetes' WebSocket channel protocol: every message starts with a
//! channel number (a byte, or an ASCII digit and base64 data for the
//! `base64.` variants); `v5.channel.k8s.io` adds a close message
//! (`255, channel`) with which the client ends its stdin. Channels become
//! readers and writers for the protocol code; everything written goes out
//! in the order written, across channels (so a status never overtakes the
//! output before it).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::PollSender;

use crate::backend::BoxFuture;

/// The close message's channel byte (v5).
const CLOSE_CHANNEL: u8 = 255;
/// Bytes buffered per channel from the client before reading the socket
/// waits.
const INBOUND_BUFFER: usize = 64 * 1024;
/// Messages queued to the client before writers wait.
const OUTBOUND_QUEUE: usize = 16;
/// The largest message berth sends.
const MAX_CHUNK: usize = 32 * 1024;

/// How channel data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Binary messages: channel byte, data.
    Binary,
    /// Text messages: channel digit, base64 data.
    Base64,
}

/// A negotiated channel subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The Sec-WebSocket-Protocol value chosen.
    pub name: &'static str,
    pub codec: Codec,
    /// 1, 4 or 5: v4 on carry a JSON status; v5 the stdin close message.
    pub version: u8,
}

/// The remote command subprotocols served, most preferred first.
pub const REMOTE_COMMAND: &[Negotiated] = &[
    Negotiated {
        name: "v5.channel.k8s.io",
        codec: Codec::Binary,
        version: 5,
    },
    Negotiated {
        name: "v4.channel.k8s.io",
        codec: Codec::Binary,
        version: 4,
    },
    Negotiated {
        name: "v4.base64.channel.k8s.io",
        codec: Codec::Base64,
        version: 4,
    },
    Negotiated {
        name: "channel.k8s.io",
        codec: Codec::Binary,
        version: 1,
    },
    Negotiated {
        name: "base64.channel.k8s.io",
        codec: Codec::Base64,
        version: 1,
    },
];

/// The port-forward subprotocols served over channels.
pub const PORT_FORWARD: &[Negotiated] = &[
    Negotiated {
        name: "v4.channel.k8s.io",
        codec: Codec::Binary,
        version: 4,
    },
    Negotiated {
        name: "v4.base64.channel.k8s.io",
        codec: Codec::Base64,
        version: 4,
    },
];

/// SPDY carried in binary WebSocket messages (kubectl port-forward from
/// 1.31 on).
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The first protocol the client offers (in its order) that `served`
/// has.
pub fn negotiate(offered: &str, served: &'static [Negotiated]) -> Option<Negotiated> {
    offered
        .split(',')
        .map(str::trim)
        .find_map(|o| served.iter().find(|s| s.name == o).copied())
}

/// One outbound message: a channel's data, or the end of the session.
type Out = (u8, Bytes);

/// Writes to one channel.
#[derive(Debug)]
pub struct ChannelWriter {
    channel: u8,
    tx: PollSender<Out>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(MAX_CHUNK);
        let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
        let channel = self.channel;
        match self.tx.send_item((channel, chunk)) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// The channels of one WebSocket session.
#[derive(Debug)]
pub struct Channels {
    /// Readers of the channels the client writes to, by channel number.
    pub readers: Vec<(u8, DuplexStream)>,
    tx: mpsc::Sender<Out>,
    gone: Option<oneshot::Receiver<()>>,
}

impl Channels {
    /// A writer for channel `n`.
    pub fn writer(&self, n: u8) -> ChannelWriter {
        ChannelWriter {
            channel: n,
            tx: PollSender::new(self.tx.clone()),
        }
    }

    /// The reader of channel `n` the client writes to.
    pub fn take_reader(&mut self, n: u8) -> Option<DuplexStream> {
        let i = self.readers.iter().position(|(c, _)| *c == n)?;
        Some(self.readers.swap_remove(i).1)
    }

    /// Resolves when the client's side of the connection has ended.
    pub fn gone(&mut self) -> BoxFuture<'static, ()> {
        let rx = self.gone.take();
        Box::pin(async move {
            match rx {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending::<()>().await,
            }
        })
    }
}

fn encode(codec: Codec, channel: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Binary => {
            let mut v = Vec::with_capacity(data.len() + 1);
            v.push(channel);
            v.extend_from_slice(data);
            Message::Binary(v.into())
        }
        Codec::Base64 => {
            let mut s = String::with_capacity(data.len() * 4 / 3 + 4);
            s.push(char::from(b'0'.wrapping_add(channel)));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::Text(s.into())
        }
    }
}

/// A message from the client, decoded.
#[derive(Debug, PartialEq, Eq)]
enum Inbound {
    Data(u8, Vec<u8>),
    /// v5: the client closes its side of a channel.
    Close(u8),
    Ignore,
    Bad(String),
}

fn decode(codec: Codec, version: u8, msg: Message) -> Inbound {
    let (channel, data) = match (codec, msg) {
        (Codec::Binary, Message::Binary(b)) => match b.split_first() {
            Some((c, rest)) => (*c, rest.to_vec()),
            None => return Inbound::Ignore,
        },
        (Codec::Base64, Message::Text(t)) => {
            let t = t.as_bytes();
            let Some((c, rest)) = t.split_first() else {
                return Inbound::Ignore;
            };
            let Some(channel) = c.checked_sub(b'0') else {
                return Inbound::Bad(format!("channel byte {c} is not a digit"));
            };
            match base64::engine::general_purpose::STANDARD.decode(rest) {
                Ok(d) => (channel, d),
                Err(e) => return Inbound::Bad(format!("channel {channel}: bad base64: {e}")),
            }
        }
        (_, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => return Inbound::Ignore,
        (_, Message::Close(_)) => return Inbound::Ignore,
        (Codec::Binary, Message::Text(_)) => {
            return Inbound::Bad("text message on a binary channel protocol".into());
        }
        (Codec::Base64, Message::Binary(_)) => {
            return Inbound::Bad("binary message on a base64 channel protocol".into());
        }
    };
    if channel == CLOSE_CHANNEL && version >= 5 && codec == Codec::Binary {
        return match data.first() {
            Some(c) => Inbound::Close(*c),
            None => Inbound::Bad("close message without a channel".into()),
        };
    }
    Inbound::Data(channel, data)
}

/// Runs the channel protocol on `ws`: `inbound` are the channels the
/// client may write to, `outbound_first` messages are sent before any
/// other (port-forward's port numbers). The session's tasks end when the
/// client leaves, or when every writer and the returned [`Channels`] are
/// dropped (then the connection is closed).
pub fn open<S>(
    ws: WebSocketStream<S>,
    proto: Negotiated,
    inbound: &[u8],
    outbound_first: Vec<Out>,
) -> Channels
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Out>(OUTBOUND_QUEUE);
    let (gone_tx, gone_rx) = oneshot::channel();
    let (close_tx, mut close_rx) = mpsc::channel::<(CloseCode, String)>(1);
    let mut readers = Vec::new();
    let mut feeds: Vec<(u8, Option<DuplexStream>)> = Vec::new();
    for &c in inbound {
        let (ours, theirs) = tokio::io::duplex(INBOUND_BUFFER);
        readers.push((c, theirs));
        feeds.push((c, Some(ours)));
    }
    let codec = proto.codec;
    tokio::spawn(async move {
        for (c, d) in outbound_first {
            if sink.send(encode(codec, c, &d)).await.is_err() {
                return;
            }
        }
        let close = loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some((c, d)) => {
                        if sink.send(encode(codec, c, &d)).await.is_err() {
                            return;
                        }
                    }
                    None => break (CloseCode::Normal, String::new()),
                },
                c = close_rx.recv() => if let Some(c) = c { break c },
            }
        };
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close.0,
                reason: close.1.into(),
            })))
            .await;
        let _ = sink.close().await;
    });
    let version = proto.version;
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            match decode(codec, version, msg) {
                Inbound::Ignore => {}
                Inbound::Bad(why) => {
                    tracing::debug!(%why, "streaming: bad WebSocket message");
                    let _ = close_tx.try_send((CloseCode::Policy, why));
                    break;
                }
                Inbound::Close(c) => {
                    if let Some((_, f)) = feeds.iter_mut().find(|(n, _)| *n == c) {
                        // Dropping our end: the reader sees end of file.
                        f.take();
                    }
                }
                Inbound::Data(c, data) => match feeds.iter_mut().find(|(n, _)| *n == c) {
                    Some((_, slot)) => {
                        // A reader that went away (or a channel the client
                        // closed) is not the client's fault: its data is
                        // dropped, now and later.
                        if let Some(f) = slot
                            && f.write_all(&data).await.is_err()
                        {
                            *slot = None;
                        }
                    }
                    None => {
                        let why =
                            format!("message on channel {c}, which this session does not read");
                        tracing::debug!(%why, "streaming: bad WebSocket message");
                        let _ = close_tx.try_send((CloseCode::Policy, why));
                        break;
                    }
                },
            }
        }
        drop(feeds);
        let _ = gone_tx.send(());
    });
    Channels {
        readers,
        tx,
        gone: Some(gone_rx),
    }
}

/// A byte stream carried in binary messages (the SPDY tunnel): the
/// returned end reads what the client sends and writes to the client.
pub fn tunnel<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let (ours, theirs) = tokio::io::duplex(INBOUND_BUFFER);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if sink.send(Message::Binary(data)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        let n = negotiate("v4.channel.k8s.io, v5.channel.k8s.io", REMOTE_COMMAND).unwrap();
        assert_eq!(n.name, "v4.channel.k8s.io");
        let n = negotiate("bogus,v4.base64.channel.k8s.io", REMOTE_COMMAND).unwrap();
        assert_eq!((n.codec, n.version), (Codec::Base64, 4));
        assert_eq!(negotiate("v5.channel.k8s.io", PORT_FORWARD), None);
        assert_eq!(negotiate("", REMOTE_COMMAND), None);
    }

    #[test]
    fn messages_decode_per_codec() {
        let bin = |b: &[u8]| Message::Binary(Bytes::copy_from_slice(b));
        assert_eq!(
            decode(Codec::Binary, 5, bin(&[0, b'h', b'i'])),
            Inbound::Data(0, b"hi".to_vec())
        );
        assert_eq!(decode(Codec::Binary, 5, bin(&[255, 0])), Inbound::Close(0));
        assert_eq!(
            decode(Codec::Binary, 4, bin(&[255, 0])),
            Inbound::Data(255, vec![0]),
            "no close message before v5"
        );
        assert_eq!(decode(Codec::Binary, 5, bin(&[])), Inbound::Ignore);
        assert!(matches!(
            decode(Codec::Binary, 5, bin(&[255])),
            Inbound::Bad(_)
        ));
        assert_eq!(
            decode(Codec::Base64, 4, Message::Text("0aGk=".into())),
            Inbound::Data(0, b"hi".to_vec())
        );
        assert!(matches!(
            decode(Codec::Base64, 4, Message::Text("0!!".into())),
            Inbound::Bad(_)
        ));
        assert!(matches!(
            decode(Codec::Binary, 4, Message::Text("0".into())),
            Inbound::Bad(_)
        ));
        match encode(Codec::Base64, 1, b"hi") {
            Message::Text(t) => assert_eq!(t.as_str(), "1aGk="),
            m => panic!("{m:?}"),
        }
        match encode(Codec::Binary, 2, b"x") {
            Message::Binary(b) => assert_eq!(&b[..], &[2, b'x']),
            m => panic!("{m:?}"),
        }
    }
}
