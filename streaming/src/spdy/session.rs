//! A SPDY/3.1 session over an upgraded byte stream, in the server or the
//! client role.
//!
//! Two tokio tasks run a session: a reader that decodes frames and routes
//! them to streams, and a writer that owns the socket's write half,
//! compresses header blocks in wire order and schedules DATA frames from
//! per-stream send buffers. Streams are tokio [`AsyncRead`] +
//! [`AsyncWrite`] objects that [`Stream::into_split`] splits for use from
//! two tasks.
//!
//! Flow control: Go's `moby/spdystream` (kubelet, crictl) does none: it
//! never sends WINDOW_UPDATE and ignores ours. So windows are tracked from
//! the start, but enforced (a sender blocks on an exhausted window) and
//! replenished (WINDOW_UPDATE as the application reads) only once the peer
//! has shown it does flow control, by sending a WINDOW_UPDATE or a SETTINGS
//! with INITIAL_WINDOW_SIZE. Every stream's receive buffer is bounded: when
//! it is full and the peer does no flow control, the reader stops reading
//! the socket (TCP backpressure); a flow-controlling peer that overruns a
//! window gets RST_STREAM FLOW_CONTROL_ERROR.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::frame::{
    DataFrame, Decoder, DecoderConfig, Frame, FrameError, GoAway, GoAwayStatus, MAX_FRAME_PAYLOAD,
    MAX_STREAM_ID, MAX_WINDOW, Ping, RstStatus, RstStream, Setting, SettingId, Settings, SynReply,
    SynStream, WindowUpdate,
};
use super::headers::{
    DEFAULT_MAX_HEADER_BLOCK, HeaderDecoder, HeaderEncoder, HeaderError, Headers,
};

/// The window every stream and the session start with (spec default).
const DEFAULT_WINDOW: u32 = 64 * 1024;
/// How long a graceful close waits for a flow-controlling peer to open
/// windows for data still queued.
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of DATA the writer takes per batch before writing to the socket.
const WRITE_BATCH: usize = 64 * 1024;
/// Read size from the socket.
const READ_CHUNK: usize = 32 * 1024;
/// DATA pieces below this size are copied out of the read buffer.
const SMALL_PIECE: usize = 4 * 1024;

/// Which end of the connection this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts streams (odd ids) the client opens; its own streams and
    /// pings use even ids.
    Server,
    /// Opens streams with odd ids.
    Client,
}

/// Resource limits of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Streams open at once; a SYN_STREAM beyond this is refused with
    /// RST_STREAM REFUSED_STREAM. Also advertised in SETTINGS.
    pub max_concurrent_streams: u32,
    /// Largest decompressed header block; a larger one ends the session
    /// (GOAWAY PROTOCOL_ERROR).
    pub max_header_block: usize,
    /// Largest control frame payload accepted.
    pub max_control_frame_len: usize,
    /// Largest DATA frame payload accepted (DATA is never buffered whole).
    pub max_data_frame_len: usize,
    /// Per-stream receive window advertised in SETTINGS INITIAL_WINDOW_SIZE,
    /// and the bound of each stream's receive buffer.
    pub stream_window: u32,
    /// Session receive window granted to a flow-controlling peer.
    pub session_window: u32,
    /// Per-stream send buffer: a writer blocks when it is full.
    pub send_buffer: usize,
    /// Largest DATA payload this side sends in one frame.
    pub max_data_chunk: usize,
    /// Control frames the reader may queue before it stops reading the
    /// socket until the writer catches up.
    pub control_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_header_block: DEFAULT_MAX_HEADER_BLOCK,
            max_control_frame_len: super::frame::DEFAULT_MAX_CONTROL_FRAME_LEN,
            max_data_frame_len: MAX_FRAME_PAYLOAD,
            stream_window: 256 * 1024,
            session_window: 1024 * 1024,
            send_buffer: 64 * 1024,
            max_data_chunk: 16 * 1024,
            control_queue: 256,
        }
    }
}

/// Why a session operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The session has ended (connection closed, GOAWAY sent, or failed).
    #[error("SPDY session closed")]
    Closed,
    /// The peer sent GOAWAY: it accepts no new streams.
    #[error("peer sent GOAWAY (last accepted stream {last_good_stream_id})")]
    GoingAway {
        /// The last stream the peer accepted.
        last_good_stream_id: u32,
    },
    /// The peer reset the stream (for `open`: refused it).
    #[error("stream reset by peer: {0}")]
    Reset(RstStatus),
    /// This side reset the stream.
    #[error("stream reset locally: {0}")]
    LocallyReset(RstStatus),
    /// All 2^30 stream ids of this side are used up.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// The peer's MAX_CONCURRENT_STREAMS is reached.
    #[error("peer allows at most {0} concurrent streams")]
    TooManyStreams(u32),
    /// The peer sent bytes that are not SPDY/3 frames.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// A header block could not be compressed or decompressed.
    #[error("header block: {0}")]
    Header(#[from] HeaderError),
    /// The peer broke a protocol rule.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// Reading or writing the connection failed.
    #[error("connection i/o: {0}")]
    Io(Arc<io::Error>),
}

/// How a stream was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abort {
    Remote(RstStatus),
    Local(RstStatus),
}

impl Abort {
    fn io_error(self) -> io::Error {
        match self {
            Abort::Remote(s) => {
                io::Error::new(io::ErrorKind::ConnectionReset, SessionError::Reset(s))
            }
            Abort::Local(s) => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                SessionError::LocallyReset(s),
            ),
        }
    }
}

fn closed_io_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, SessionError::Closed)
}

#[derive(Debug)]
struct StreamState {
    /// Opened by this side.
    local: bool,
    recv_buf: VecDeque<Bytes>,
    recv_len: usize,
    remote_fin: bool,
    /// The application still holds the receive half.
    read_open: bool,
    read_waker: Option<Waker>,
    /// What the peer may still send before a WINDOW_UPDATE.
    recv_window: i64,
    /// Bytes consumed and not yet acknowledged with WINDOW_UPDATE.
    unacked: u32,
    send_buf: BytesMut,
    fin_queued: bool,
    fin_sent: bool,
    /// The application still holds the send half.
    write_open: bool,
    write_waker: Option<Waker>,
    send_window: i64,
    /// Listed in `Inner::ready`.
    in_ready: bool,
    abort: Option<Abort>,
    /// The pending `open` waiting for SYN_REPLY.
    reply: Option<oneshot::Sender<Result<Headers, SessionError>>>,
}

impl StreamState {
    fn new(local: bool, send_window: u32, recv_window: u32) -> Self {
        Self {
            local,
            recv_buf: VecDeque::new(),
            recv_len: 0,
            remote_fin: false,
            read_open: true,
            read_waker: None,
            recv_window: i64::from(recv_window),
            unacked: 0,
            send_buf: BytesMut::new(),
            fin_queued: false,
            fin_sent: false,
            write_open: true,
            write_waker: None,
            send_window: i64::from(send_window),
            in_ready: false,
            abort: None,
            reply: None,
        }
    }

    /// Still open in at least one direction, by the protocol's account.
    fn active(&self) -> bool {
        self.abort.is_none() && !(self.remote_fin && self.fin_sent)
    }

    /// Has data or a FIN to send.
    fn has_send_work(&self) -> bool {
        self.abort.is_none() && (!self.send_buf.is_empty() || (self.fin_queued && !self.fin_sent))
    }

    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug)]
enum Control {
    Settings(Settings),
    SynStream {
        id: u32,
        headers: Headers,
        fin: bool,
    },
    SynReply {
        id: u32,
    },
    Rst(RstStream),
    Ping(u32),
    GoAway(GoAway),
    WindowUpdate(WindowUpdate),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Every application handle is gone (or `close` was called): flush
    /// what is queued, send GOAWAY, end.
    Closing,
    Closed,
}

#[derive(Debug)]
struct Inner {
    state: State,
    streams: HashMap<u32, StreamState>,
    control: VecDeque<Control>,
    ready: VecDeque<u32>,
    next_local_id: u32,
    last_remote_id: u32,
    next_ping_id: u32,
    pings: HashMap<u32, oneshot::Sender<()>>,
    peer_flow_control: bool,
    peer_initial_window: u32,
    peer_max_streams: u32,
    session_send_window: i64,
    session_recv_window: i64,
    session_unacked: u32,
    goaway_sent: bool,
    goaway_received: Option<u32>,
    incoming: Option<mpsc::UnboundedSender<Stream>>,
}

#[derive(Debug)]
struct Shared {
    role: Role,
    limits: Limits,
    inner: Mutex<Inner>,
    /// Work for the writer task.
    writer_wake: Notify,
    /// Receive-buffer space or control-queue room for the reader task.
    reader_wake: Notify,
    closed: watch::Sender<bool>,
    /// The guard application handles share; accepted streams get a clone.
    /// Weak: the session itself must not keep itself open.
    guard: OnceLock<Weak<SessionGuard>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_remote_id(&self, id: u32) -> bool {
        match self.role {
            Role::Server => id % 2 == 1,
            Role::Client => id.is_multiple_of(2),
        }
    }

    /// Ends the session now; `goaway` is sent first when given.
    fn fail(&self, err: Option<&SessionError>, goaway: Option<GoAwayStatus>) {
        {
            let mut inner = self.lock();
            if let (Some(status), false, false) =
                (goaway, inner.goaway_sent, inner.state == State::Closed)
            {
                inner.goaway_sent = true;
                let last = inner.last_remote_id;
                inner.control.push_back(Control::GoAway(GoAway {
                    last_good_stream_id: last,
                    status,
                }));
            }
            close_locked(&mut inner);
        }
        if let Some(err) = err {
            tracing::debug!(role = ?self.role, error = %err, "SPDY session ended");
        }
        self.after_close();
    }

    fn after_close(&self) {
        self.closed.send_replace(true);
        self.writer_wake.notify_one();
        self.reader_wake.notify_one();
    }

    fn begin_close(&self) {
        {
            let mut inner = self.lock();
            if inner.state != State::Open {
                return;
            }
            inner.state = State::Closing;
            inner.incoming = None;
        }
        self.writer_wake.notify_one();
    }
}

fn close_locked(inner: &mut Inner) {
    if inner.state == State::Closed {
        return;
    }
    inner.state = State::Closed;
    inner.incoming = None;
    inner.pings.clear();
    inner.ready.clear();
    for st in inner.streams.values_mut() {
        if let Some(tx) = st.reply.take() {
            let _ = tx.send(Err(SessionError::Closed));
        }
        st.wake();
    }
}

/// Removes a stream nobody can use any more.
fn maybe_remove(inner: &mut Inner, id: u32) {
    let done = inner
        .streams
        .get(&id)
        .is_some_and(|st| !st.read_open && !st.write_open && st.reply.is_none() && !st.active());
    if done {
        inner.streams.remove(&id);
    }
}

fn push_ready(inner: &mut Inner, id: u32) {
    if let Some(st) = inner.streams.get_mut(&id)
        && !st.in_ready
        && st.has_send_work()
    {
        st.in_ready = true;
        inner.ready.push_back(id);
    }
}

/// Records `n` bytes consumed (or discarded) and queues the WINDOW_UPDATEs
/// that are due. Returns whether the writer has work.
fn credit(inner: &mut Inner, limits: &Limits, id: Option<u32>, n: usize) -> bool {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    inner.session_unacked = inner.session_unacked.saturating_add(n);
    if let Some(st) = id.and_then(|id| inner.streams.get_mut(&id)) {
        st.unacked = st.unacked.saturating_add(n);
    }
    queue_window_updates(inner, limits, id)
}

fn queue_window_updates(inner: &mut Inner, limits: &Limits, id: Option<u32>) -> bool {
    if !inner.peer_flow_control || inner.state == State::Closed {
        return false;
    }
    let mut queued = false;
    let stream_threshold = (limits.stream_window / 2).max(1);
    if let Some(id) = id
        && let Some(st) = inner.streams.get_mut(&id)
        && st.unacked >= stream_threshold
        && !st.remote_fin
        && st.abort.is_none()
    {
        let delta = st.unacked.min(MAX_WINDOW);
        st.unacked -= delta;
        st.recv_window += i64::from(delta);
        inner.control.push_back(Control::WindowUpdate(WindowUpdate {
            stream_id: id,
            delta,
        }));
        queued = true;
    }
    let threshold = (limits.session_window / 2).max(1);
    if inner.session_unacked >= threshold {
        let delta = inner.session_unacked.min(MAX_WINDOW);
        inner.session_unacked -= delta;
        inner.session_recv_window += i64::from(delta);
        inner.control.push_back(Control::WindowUpdate(WindowUpdate {
            stream_id: 0,
            delta,
        }));
        queued = true;
    }
    queued
}

/// The peer has shown it does flow control: enforce windows from now on,
/// grant the configured session window, and acknowledge what was consumed.
fn peer_does_flow_control(inner: &mut Inner, limits: &Limits) {
    if inner.peer_flow_control {
        return;
    }
    inner.peer_flow_control = true;
    if limits.session_window > DEFAULT_WINDOW {
        let delta = limits.session_window - DEFAULT_WINDOW;
        inner.session_recv_window += i64::from(delta);
        inner.control.push_back(Control::WindowUpdate(WindowUpdate {
            stream_id: 0,
            delta,
        }));
    }
    let ids: Vec<u32> = inner.streams.keys().copied().collect();
    for id in ids {
        queue_window_updates(inner, limits, Some(id));
    }
    queue_window_updates(inner, limits, None);
}

/// Starts a server session on `io`: streams the client opens arrive on the
/// returned [`Incoming`], already answered with SYN_REPLY.
///
/// Must be called within a tokio runtime: the session's I/O runs in spawned
/// tasks, which end when the connection ends or when the [`Handle`], the
/// [`Incoming`] and every [`Stream`] are dropped.
pub fn server<IO>(io: IO, limits: Limits) -> (Handle, Incoming)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let guard = start(io, limits, Role::Server, Some(tx));
    (
        Handle {
            guard: guard.clone(),
        },
        Incoming { rx, _guard: guard },
    )
}

/// Starts a client session on `io`; open streams with [`Handle::open`].
/// Streams the server opens (server push) are refused.
///
/// Must be called within a tokio runtime, like [`server`].
pub fn client<IO>(io: IO, limits: Limits) -> Handle
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Handle {
        guard: start(io, limits, Role::Client, None),
    }
}

fn start<IO>(
    io: IO,
    limits: Limits,
    role: Role,
    incoming: Option<mpsc::UnboundedSender<Stream>>,
) -> Arc<SessionGuard>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first_id = match role {
        Role::Server => 2,
        Role::Client => 1,
    };
    let mut control = VecDeque::new();
    control.push_back(Control::Settings(Settings {
        clear: false,
        entries: vec![
            Setting {
                flags: 0,
                id: SettingId::MAX_CONCURRENT_STREAMS,
                value: limits.max_concurrent_streams,
            },
            Setting {
                flags: 0,
                id: SettingId::INITIAL_WINDOW_SIZE,
                value: limits.stream_window.min(MAX_WINDOW),
            },
        ],
    }));
    let inner = Inner {
        state: State::Open,
        streams: HashMap::new(),
        control,
        ready: VecDeque::new(),
        next_local_id: first_id,
        last_remote_id: 0,
        next_ping_id: first_id,
        pings: HashMap::new(),
        peer_flow_control: false,
        peer_initial_window: DEFAULT_WINDOW,
        peer_max_streams: u32::MAX,
        session_send_window: i64::from(DEFAULT_WINDOW),
        session_recv_window: i64::from(DEFAULT_WINDOW),
        session_unacked: 0,
        goaway_sent: false,
        goaway_received: None,
        incoming,
    };
    let (closed, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        role,
        limits,
        inner: Mutex::new(inner),
        writer_wake: Notify::new(),
        reader_wake: Notify::new(),
        closed,
        guard: OnceLock::new(),
    });
    let guard = Arc::new(SessionGuard {
        shared: shared.clone(),
    });
    let _ = shared.guard.set(Arc::downgrade(&guard));
    let (rd, wr) = tokio::io::split(io);
    tokio::spawn(writer_task(shared.clone(), wr));
    tokio::spawn(reader_task(shared, rd));
    guard
}

/// Closes the session gracefully once the last application handle is gone.
#[derive(Debug)]
struct SessionGuard {
    shared: Arc<Shared>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

/// Controls a session: opens streams, pings, sends GOAWAY. Cloneable; the
/// session closes gracefully when every handle, the [`Incoming`] and every
/// stream are dropped.
#[derive(Clone, Debug)]
pub struct Handle {
    guard: Arc<SessionGuard>,
}

impl Handle {
    fn shared(&self) -> &Arc<Shared> {
        &self.guard.shared
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.shared().role
    }

    /// Opens a stream: sends SYN_STREAM with `headers` (and FLAG_FIN when
    /// `fin`: this side sends no data) and waits for the peer's SYN_REPLY.
    /// Fails if the peer resets the stream instead, or the session ends.
    pub async fn open(&self, headers: Headers, fin: bool) -> Result<Stream, SessionError> {
        headers.to_block()?;
        let shared = self.shared();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = shared.lock();
            if inner.state != State::Open || inner.goaway_sent {
                return Err(SessionError::Closed);
            }
            if let Some(last) = inner.goaway_received {
                return Err(SessionError::GoingAway {
                    last_good_stream_id: last,
                });
            }
            let id = inner.next_local_id;
            if id > MAX_STREAM_ID {
                return Err(SessionError::StreamIdsExhausted);
            }
            let open_here = inner
                .streams
                .values()
                .filter(|s| s.local && s.active())
                .count();
            if open_here >= inner.peer_max_streams as usize {
                return Err(SessionError::TooManyStreams(inner.peer_max_streams));
            }
            inner.next_local_id = id.saturating_add(2);
            let mut st =
                StreamState::new(true, inner.peer_initial_window, shared.limits.stream_window);
            st.reply = Some(tx);
            st.fin_queued = fin;
            st.fin_sent = fin;
            inner.streams.insert(id, st);
            inner.control.push_back(Control::SynStream {
                id,
                headers: headers.clone(),
                fin,
            });
            id
        };
        shared.writer_wake.notify_one();
        let reply = match rx.await {
            Ok(reply) => reply?,
            Err(_) => return Err(SessionError::Closed),
        };
        Ok(Stream::new(self.guard.clone(), id, headers, reply))
    }

    /// Sends PING and waits for the echo; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let shared = self.shared();
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = shared.lock();
            if inner.state == State::Closed {
                return Err(SessionError::Closed);
            }
            let id = inner.next_ping_id;
            inner.next_ping_id = id.wrapping_add(2);
            inner.pings.insert(id, tx);
            inner.control.push_back(Control::Ping(id));
        }
        shared.writer_wake.notify_one();
        let start = Instant::now();
        rx.await.map_err(|_| SessionError::Closed)?;
        Ok(start.elapsed())
    }

    /// Sends GOAWAY (status OK): the peer may open no more streams, and
    /// [`Incoming::next`] returns `None` once the streams already accepted
    /// are taken. Streams already open carry on.
    pub fn goaway(&self) {
        let shared = self.shared();
        {
            let mut inner = shared.lock();
            if inner.goaway_sent || inner.state == State::Closed {
                return;
            }
            inner.goaway_sent = true;
            inner.incoming = None;
            let last = inner.last_remote_id;
            inner.control.push_back(Control::GoAway(GoAway {
                last_good_stream_id: last,
                status: GoAwayStatus::OK,
            }));
        }
        shared.writer_wake.notify_one();
    }

    /// Closes the session gracefully: queued data and FINs are flushed
    /// (waiting at most 10 s for a flow-controlling peer's windows), then
    /// GOAWAY is sent and the connection shut down. Streams still open then
    /// fail.
    pub fn close(&self) {
        self.shared().begin_close();
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        *self.shared().closed.borrow()
    }

    /// Waits until the session has ended.
    pub async fn closed(&self) {
        let mut rx = self.shared().closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Whether the peer has shown it does flow control (so windows are
    /// enforced and replenished).
    pub fn peer_does_flow_control(&self) -> bool {
        self.shared().lock().peer_flow_control
    }
}

/// Streams the peer opens, on the server side.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<Stream>,
    _guard: Arc<SessionGuard>,
}

impl Incoming {
    /// The next stream the peer opened (SYN_REPLY already sent), or `None`
    /// once the session has ended or sent GOAWAY.
    pub async fn next(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

/// A SPDY stream: read what the peer sends (EOF on its FIN), write DATA
/// (`poll_shutdown` sends FIN). Dropping it without shutdown sends FIN
/// after any queued data; [`Stream::reset`] aborts it.
#[derive(Debug)]
pub struct Stream {
    recv: RecvStream,
    send: SendStream,
    headers: Headers,
    reply_headers: Headers,
}

impl Stream {
    fn new(guard: Arc<SessionGuard>, id: u32, headers: Headers, reply_headers: Headers) -> Self {
        Self {
            recv: RecvStream {
                guard: guard.clone(),
                id,
            },
            send: SendStream { guard, id },
            headers,
            reply_headers,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.recv.id
    }

    /// The headers of the SYN_STREAM that opened the stream (the peer's, on
    /// an accepted stream; ours, on an opened one).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers of the peer's SYN_REPLY (opened streams; empty on
    /// accepted ones).
    pub fn reply_headers(&self) -> &Headers {
        &self.reply_headers
    }

    /// Aborts the stream with RST_STREAM `status`: reads and writes fail from
    /// now on.
    pub fn reset(&self, status: RstStatus) {
        reset_stream(&self.recv.guard.shared, self.recv.id, status);
    }

    /// Splits the stream into halves usable from different tasks.
    pub fn into_split(self) -> (RecvStream, SendStream) {
        (self.recv, self.send)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

fn reset_stream(shared: &Shared, id: u32, status: RstStatus) {
    {
        let mut inner = shared.lock();
        if inner.state == State::Closed {
            return;
        }
        let Some(st) = inner.streams.get_mut(&id) else {
            return;
        };
        if st.abort.is_some() {
            return;
        }
        st.abort = Some(Abort::Local(status));
        st.send_buf = BytesMut::new();
        st.wake();
        inner.control.push_back(Control::Rst(RstStream {
            stream_id: id,
            status,
        }));
        maybe_remove(&mut inner, id);
    }
    shared.writer_wake.notify_one();
    shared.reader_wake.notify_one();
}

/// The receiving half of a [`Stream`].
#[derive(Debug)]
pub struct RecvStream {
    guard: Arc<SessionGuard>,
    id: u32,
}

impl RecvStream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the whole stream with RST_STREAM `status`.
    pub fn reset(&self, status: RstStatus) {
        reset_stream(&self.guard.shared, self.id, status);
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let shared = &self.guard.shared;
        let mut inner = shared.lock();
        let closed = inner.state == State::Closed;
        let flow_control = inner.peer_flow_control;
        let Some(st) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(front) = st.recv_buf.front_mut() else {
                break;
            };
            let take = front.len().min(buf.remaining());
            buf.put_slice(front.get(..take).unwrap_or_default());
            front.advance(take);
            if front.is_empty() {
                st.recv_buf.pop_front();
            }
            n += take;
        }
        if n > 0 {
            st.recv_len = st.recv_len.saturating_sub(n);
            let wake_writer = credit(&mut inner, &shared.limits, Some(self.id), n);
            drop(inner);
            if wake_writer {
                shared.writer_wake.notify_one();
            }
            if !flow_control {
                shared.reader_wake.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if st.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(abort) = st.abort {
            return Poll::Ready(Err(abort.io_error()));
        }
        if closed {
            return Poll::Ready(Err(closed_io_error()));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let shared = &self.guard.shared;
        let wake_writer = {
            let mut inner = shared.lock();
            let Some(st) = inner.streams.get_mut(&self.id) else {
                return;
            };
            st.read_open = false;
            st.read_waker = None;
            let discarded = st.recv_len;
            st.recv_buf.clear();
            st.recv_len = 0;
            let wake = credit(&mut inner, &shared.limits, Some(self.id), discarded);
            maybe_remove(&mut inner, self.id);
            wake
        };
        if wake_writer {
            shared.writer_wake.notify_one();
        }
        shared.reader_wake.notify_one();
    }
}

/// The sending half of a [`Stream`].
#[derive(Debug)]
pub struct SendStream {
    guard: Arc<SessionGuard>,
    id: u32,
}

impl SendStream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the whole stream with RST_STREAM `status`.
    pub fn reset(&self, status: RstStatus) {
        reset_stream(&self.guard.shared, self.id, status);
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let shared = &self.guard.shared;
        let mut inner = shared.lock();
        let closed = inner.state == State::Closed;
        let Some(st) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(closed_io_error()));
        };
        if let Some(abort) = st.abort {
            return Poll::Ready(Err(abort.io_error()));
        }
        if closed {
            return Poll::Ready(Err(closed_io_error()));
        }
        if st.fin_queued {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the stream's FIN",
            )));
        }
        let room = shared.limits.send_buffer.saturating_sub(st.send_buf.len());
        if room == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        st.send_buf
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        push_ready(&mut inner, self.id);
        drop(inner);
        shared.writer_wake.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = &self.guard.shared;
        let mut inner = shared.lock();
        let closed = inner.state == State::Closed;
        let Some(st) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if let Some(abort) = st.abort {
            return Poll::Ready(Err(abort.io_error()));
        }
        if st.send_buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if closed {
            return Poll::Ready(Err(closed_io_error()));
        }
        st.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = &self.guard.shared;
        let mut inner = shared.lock();
        let closed = inner.state == State::Closed;
        let Some(st) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if let Some(abort) = st.abort {
            return Poll::Ready(Err(abort.io_error()));
        }
        if st.fin_sent {
            return Poll::Ready(Ok(()));
        }
        if closed {
            return Poll::Ready(Err(closed_io_error()));
        }
        st.write_waker = Some(cx.waker().clone());
        if !st.fin_queued {
            st.fin_queued = true;
            push_ready(&mut inner, self.id);
            drop(inner);
            shared.writer_wake.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        let shared = &self.guard.shared;
        {
            let mut inner = shared.lock();
            let Some(st) = inner.streams.get_mut(&self.id) else {
                return;
            };
            st.write_open = false;
            st.write_waker = None;
            if !st.fin_queued && st.abort.is_none() {
                st.fin_queued = true;
                push_ready(&mut inner, self.id);
            }
            maybe_remove(&mut inner, self.id);
        }
        shared.writer_wake.notify_one();
    }
}

// ---------------------------------------------------------------- writer

enum Out {
    Control(Control),
    Data(DataFrame),
}

/// Takes queued control frames, then DATA round-robin over ready streams
/// within the windows (when enforced), up to [`WRITE_BATCH`] bytes.
fn collect(limits: &Limits, inner: &mut Inner, out: &mut Vec<Out>) {
    let take = inner.control.len();
    out.extend(inner.control.drain(..take).map(Out::Control));
    if inner.state == State::Closed {
        return;
    }
    let enforce = inner.peer_flow_control;
    let mut budget = WRITE_BATCH;
    let mut finished = Vec::new();
    while budget > 0 {
        let Some(id) = inner.ready.pop_front() else {
            break;
        };
        let Some(st) = inner.streams.get_mut(&id) else {
            continue;
        };
        st.in_ready = false;
        if st.abort.is_some() {
            continue;
        }
        let mut n = st.send_buf.len().min(limits.max_data_chunk).min(budget);
        if enforce {
            let window = st.send_window.min(inner.session_send_window).max(0);
            n = n.min(usize::try_from(window).unwrap_or(usize::MAX));
        }
        let fin = st.fin_queued && !st.fin_sent && st.send_buf.len() == n;
        if n == 0 && !fin {
            // Blocked on a window: WINDOW_UPDATE or SETTINGS requeues it.
            continue;
        }
        let data = st.send_buf.split_to(n).freeze();
        let sent = i64::try_from(n).unwrap_or(i64::MAX);
        st.send_window -= sent;
        inner.session_send_window -= sent;
        if fin {
            st.fin_sent = true;
            finished.push(id);
        }
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
        if st.has_send_work() {
            st.in_ready = true;
            inner.ready.push_back(id);
        }
        budget = budget.saturating_sub(n.max(1));
        out.push(Out::Data(DataFrame {
            stream_id: id,
            fin,
            data,
        }));
    }
    for id in finished {
        maybe_remove(inner, id);
    }
}

enum WriterStep {
    Write,
    Wait(Option<Instant>),
    Exit,
}

async fn writer_task<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) {
    let mut encoder = match HeaderEncoder::new() {
        Ok(e) => e,
        Err(e) => {
            shared.fail(Some(&e.into()), None);
            return;
        }
    };
    let mut batch = Vec::new();
    let mut buf = BytesMut::with_capacity(WRITE_BATCH + 1024);
    let mut drain_deadline: Option<Instant> = None;
    loop {
        batch.clear();
        let step = {
            let mut inner = shared.lock();
            collect(&shared.limits, &mut inner, &mut batch);
            if !batch.is_empty() {
                WriterStep::Write
            } else {
                match inner.state {
                    State::Open => WriterStep::Wait(None),
                    State::Closed => WriterStep::Exit,
                    State::Closing => {
                        let now = Instant::now();
                        let deadline = *drain_deadline.get_or_insert(now + CLOSE_DRAIN_TIMEOUT);
                        let blocked = inner.streams.values().any(StreamState::has_send_work);
                        if blocked && now < deadline {
                            WriterStep::Wait(Some(deadline))
                        } else if !inner.goaway_sent {
                            inner.goaway_sent = true;
                            batch.push(Out::Control(Control::GoAway(GoAway {
                                last_good_stream_id: inner.last_remote_id,
                                status: GoAwayStatus::OK,
                            })));
                            WriterStep::Write
                        } else {
                            close_locked(&mut inner);
                            WriterStep::Exit
                        }
                    }
                }
            }
        };
        match step {
            WriterStep::Exit => {
                shared.after_close();
                let _ = wr.shutdown().await;
                return;
            }
            WriterStep::Wait(deadline) => match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = shared.writer_wake.notified() => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => shared.writer_wake.notified().await,
            },
            WriterStep::Write => {
                buf.clear();
                for out in batch.drain(..) {
                    if let Err(e) = encode_out(&mut encoder, out, &mut buf) {
                        shared.fail(Some(&e), Some(GoAwayStatus::INTERNAL_ERROR));
                        return;
                    }
                }
                // Control-queue room for the reader.
                shared.reader_wake.notify_one();
                let written = async {
                    wr.write_all(&buf).await?;
                    wr.flush().await
                }
                .await;
                if let Err(e) = written {
                    shared.fail(Some(&SessionError::Io(Arc::new(e))), None);
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
    }
}

fn encode_out(
    encoder: &mut HeaderEncoder,
    out: Out,
    buf: &mut BytesMut,
) -> Result<(), SessionError> {
    let frame = match out {
        Out::Data(d) => Frame::Data(d),
        Out::Control(c) => match c {
            Control::Settings(s) => Frame::Settings(s),
            Control::SynStream { id, headers, fin } => Frame::SynStream(SynStream {
                stream_id: id,
                associated_stream_id: 0,
                priority: 0,
                slot: 0,
                fin,
                unidirectional: false,
                header_block: encoder.encode(&headers)?,
            }),
            Control::SynReply { id } => Frame::SynReply(SynReply {
                stream_id: id,
                fin: false,
                header_block: encoder.encode(&Headers::new())?,
            }),
            Control::Rst(r) => Frame::RstStream(r),
            Control::Ping(id) => Frame::Ping(Ping { id }),
            Control::GoAway(g) => Frame::GoAway(g),
            Control::WindowUpdate(w) => Frame::WindowUpdate(w),
        },
    };
    frame.encode(buf)?;
    Ok(())
}

// ---------------------------------------------------------------- reader

/// Why the reader stops.
enum Stop {
    /// The session was closed elsewhere.
    Closed,
    /// End of the connection.
    Eof,
    /// A session error: GOAWAY with the status, then close.
    Fatal(SessionError, GoAwayStatus),
}

impl From<FrameError> for Stop {
    fn from(e: FrameError) -> Self {
        Stop::Fatal(e.into(), GoAwayStatus::PROTOCOL_ERROR)
    }
}

impl From<HeaderError> for Stop {
    fn from(e: HeaderError) -> Self {
        Stop::Fatal(e.into(), GoAwayStatus::PROTOCOL_ERROR)
    }
}

fn protocol(msg: &'static str) -> Stop {
    Stop::Fatal(SessionError::Protocol(msg), GoAwayStatus::PROTOCOL_ERROR)
}

struct Reader {
    shared: Arc<Shared>,
    headers: HeaderDecoder,
    closed: watch::Receiver<bool>,
}

/// How long a closed session keeps reading what the peer still sends,
/// waiting for it to close its side.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

async fn reader_task<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut rd: R) {
    let mut reader = Reader {
        headers: HeaderDecoder::new(shared.limits.max_header_block),
        closed: shared.closed.subscribe(),
        shared: shared.clone(),
    };
    let mut decoder = Decoder::new(DecoderConfig {
        max_control_frame_len: shared.limits.max_control_frame_len,
        max_data_frame_len: shared.limits.max_data_frame_len,
    });
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let stop = loop {
        let step: Result<(), Stop> = async {
            while let Some(frame) = decoder.decode(&mut buf)? {
                reader.handle(frame).await?;
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                biased;
                _ = reader.closed.wait_for(|c| *c) => return Err(Stop::Closed),
                r = rd.read_buf(&mut buf) => r,
            };
            match read {
                Ok(0) => {
                    decoder.finish(&buf)?;
                    Err(Stop::Eof)
                }
                Ok(_) => Ok(()),
                Err(e) => Err(Stop::Fatal(SessionError::Io(Arc::new(e)), GoAwayStatus::OK)),
            }
        }
        .await;
        if let Err(stop) = step {
            break stop;
        }
    };
    match stop {
        Stop::Closed => {
            // Read (and drop) what the peer still sends until it closes
            // too: a socket closed with unread input is reset, and a reset
            // can destroy the last data we sent before the peer reads it.
            let mut scratch = [0u8; 4096];
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                while let Ok(n) = rd.read(&mut scratch).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        Stop::Eof => shared.fail(None, None),
        Stop::Fatal(SessionError::Io(e), _) => shared.fail(Some(&SessionError::Io(e)), None),
        Stop::Fatal(err, status) => {
            tracing::warn!(role = ?shared.role, error = %err, "SPDY peer broke the protocol; sending GOAWAY");
            shared.fail(Some(&err), Some(status));
        }
    }
}

impl Reader {
    /// Waits for the application or the writer to make room.
    async fn wait(&mut self) -> Result<(), Stop> {
        tokio::select! {
            _ = self.shared.reader_wake.notified() => Ok(()),
            _ = self.closed.wait_for(|c| *c) => Err(Stop::Closed),
        }
    }

    /// Waits until the control queue has room: a peer that makes us queue
    /// replies faster than it reads them stops being read.
    async fn control_room(&mut self) -> Result<(), Stop> {
        loop {
            {
                let inner = self.shared.lock();
                if inner.state == State::Closed {
                    return Err(Stop::Closed);
                }
                if inner.control.len() < self.shared.limits.control_queue {
                    return Ok(());
                }
            }
            self.wait().await?;
        }
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), Stop> {
        if !matches!(frame, Frame::Data(_)) {
            self.control_room().await?;
        }
        let shared = self.shared.clone();
        let limits = &shared.limits;
        match frame {
            Frame::Data(d) => self.data(d).await,
            Frame::SynStream(f) => {
                // Always decompress, even for a refused stream: the zlib
                // context must follow the peer's.
                let headers = self.headers.decode(&f.header_block)?;
                self.syn_stream(f, headers);
                Ok(())
            }
            Frame::SynReply(f) => {
                let headers = self.headers.decode(&f.header_block)?;
                let mut inner = shared.lock();
                let id = f.stream_id;
                let Some(st) = inner.streams.get_mut(&id) else {
                    return Ok(());
                };
                match st.reply.take() {
                    Some(tx) => {
                        if f.fin {
                            st.remote_fin = true;
                        }
                        if tx.send(Ok(headers)).is_err() {
                            // The `open` was abandoned: nobody holds the
                            // stream.
                            st.read_open = false;
                            st.write_open = false;
                            st.abort = Some(Abort::Local(RstStatus::CANCEL));
                            inner.control.push_back(Control::Rst(RstStream {
                                stream_id: id,
                                status: RstStatus::CANCEL,
                            }));
                            maybe_remove(&mut inner, id);
                            drop(inner);
                            shared.writer_wake.notify_one();
                        }
                    }
                    None if st.local && st.abort.is_none() => {
                        st.abort = Some(Abort::Local(RstStatus::STREAM_IN_USE));
                        st.wake();
                        inner.control.push_back(Control::Rst(RstStream {
                            stream_id: id,
                            status: RstStatus::STREAM_IN_USE,
                        }));
                        maybe_remove(&mut inner, id);
                        drop(inner);
                        shared.writer_wake.notify_one();
                    }
                    None => {}
                }
                Ok(())
            }
            Frame::Headers(f) => {
                self.headers.decode(&f.header_block)?;
                if f.fin {
                    let mut inner = shared.lock();
                    if let Some(st) = inner.streams.get_mut(&f.stream_id) {
                        st.remote_fin = true;
                        st.wake();
                    }
                    maybe_remove(&mut inner, f.stream_id);
                }
                Ok(())
            }
            Frame::RstStream(f) => {
                let mut inner = shared.lock();
                if let Some(st) = inner.streams.get_mut(&f.stream_id) {
                    if st.abort.is_none() {
                        tracing::debug!(stream = f.stream_id, status = %f.status, "SPDY stream reset by peer");
                        st.abort = Some(Abort::Remote(f.status));
                        st.send_buf = BytesMut::new();
                    }
                    if let Some(tx) = st.reply.take() {
                        let _ = tx.send(Err(SessionError::Reset(f.status)));
                    }
                    st.wake();
                }
                maybe_remove(&mut inner, f.stream_id);
                Ok(())
            }
            Frame::Settings(s) => {
                let mut inner = shared.lock();
                if let Some(v) = s.get(SettingId::MAX_CONCURRENT_STREAMS) {
                    inner.peer_max_streams = v;
                }
                if let Some(v) = s.get(SettingId::INITIAL_WINDOW_SIZE) {
                    if v > MAX_WINDOW {
                        return Err(protocol("SETTINGS INITIAL_WINDOW_SIZE above 2^31-1"));
                    }
                    let delta = i64::from(v) - i64::from(inner.peer_initial_window);
                    inner.peer_initial_window = v;
                    for st in inner.streams.values_mut() {
                        st.send_window += delta;
                    }
                    peer_does_flow_control(&mut inner, limits);
                    requeue_all(&mut inner);
                }
                drop(inner);
                shared.writer_wake.notify_one();
                Ok(())
            }
            Frame::Ping(p) => {
                let mut inner = shared.lock();
                if shared.is_remote_id(p.id) || p.id == 0 {
                    inner.control.push_back(Control::Ping(p.id));
                    drop(inner);
                    shared.writer_wake.notify_one();
                } else if let Some(tx) = inner.pings.remove(&p.id) {
                    let _ = tx.send(());
                }
                Ok(())
            }
            Frame::GoAway(g) => {
                let mut inner = shared.lock();
                tracing::debug!(last_good = g.last_good_stream_id, status = %g.status, "SPDY peer sent GOAWAY");
                inner.goaway_received = Some(g.last_good_stream_id);
                let refused: Vec<u32> = inner
                    .streams
                    .iter()
                    .filter(|(id, st)| st.local && **id > g.last_good_stream_id)
                    .map(|(id, _)| *id)
                    .collect();
                for id in refused {
                    if let Some(st) = inner.streams.get_mut(&id) {
                        if st.abort.is_none() {
                            st.abort = Some(Abort::Remote(RstStatus::REFUSED_STREAM));
                        }
                        if let Some(tx) = st.reply.take() {
                            let _ = tx.send(Err(SessionError::GoingAway {
                                last_good_stream_id: g.last_good_stream_id,
                            }));
                        }
                        st.wake();
                    }
                    maybe_remove(&mut inner, id);
                }
                Ok(())
            }
            Frame::WindowUpdate(w) => {
                let mut inner = shared.lock();
                peer_does_flow_control(&mut inner, limits);
                let delta = i64::from(w.delta);
                if w.stream_id == 0 {
                    inner.session_send_window += delta;
                    if inner.session_send_window > i64::from(MAX_WINDOW) {
                        return Err(Stop::Fatal(
                            SessionError::Protocol("session window above 2^31-1"),
                            GoAwayStatus::PROTOCOL_ERROR,
                        ));
                    }
                } else if let Some(st) = inner.streams.get_mut(&w.stream_id) {
                    st.send_window += delta;
                    if st.send_window > i64::from(MAX_WINDOW) && st.abort.is_none() {
                        st.abort = Some(Abort::Local(RstStatus::FLOW_CONTROL_ERROR));
                        st.send_buf = BytesMut::new();
                        st.wake();
                        inner.control.push_back(Control::Rst(RstStream {
                            stream_id: w.stream_id,
                            status: RstStatus::FLOW_CONTROL_ERROR,
                        }));
                        maybe_remove(&mut inner, w.stream_id);
                    }
                }
                requeue_all(&mut inner);
                drop(inner);
                shared.writer_wake.notify_one();
                Ok(())
            }
        }
    }

    fn syn_stream(&mut self, f: SynStream, headers: Headers) {
        let shared = self.shared.clone();
        let limits = &shared.limits;
        let id = f.stream_id;
        let mut inner = shared.lock();
        let refuse = |inner: &mut Inner, status: RstStatus| {
            inner.control.push_back(Control::Rst(RstStream {
                stream_id: id,
                status,
            }));
        };
        if !shared.is_remote_id(id) {
            refuse(&mut inner, RstStatus::PROTOCOL_ERROR);
        } else if let Some(st) = inner.streams.get_mut(&id) {
            // A second SYN_STREAM for an open stream.
            if st.abort.is_none() {
                st.abort = Some(Abort::Local(RstStatus::PROTOCOL_ERROR));
                st.send_buf = BytesMut::new();
                st.wake();
            }
            refuse(&mut inner, RstStatus::PROTOCOL_ERROR);
            maybe_remove(&mut inner, id);
        } else if id <= inner.last_remote_id {
            // A reused id of a finished stream, or ids going backwards.
            refuse(&mut inner, RstStatus::PROTOCOL_ERROR);
        } else {
            inner.last_remote_id = id;
            let accepting = inner.state == State::Open
                && !inner.goaway_sent
                && inner.incoming.as_ref().is_some_and(|tx| !tx.is_closed());
            let open = inner.streams.values().filter(|s| s.active()).count();
            if !accepting {
                refuse(&mut inner, RstStatus::REFUSED_STREAM);
            } else if open >= limits.max_concurrent_streams as usize {
                tracing::debug!(stream = id, open, "SPDY stream refused: too many streams");
                refuse(&mut inner, RstStatus::REFUSED_STREAM);
            } else {
                let mut st =
                    StreamState::new(false, inner.peer_initial_window, limits.stream_window);
                st.remote_fin = f.fin;
                if f.unidirectional {
                    st.fin_queued = true;
                    st.fin_sent = true;
                }
                let Some(guard) = shared.guard.get().and_then(Weak::upgrade) else {
                    refuse(&mut inner, RstStatus::REFUSED_STREAM);
                    drop(inner);
                    shared.writer_wake.notify_one();
                    return;
                };
                inner.streams.insert(id, st);
                inner.control.push_back(Control::SynReply { id });
                let stream = Stream::new(guard, id, headers, Headers::new());
                let tx = inner.incoming.clone();
                drop(inner);
                shared.writer_wake.notify_one();
                if let Some(tx) = tx {
                    // On failure the stream drops here and sends FIN.
                    let _ = tx.send(stream);
                }
                return;
            }
        }
        drop(inner);
        shared.writer_wake.notify_one();
    }

    async fn data(&mut self, d: DataFrame) -> Result<(), Stop> {
        let shared = self.shared.clone();
        let limits = &shared.limits;
        let id = d.stream_id;
        let len = d.data.len();
        // Backpressure: a full buffer and a peer without flow control stop
        // the reader until the application reads.
        loop {
            {
                let inner = shared.lock();
                if inner.state == State::Closed {
                    return Err(Stop::Closed);
                }
                let full = inner.streams.get(&id).is_some_and(|st| {
                    len > 0
                        && st.read_open
                        && st.abort.is_none()
                        && !st.remote_fin
                        && st.recv_len >= limits.stream_window as usize
                });
                if !full || inner.peer_flow_control {
                    break;
                }
            }
            self.wait().await?;
        }
        let mut inner = shared.lock();
        let len_i = i64::try_from(len).unwrap_or(i64::MAX);
        inner.session_recv_window -= len_i;
        if inner.peer_flow_control && inner.session_recv_window < 0 {
            return Err(protocol("session flow-control window overrun"));
        }
        let mut wake_writer = false;
        let fc = inner.peer_flow_control;
        let known_id = if shared.is_remote_id(id) {
            id <= inner.last_remote_id
        } else {
            id < inner.next_local_id
        };
        match inner.streams.get_mut(&id) {
            None => {
                wake_writer |= credit(&mut inner, limits, None, len);
                if !known_id {
                    inner.control.push_back(Control::Rst(RstStream {
                        stream_id: id,
                        status: RstStatus::INVALID_STREAM,
                    }));
                    wake_writer = true;
                }
            }
            Some(st) if st.abort.is_some() => {
                wake_writer |= credit(&mut inner, limits, None, len);
            }
            Some(st) if st.remote_fin => {
                st.abort = Some(Abort::Local(RstStatus::STREAM_ALREADY_CLOSED));
                st.send_buf = BytesMut::new();
                st.wake();
                inner.control.push_back(Control::Rst(RstStream {
                    stream_id: id,
                    status: RstStatus::STREAM_ALREADY_CLOSED,
                }));
                credit(&mut inner, limits, None, len);
                maybe_remove(&mut inner, id);
                wake_writer = true;
            }
            Some(st) => {
                st.recv_window -= len_i;
                if fc && st.recv_window < 0 {
                    tracing::debug!(stream = id, "SPDY peer overran a stream window");
                    st.abort = Some(Abort::Local(RstStatus::FLOW_CONTROL_ERROR));
                    st.send_buf = BytesMut::new();
                    st.wake();
                    inner.control.push_back(Control::Rst(RstStream {
                        stream_id: id,
                        status: RstStatus::FLOW_CONTROL_ERROR,
                    }));
                    wake_writer = true;
                    wake_writer |= credit(&mut inner, limits, None, len);
                    maybe_remove(&mut inner, id);
                } else {
                    if st.read_open {
                        if len > 0 {
                            st.recv_len += len;
                            // A small piece would pin the whole read buffer
                            // it was cut from: copy it out instead.
                            let piece = if len < SMALL_PIECE {
                                Bytes::copy_from_slice(&d.data)
                            } else {
                                d.data
                            };
                            st.recv_buf.push_back(piece);
                        }
                    } else {
                        wake_writer |= credit(&mut inner, limits, Some(id), len);
                    }
                    if let Some(st) = inner.streams.get_mut(&id) {
                        if d.fin {
                            st.remote_fin = true;
                        }
                        if let Some(w) = st.read_waker.take() {
                            w.wake();
                        }
                    }
                    if d.fin {
                        maybe_remove(&mut inner, id);
                    }
                }
            }
        }
        drop(inner);
        if wake_writer {
            shared.writer_wake.notify_one();
        }
        Ok(())
    }
}

fn requeue_all(inner: &mut Inner) {
    let ids: Vec<u32> = inner
        .streams
        .iter()
        .filter(|(_, st)| !st.in_ready && st.has_send_work())
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        push_ready(inner, id);
    }
}
