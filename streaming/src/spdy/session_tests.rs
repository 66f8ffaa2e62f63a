//! Session tests: a client session against a server session over
//! `tokio::io::duplex`, and raw frame-level peers that behave like Go's
//! spdystream (no flow control) or misbehave.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use super::frame::{
    DataFrame, Decoder, Frame, GoAway, GoAwayStatus, Ping, RstStatus, RstStream, Setting,
    SettingId, Settings, SynStream, WindowUpdate,
};
use super::headers::{DEFAULT_MAX_HEADER_BLOCK, HeaderDecoder, HeaderEncoder, Headers};
use super::session::{self, Handle, Incoming, Limits, SessionError, Stream};

const T: Duration = Duration::from_secs(20);

fn pair(limits: Limits) -> (Handle, Handle, Incoming) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = session::client(a, limits.clone());
    let (server, incoming) = session::server(b, limits);
    (client, server, incoming)
}

/// Echoes every accepted stream back, then FINs.
fn spawn_echo_server(mut incoming: Incoming) -> tokio::task::JoinHandle<Vec<Headers>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(stream) = incoming.next().await {
            seen.push(stream.headers().clone());
            tokio::spawn(async move {
                let (mut rx, mut tx) = stream.into_split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
                let _ = tx.shutdown().await;
            });
        }
        seen
    })
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn echo_round_trip(stream: Stream, data: Vec<u8>) -> Vec<u8> {
    let (mut rx, mut tx) = stream.into_split();
    let writer = tokio::spawn(async move {
        tx.write_all(&data).await.unwrap();
        tx.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    rx.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_streams_echo_both_ways() {
    let (client, _server, incoming) = pair(Limits::default());
    let echo = spawn_echo_server(incoming);
    let mut tasks = Vec::new();
    for (i, kind) in ["stdin", "stdout", "error"].into_iter().enumerate() {
        let stream = timeout(
            T,
            client.open(Headers::new().with("streamtype", kind), false),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stream.id(), 1 + 2 * i as u32);
        let data = pattern(100_000 + i, i as u64);
        tasks.push(tokio::spawn(async move {
            let got = echo_round_trip(stream, data.clone()).await;
            assert_eq!(got, data);
        }));
    }
    for t in tasks {
        timeout(T, t).await.unwrap().unwrap();
    }
    assert!(client.peer_does_flow_control());
    drop(client);
    let seen = timeout(T, echo).await.unwrap().unwrap();
    let kinds: Vec<_> = seen.iter().map(|h| h.get("streamtype").unwrap()).collect();
    assert_eq!(kinds, ["stdin", "stdout", "error"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_megabytes_each_way_with_checksum() {
    let (client, _server, mut incoming) = pair(Limits::default());
    const LEN: usize = 5 * 1024 * 1024;
    let server = tokio::spawn(async move {
        let stream = incoming.next().await.unwrap();
        let (mut rx, mut tx) = stream.into_split();
        let sender = tokio::spawn(async move {
            tx.write_all(&pattern(LEN, 7)).await.unwrap();
            tx.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        sender.await.unwrap();
        (got.len(), fnv1a(&got))
    });
    let stream = client
        .open(Headers::new().with("streamtype", "data"), false)
        .await
        .unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let upload = pattern(LEN, 3);
    let want = fnv1a(&upload);
    let sender = tokio::spawn(async move {
        // Odd-sized writes.
        for chunk in upload.chunks(12_345) {
            tx.write_all(chunk).await.unwrap();
        }
        tx.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    timeout(T, rx.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(fnv1a(&got), fnv1a(&pattern(LEN, 7)));
    timeout(T, sender).await.unwrap().unwrap();
    let (len, sum) = timeout(T, server).await.unwrap().unwrap();
    assert_eq!((len, sum), (LEN, want));
}

#[tokio::test]
async fn fin_half_closes_one_direction() {
    let (client, _server, mut incoming) = pair(Limits::default());
    // Opened with FIN: the client sends nothing, the server still can.
    let opening = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .open(Headers::new().with("streamtype", "stdout"), true)
                .await
        }
    });
    let mut accepted = timeout(T, incoming.next()).await.unwrap().unwrap();
    let mut opened = timeout(T, opening).await.unwrap().unwrap().unwrap();
    let mut buf = Vec::new();
    accepted.read_to_end(&mut buf).await.unwrap();
    assert!(buf.is_empty());
    let err = opened.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    accepted.write_all(b"out").await.unwrap();
    accepted.shutdown().await.unwrap();
    opened.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"out");
    // After shutdown, writes fail.
    assert!(accepted.write_all(b"late").await.is_err());

    // Half-close the other way: the client FINs, keeps reading.
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(Headers::new(), false).await }
    });
    let accepted = timeout(T, incoming.next()).await.unwrap().unwrap();
    let opened = timeout(T, opening).await.unwrap().unwrap().unwrap();
    let (mut crx, mut ctx) = opened.into_split();
    let (mut srx, mut stx) = accepted.into_split();
    ctx.write_all(b"in").await.unwrap();
    ctx.shutdown().await.unwrap();
    let mut got = Vec::new();
    srx.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"in");
    stx.write_all(b"still open").await.unwrap();
    drop(stx); // drop without shutdown sends FIN too
    let mut got = Vec::new();
    timeout(T, crx.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"still open");
}

#[tokio::test]
async fn reset_aborts_reads_and_writes() {
    let (client, _server, mut incoming) = pair(Limits::default());
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(Headers::new(), false).await }
    });
    let accepted = timeout(T, incoming.next()).await.unwrap().unwrap();
    let mut opened = timeout(T, opening).await.unwrap().unwrap().unwrap();
    accepted.reset(RstStatus::CANCEL);
    let mut buf = [0u8; 8];
    let err = timeout(T, opened.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let err = opened.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    // The resetting side fails too, and the session lives on.
    let mut accepted = accepted;
    assert!(accepted.read(&mut buf).await.is_err());
    timeout(T, client.ping()).await.unwrap().unwrap();
}

#[tokio::test]
async fn ping_both_ways() {
    let (client, server, _incoming) = pair(Limits::default());
    timeout(T, client.ping()).await.unwrap().unwrap();
    timeout(T, server.ping()).await.unwrap().unwrap();
    timeout(T, client.ping()).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_streams() {
    let (client, _server, incoming) = pair(Limits::default());
    let echo = spawn_echo_server(incoming);
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let stream = client
                .open(Headers::new().with("requestid", i.to_string()), false)
                .await
                .unwrap();
            let data = pattern(20_000 + i as usize, i);
            assert_eq!(echo_round_trip(stream, data.clone()).await, data);
        }));
    }
    for t in tasks {
        timeout(T, t).await.unwrap().unwrap();
    }
    drop(client);
    assert_eq!(timeout(T, echo).await.unwrap().unwrap().len(), 200);
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused() {
    let limits = Limits {
        max_concurrent_streams: 2,
        ..Limits::default()
    };
    let (client, _server, mut incoming) = pair(limits);
    let a = client.open(Headers::new(), false);
    let b = client.open(Headers::new(), false);
    let accept = tokio::spawn(async move {
        let x = incoming.next().await.unwrap();
        let y = incoming.next().await.unwrap();
        (x, y, incoming)
    });
    let (a, b) = tokio::join!(a, b);
    let (a, b) = (a.unwrap(), b.unwrap());
    let (_x, _y, _incoming) = timeout(T, accept).await.unwrap().unwrap();
    // The server's SETTINGS said 2: the client refuses locally...
    assert!(matches!(
        client.open(Headers::new(), false).await,
        Err(SessionError::TooManyStreams(2))
    ));
    drop((a, b));
}

#[tokio::test]
async fn dropping_everything_ends_the_session() {
    let (client, server, incoming) = pair(Limits::default());
    let stream = client.open(Headers::new(), false).await.unwrap();
    drop(incoming);
    drop(server);
    // The server side is gone once its handles are: the client sees it.
    timeout(T, client.closed()).await.unwrap();
    assert!(matches!(
        client.open(Headers::new(), false).await,
        Err(SessionError::Closed | SessionError::GoingAway { .. })
    ));
    drop(stream);
}

#[tokio::test]
async fn goaway_stops_new_streams() {
    let (client, server, mut incoming) = pair(Limits::default());
    let s1 = client.open(Headers::new(), false).await.unwrap();
    let mut a1 = incoming.next().await.unwrap();
    server.goaway();
    assert!(timeout(T, incoming.next()).await.unwrap().is_none());
    // Give the GOAWAY time to arrive, then new streams fail.
    timeout(T, client.ping()).await.unwrap().unwrap();
    assert!(matches!(
        client.open(Headers::new(), false).await,
        Err(SessionError::GoingAway {
            last_good_stream_id: 1
        })
    ));
    // The existing stream still works.
    let (mut r, mut w) = s1.into_split();
    w.write_all(b"hi").await.unwrap();
    w.shutdown().await.unwrap();
    let mut got = Vec::new();
    a1.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hi");
    a1.write_all(b"yo").await.unwrap();
    a1.shutdown().await.unwrap();
    got.clear();
    r.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"yo");
}

// ------------------------------------------------------------ raw peers

/// A frame-level peer: writes and reads raw frames.
struct Raw {
    io: DuplexStream,
    decoder: Decoder,
    buf: BytesMut,
    enc: HeaderEncoder,
    dec: HeaderDecoder,
}

impl Raw {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            decoder: Decoder::default(),
            buf: BytesMut::new(),
            enc: HeaderEncoder::new().unwrap(),
            dec: HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK),
        }
    }

    async fn send(&mut self, frame: Frame) {
        self.io.write_all(&frame.to_bytes().unwrap()).await.unwrap();
    }

    async fn syn_stream(&mut self, id: u32, headers: Headers, fin: bool) {
        let header_block = self.enc.encode(&headers).unwrap();
        self.send(Frame::SynStream(SynStream {
            stream_id: id,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            header_block,
        }))
        .await;
    }

    /// The next frame, or `None` at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).unwrap() {
                if let Frame::SynReply(r) = &f {
                    self.dec.decode(&r.header_block).unwrap();
                }
                if let Frame::SynStream(r) = &f {
                    self.dec.decode(&r.header_block).unwrap();
                }
                return Some(f);
            }
            let n = timeout(T, self.io.read_buf(&mut self.buf))
                .await
                .expect("peer stalled")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }

    /// The next frame that is not SETTINGS / WINDOW_UPDATE.
    async fn recv_significant(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await? {
                Frame::Settings(_) | Frame::WindowUpdate(_) => {}
                f => return Some(f),
            }
        }
    }
}

fn raw_server(limits: Limits) -> (Raw, Handle, Incoming) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, incoming) = session::server(b, limits);
    (Raw::new(a), server, incoming)
}

fn data(id: u32, fin: bool, bytes: &[u8]) -> Frame {
    Frame::Data(DataFrame {
        stream_id: id,
        fin,
        data: Bytes::copy_from_slice(bytes),
    })
}

/// Like Go's spdystream: no SETTINGS, no WINDOW_UPDATE, big DATA frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_without_flow_control_never_deadlocks() {
    let (mut raw, server, mut incoming) = raw_server(Limits::default());
    raw.syn_stream(1, Headers::new().with("streamtype", "stdin"), false)
        .await;
    raw.syn_stream(3, Headers::new().with("streamtype", "stdout"), true)
        .await;
    let stdin = timeout(T, incoming.next()).await.unwrap().unwrap();
    let stdout = timeout(T, incoming.next()).await.unwrap().unwrap();
    assert_eq!(stdin.headers().get("streamtype"), Some("stdin"));
    assert_eq!(stdout.headers().get("streamtype"), Some("stdout"));

    const DOWN: usize = 3 * 1024 * 1024;
    const UP: usize = 2 * 1024 * 1024;
    // Server → peer: far beyond every window.
    let writer = tokio::spawn(async move {
        let mut stdout = stdout;
        stdout.write_all(&pattern(DOWN, 1)).await.unwrap();
        stdout.shutdown().await.unwrap();
    });
    // Peer → server, read slowly by the application.
    let reader = tokio::spawn(async move {
        let mut stdin = stdin;
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stdin.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            if got.len() % (256 * 1024) < 4096 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        got
    });

    // The peer reads and writes from separate tasks, as Go does.
    let Raw {
        io,
        mut decoder,
        mut buf,
        ..
    } = raw;
    let (mut rd, mut wr) = tokio::io::split(io);
    let peer_reader = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut replies = 0;
        loop {
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                match f {
                    // stdin's FIN when the application drops it.
                    Frame::Data(d) if d.stream_id == 1 => assert!(d.data.is_empty() && d.fin),
                    Frame::Data(d) => {
                        assert_eq!(d.stream_id, 3);
                        received.extend_from_slice(&d.data);
                        if d.fin {
                            return (received, replies);
                        }
                    }
                    Frame::WindowUpdate(_) => {
                        panic!("WINDOW_UPDATE sent to a peer without flow control")
                    }
                    Frame::SynReply(_) => replies += 1,
                    Frame::Settings(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            if rd.read_buf(&mut buf).await.unwrap() == 0 {
                panic!("server closed the connection");
            }
        }
    });
    let upload = pattern(UP, 2);
    let peer_writer = tokio::spawn({
        let upload = upload.clone();
        async move {
            let mut sent = 0;
            while sent < upload.len() {
                let end = (sent + 256 * 1024).min(upload.len());
                let frame = data(1, end == upload.len(), &upload[sent..end]);
                wr.write_all(&frame.to_bytes().unwrap()).await.unwrap();
                sent = end;
            }
            wr
        }
    });
    let (received, replies) = timeout(T, peer_reader).await.unwrap().unwrap();
    assert_eq!(replies, 2);
    assert_eq!(received.len(), DOWN);
    assert!(received == pattern(DOWN, 1));
    assert!(timeout(T, reader).await.unwrap().unwrap() == upload);
    timeout(T, writer).await.unwrap().unwrap();
    let _wr = timeout(T, peer_writer).await.unwrap().unwrap();
    assert!(!server.peer_does_flow_control());
}

/// Without flow control from the peer and an application that does not
/// read, the server stops reading the socket instead of buffering.
#[tokio::test]
async fn full_buffer_applies_tcp_backpressure() {
    let limits = Limits {
        stream_window: 64 * 1024,
        ..Limits::default()
    };
    let (mut raw, _server, mut incoming) = raw_server(limits);
    raw.syn_stream(1, Headers::new(), false).await;
    let mut stream = timeout(T, incoming.next()).await.unwrap().unwrap();
    let frame = data(1, false, &vec![7u8; 32 * 1024]).to_bytes().unwrap();
    const FRAMES: usize = 128;
    let written = Arc::new(AtomicUsize::new(0));
    let (mut rd, mut wr) = tokio::io::split(raw.io);
    let writer = tokio::spawn({
        let written = written.clone();
        async move {
            for _ in 0..FRAMES {
                wr.write_all(&frame).await.unwrap();
                written.fetch_add(1, Ordering::SeqCst);
            }
            wr
        }
    });
    let drain = tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while rd.read(&mut sink).await.unwrap_or(0) > 0 {}
    });
    // 64 KiB buffered + 64 KiB in the pipe + a read chunk: 4 MB cannot fit
    // while the application does not read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = written.load(Ordering::SeqCst);
    assert!(early < 16, "{early} frames accepted without being read");
    // Reading unblocks it.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while total < FRAMES * 32 * 1024 {
        let n = timeout(T, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        total += n;
    }
    let _wr = timeout(T, writer).await.unwrap().unwrap();
    drain.abort();
}

/// A peer that does flow control gets WINDOW_UPDATEs and is held to its
/// windows; an overrun is answered with RST_STREAM FLOW_CONTROL_ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_with_flow_control() {
    let limits = Limits {
        stream_window: 64 * 1024,
        ..Limits::default()
    };
    let (mut raw, server, mut incoming) = raw_server(limits);
    // Announce flow control: SETTINGS with a small initial window.
    raw.send(Frame::Settings(Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: SettingId::INITIAL_WINDOW_SIZE,
            value: 10_000,
        }],
    }))
    .await;
    raw.syn_stream(1, Headers::new(), false).await;
    let stream = timeout(T, incoming.next()).await.unwrap().unwrap();
    assert!(server.peer_does_flow_control());
    let (mut srx, mut stx) = stream.into_split();
    let writer = tokio::spawn(async move {
        stx.write_all(&pattern(100_000, 5)).await.unwrap();
        stx.shutdown().await.unwrap();
    });
    // The server may send 10 000 bytes, then must wait for WINDOW_UPDATE.
    let mut received = Vec::new();
    let mut in_flight = 0usize;
    loop {
        match raw.recv_significant().await.unwrap() {
            Frame::Data(d) => {
                received.extend_from_slice(&d.data);
                in_flight += d.data.len();
                assert!(in_flight <= 10_000, "window overrun: {in_flight}");
                if d.fin {
                    break;
                }
                if in_flight == 10_000 {
                    // Nothing more until the window opens.
                    let more = timeout(Duration::from_millis(100), raw.recv_significant()).await;
                    assert!(more.is_err(), "sent beyond the window: {more:?}");
                    for stream_id in [1, 0] {
                        raw.send(Frame::WindowUpdate(WindowUpdate {
                            stream_id,
                            delta: 10_000,
                        }))
                        .await;
                    }
                    in_flight = 0;
                }
            }
            Frame::SynReply(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, pattern(100_000, 5));
    timeout(T, writer).await.unwrap().unwrap();

    // The server grants its stream window and replenishes it as the
    // application reads.
    raw.send(data(1, false, &vec![1u8; 60_000])).await;
    let mut buf = vec![0u8; 60_000];
    srx.read_exact(&mut buf).await.unwrap();
    let mut updated = false;
    while !updated {
        if let Frame::WindowUpdate(w) = raw.recv().await.unwrap() {
            updated = w.stream_id == 1;
        }
    }
    // An overrun (beyond 64 KiB while nothing is read) is a stream error.
    raw.send(data(1, false, &vec![1u8; 70_000])).await;
    loop {
        match raw.recv().await.unwrap() {
            Frame::RstStream(r) => {
                assert_eq!(r.stream_id, 1);
                assert_eq!(r.status, RstStatus::FLOW_CONTROL_ERROR);
                break;
            }
            Frame::WindowUpdate(_) | Frame::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let err = srx.read(&mut buf).await;
    // Data received before the overrun may still be read; then the reset.
    assert!(err.is_err() || matches!(err, Ok(n) if n > 0));
}

async fn expect_goaway(raw: &mut Raw, status: GoAwayStatus) {
    loop {
        match raw.recv().await {
            Some(Frame::GoAway(g)) => {
                assert_eq!(g.status, status);
                break;
            }
            Some(_) => {}
            None => panic!("connection closed without GOAWAY"),
        }
    }
    // Then the connection closes.
    while raw.recv().await.is_some() {}
}

#[tokio::test]
async fn header_bomb_ends_the_session_with_goaway() {
    let (mut raw, server, _incoming) = raw_server(Limits::default());
    let bomb = Headers::new().with("x", "a".repeat(1 << 20));
    raw.syn_stream(1, bomb, false).await;
    expect_goaway(&mut raw, GoAwayStatus::PROTOCOL_ERROR).await;
    timeout(T, server.closed()).await.unwrap();
}

#[tokio::test]
async fn malformed_frame_ends_the_session_with_goaway() {
    let (mut raw, server, _incoming) = raw_server(Limits::default());
    // RST_STREAM of length 4.
    raw.io
        .write_all(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .unwrap();
    expect_goaway(&mut raw, GoAwayStatus::PROTOCOL_ERROR).await;
    timeout(T, server.closed()).await.unwrap();

    // Bad version.
    let (mut raw, _server, _incoming) = raw_server(Limits::default());
    raw.io
        .write_all(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .unwrap();
    expect_goaway(&mut raw, GoAwayStatus::PROTOCOL_ERROR).await;

    // Oversized control frame.
    let (mut raw, _server, _incoming) = raw_server(Limits::default());
    raw.io
        .write_all(&[0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    expect_goaway(&mut raw, GoAwayStatus::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn bad_stream_ids() {
    let (mut raw, _server, mut incoming) = raw_server(Limits::default());
    // Even id from a client: stream error.
    raw.syn_stream(2, Headers::new(), false).await;
    match raw.recv_significant().await.unwrap() {
        Frame::RstStream(r) => {
            assert_eq!(
                r,
                RstStream {
                    stream_id: 2,
                    status: RstStatus::PROTOCOL_ERROR
                }
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    raw.syn_stream(5, Headers::new(), false).await;
    let _s5 = timeout(T, incoming.next()).await.unwrap().unwrap();
    assert!(matches!(raw.recv_significant().await, Some(Frame::SynReply(r)) if r.stream_id == 5));
    // Reused id of an open stream.
    raw.syn_stream(5, Headers::new(), false).await;
    assert!(matches!(
        raw.recv_significant().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 5,
            status: RstStatus::PROTOCOL_ERROR
        }))
    ));
    // Going backwards.
    raw.syn_stream(3, Headers::new(), false).await;
    assert!(matches!(
        raw.recv_significant().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 3,
            status: RstStatus::PROTOCOL_ERROR
        }))
    ));
    // DATA for a stream never opened.
    raw.send(data(99, false, b"x")).await;
    assert!(matches!(
        raw.recv_significant().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 99,
            status: RstStatus::INVALID_STREAM
        }))
    ));
    // Pings from the client (odd ids) are echoed.
    raw.send(Frame::Ping(Ping { id: 7 })).await;
    assert!(matches!(
        raw.recv_significant().await,
        Some(Frame::Ping(Ping { id: 7 }))
    ));
    // GOAWAY from the peer is honoured, the session stays up for streams.
    raw.send(Frame::GoAway(GoAway {
        last_good_stream_id: 0,
        status: GoAwayStatus::OK,
    }))
    .await;
    raw.send(Frame::Ping(Ping { id: 9 })).await;
    assert!(matches!(
        raw.recv_significant().await,
        Some(Frame::Ping(Ping { id: 9 }))
    ));
}

#[tokio::test]
async fn client_handle_drop_sends_goaway_and_closes() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = session::client(a, Limits::default());
    let mut raw = Raw::new(b);
    let opening = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .open(Headers::new().with("streamtype", "error"), false)
                .await
        }
    });
    let syn = raw.recv_significant().await.unwrap();
    let Frame::SynStream(syn) = syn else {
        panic!("expected SYN_STREAM, got {syn:?}");
    };
    assert_eq!(syn.stream_id, 1);
    let header_block = raw.enc.encode(&Headers::new()).unwrap();
    raw.send(Frame::SynReply(super::frame::SynReply {
        stream_id: 1,
        fin: false,
        header_block,
    }))
    .await;
    let mut stream = timeout(T, opening).await.unwrap().unwrap().unwrap();
    stream.write_all(b"bye").await.unwrap();
    drop(stream);
    drop(client);
    // Queued data and FIN are flushed before GOAWAY, then EOF.
    let mut got = Vec::new();
    let mut fin = false;
    loop {
        match raw.recv().await {
            Some(Frame::Data(d)) => {
                got.extend_from_slice(&d.data);
                fin |= d.fin;
            }
            Some(Frame::GoAway(g)) => {
                assert_eq!(g.status, GoAwayStatus::OK);
                break;
            }
            Some(Frame::Settings(_) | Frame::WindowUpdate(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"bye");
    assert!(fin);
    assert!(raw.recv().await.is_none());
}

#[tokio::test]
async fn open_fails_when_peer_refuses() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = session::client(a, Limits::default());
    let mut raw = Raw::new(b);
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(Headers::new(), false).await }
    });
    let Some(Frame::SynStream(syn)) = raw.recv_significant().await else {
        panic!("expected SYN_STREAM");
    };
    raw.send(Frame::RstStream(RstStream {
        stream_id: syn.stream_id,
        status: RstStatus::REFUSED_STREAM,
    }))
    .await;
    assert!(matches!(
        timeout(T, opening).await.unwrap().unwrap(),
        Err(SessionError::Reset(RstStatus::REFUSED_STREAM))
    ));
    // EOF from the peer ends the session.
    drop(raw);
    timeout(T, client.closed()).await.unwrap();
}

#[tokio::test]
async fn session_window_overrun_is_a_session_error() {
    let limits = Limits {
        session_window: 64 * 1024,
        ..Limits::default()
    };
    let (mut raw, server, mut incoming) = raw_server(limits);
    raw.send(Frame::WindowUpdate(WindowUpdate {
        stream_id: 0,
        delta: 1,
    }))
    .await;
    raw.syn_stream(1, Headers::new(), false).await;
    let _stream = timeout(T, incoming.next()).await.unwrap().unwrap();
    assert!(server.peer_does_flow_control());
    raw.send(data(1, false, &vec![0u8; 70_000])).await;
    expect_goaway(&mut raw, GoAwayStatus::PROTOCOL_ERROR).await;
}
