//! SPDY/3 frames (SPDY Protocol Draft 3.1, section 2.2 and 2.6).
//!
//! Every frame starts with an 8-byte header. A control frame:
//!
//! ```text
//! +----------------------------------+
//! |C| Version(15bits) | Type(16bits) |
//! +----------------------------------+
//! | Flags (8)  |  Length (24 bits)   |
//! +----------------------------------+
//! |               Data               |
//! +----------------------------------+
//! ```
//!
//! with `C = 1` and version 3; a data frame has `C = 0` and a 31-bit stream
//! id in place of version and type. Header blocks are kept compressed here:
//! compressing and decompressing them needs the per-direction zlib contexts
//! of [`super::headers`].

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The SPDY version this module speaks (3, which 3.1 keeps on the wire).
pub const SPDY_VERSION: u16 = 3;
/// Flag on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's last frame
/// on the stream (it half-closes the stream).
pub const FLAG_FIN: u8 = 0x01;
/// Flag on SYN_STREAM: the recipient may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Flag on SETTINGS: forget previously persisted settings.
pub const FLAG_SETTINGS_CLEAR_SETTINGS: u8 = 0x01;
/// Length of every frame header.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload the 24-bit length field can express.
pub const MAX_FRAME_PAYLOAD: usize = 0x00ff_ffff;
/// Largest stream id (31 bits).
pub const MAX_STREAM_ID: u32 = 0x7fff_ffff;
/// Largest flow-control window and WINDOW_UPDATE delta (2^31 - 1).
pub const MAX_WINDOW: u32 = 0x7fff_ffff;
/// Default limit for a control frame's payload in [`DecoderConfig`].
pub const DEFAULT_MAX_CONTROL_FRAME_LEN: usize = 256 * 1024;

/// The kind of a frame; control frame type numbers from the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A data frame (not a control frame).
    Data,
    /// SYN_STREAM, control type 1.
    SynStream,
    /// SYN_REPLY, control type 2.
    SynReply,
    /// RST_STREAM, control type 3.
    RstStream,
    /// SETTINGS, control type 4.
    Settings,
    /// PING, control type 6.
    Ping,
    /// GOAWAY, control type 7.
    GoAway,
    /// HEADERS, control type 8.
    Headers,
    /// WINDOW_UPDATE, control type 9.
    WindowUpdate,
}

impl FrameKind {
    /// The control frame type number, `None` for DATA.
    pub fn control_type(self) -> Option<u16> {
        Some(match self {
            FrameKind::Data => return None,
            FrameKind::SynStream => 1,
            FrameKind::SynReply => 2,
            FrameKind::RstStream => 3,
            FrameKind::Settings => 4,
            FrameKind::Ping => 6,
            FrameKind::GoAway => 7,
            FrameKind::Headers => 8,
            FrameKind::WindowUpdate => 9,
        })
    }

    /// The kind of a control frame type number; `None` for types this
    /// module does not know (NOOP, CREDENTIAL, future types), which a
    /// receiver skips.
    pub fn from_control_type(ty: u16) -> Option<Self> {
        Some(match ty {
            1 => FrameKind::SynStream,
            2 => FrameKind::SynReply,
            3 => FrameKind::RstStream,
            4 => FrameKind::Settings,
            6 => FrameKind::Ping,
            7 => FrameKind::GoAway,
            8 => FrameKind::Headers,
            9 => FrameKind::WindowUpdate,
            _ => return None,
        })
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Data => "DATA",
            FrameKind::SynStream => "SYN_STREAM",
            FrameKind::SynReply => "SYN_REPLY",
            FrameKind::RstStream => "RST_STREAM",
            FrameKind::Settings => "SETTINGS",
            FrameKind::Ping => "PING",
            FrameKind::GoAway => "GOAWAY",
            FrameKind::Headers => "HEADERS",
            FrameKind::WindowUpdate => "WINDOW_UPDATE",
        })
    }
}

/// RST_STREAM status code (spec section 2.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    /// A generic error, used when no more specific one applies.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// A frame for a stream that is not active.
    pub const INVALID_STREAM: Self = Self(2);
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: Self = Self(3);
    /// The recipient does not support the SPDY version requested.
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    /// The stream is no longer needed.
    pub const CANCEL: Self = Self(5);
    /// The endpoint cannot continue on the stream because of an internal
    /// failure.
    pub const INTERNAL_ERROR: Self = Self(6);
    /// The peer violated the flow-control protocol.
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    /// A SYN_REPLY for a stream already open.
    pub const STREAM_IN_USE: Self = Self(8);
    /// Data or a SYN_REPLY for a half-closed stream.
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    /// A frame was too large to process.
    pub const FRAME_TOO_LARGE: Self = Self(11);
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "PROTOCOL_ERROR",
            2 => "INVALID_STREAM",
            3 => "REFUSED_STREAM",
            4 => "UNSUPPORTED_VERSION",
            5 => "CANCEL",
            6 => "INTERNAL_ERROR",
            7 => "FLOW_CONTROL_ERROR",
            8 => "STREAM_IN_USE",
            9 => "STREAM_ALREADY_CLOSED",
            10 => "INVALID_CREDENTIALS",
            11 => "FRAME_TOO_LARGE",
            other => return write!(f, "status {other}"),
        };
        f.write_str(name)
    }
}

/// GOAWAY status code (spec section 2.6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    /// Normal session teardown.
    pub const OK: Self = Self(0);
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// The sender hit an internal failure.
    pub const INTERNAL_ERROR: Self = Self(2);
}

impl fmt::Display for GoAwayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("OK"),
            1 => f.write_str("PROTOCOL_ERROR"),
            2 => f.write_str("INTERNAL_ERROR"),
            other => write!(f, "status {other}"),
        }
    }
}

/// SETTINGS ids (spec section 2.6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SettingId(pub u32);

impl SettingId {
    /// Expected upload bandwidth.
    pub const UPLOAD_BANDWIDTH: Self = Self(1);
    /// Expected download bandwidth.
    pub const DOWNLOAD_BANDWIDTH: Self = Self(2);
    /// Expected round-trip time.
    pub const ROUND_TRIP_TIME: Self = Self(3);
    /// Streams the sender allows the recipient to have open at once.
    pub const MAX_CONCURRENT_STREAMS: Self = Self(4);
    /// Current TCP congestion window.
    pub const CURRENT_CWND: Self = Self(5);
    /// Download retransmission rate.
    pub const DOWNLOAD_RETRANS_RATE: Self = Self(6);
    /// Initial per-stream flow-control window of the sender's receive side.
    pub const INITIAL_WINDOW_SIZE: Self = Self(7);
    /// Size of the client certificate vector.
    pub const CLIENT_CERTIFICATE_VECTOR_SIZE: Self = Self(8);
}

/// One SETTINGS entry: `| Flags (8) | ID (24) | Value (32) |`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// FLAG_SETTINGS_PERSIST_VALUE (1) / FLAG_SETTINGS_PERSISTED (2).
    pub flags: u8,
    /// The setting id (24 bits).
    pub id: SettingId,
    /// The value.
    pub value: u32,
}

/// A DATA frame, or (from [`Decoder`]) a piece of one: see
/// [`Decoder::decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFrame {
    /// The stream the data belongs to (never 0).
    pub stream_id: u32,
    /// FLAG_FIN: the sender's last data on the stream.
    pub fin: bool,
    /// The payload.
    pub data: Bytes,
}

/// SYN_STREAM: opens a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynStream {
    /// The new stream's id: odd when a client opens it, even for a server.
    pub stream_id: u32,
    /// The stream this one is associated with (server push), or 0.
    pub associated_stream_id: u32,
    /// Priority, 0 (highest) to 7.
    pub priority: u8,
    /// CREDENTIAL slot, 0 for none.
    pub slot: u8,
    /// FLAG_FIN: the opener sends nothing more on the stream.
    pub fin: bool,
    /// FLAG_UNIDIRECTIONAL: the recipient may not send on the stream.
    pub unidirectional: bool,
    /// The compressed name/value header block.
    pub header_block: Bytes,
}

/// SYN_REPLY: the recipient's acceptance of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynReply {
    /// The stream being answered.
    pub stream_id: u32,
    /// FLAG_FIN: the replier sends nothing more on the stream.
    pub fin: bool,
    /// The compressed name/value header block.
    pub header_block: Bytes,
}

/// RST_STREAM: aborts a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstStream {
    /// The stream aborted.
    pub stream_id: u32,
    /// Why.
    pub status: RstStatus,
}

/// SETTINGS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// FLAG_SETTINGS_CLEAR_SETTINGS.
    pub clear: bool,
    /// The entries, in wire order.
    pub entries: Vec<Setting>,
}

impl Settings {
    /// The value of `id`, if present (the last entry wins).
    pub fn get(&self, id: SettingId) -> Option<u32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.id == id)
            .map(|e| e.value)
    }
}

/// PING: echoed back by the recipient with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// Odd when a client initiated it, even for a server.
    pub id: u32,
}

/// GOAWAY: the sender accepts no new streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// The last stream id the sender accepted from the recipient.
    pub last_good_stream_id: u32,
    /// Why.
    pub status: GoAwayStatus,
}

/// HEADERS: more headers for a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadersFrame {
    /// The stream.
    pub stream_id: u32,
    /// FLAG_FIN.
    pub fin: bool,
    /// The compressed name/value header block.
    pub header_block: Bytes,
}

/// WINDOW_UPDATE: grows the recipient's send window (SPDY/3.1: stream id 0
/// is the session window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUpdate {
    /// The stream, or 0 for the session.
    pub stream_id: u32,
    /// 1 to 2^31 - 1.
    pub delta: u32,
}

/// Any SPDY/3 frame this module knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data(DataFrame),
    /// SYN_STREAM.
    SynStream(SynStream),
    /// SYN_REPLY.
    SynReply(SynReply),
    /// RST_STREAM.
    RstStream(RstStream),
    /// SETTINGS.
    Settings(Settings),
    /// PING.
    Ping(Ping),
    /// GOAWAY.
    GoAway(GoAway),
    /// HEADERS.
    Headers(HeadersFrame),
    /// WINDOW_UPDATE.
    WindowUpdate(WindowUpdate),
}

/// A frame that cannot be parsed or serialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A control frame carries a version other than 3.
    #[error("unsupported SPDY version {version} (only 3 is spoken)")]
    UnsupportedVersion {
        /// The version in the frame header.
        version: u16,
    },
    /// The frame's length field exceeds the configured limit.
    #[error("{kind} frame of {length} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame kind.
        kind: FrameKind,
        /// The length the header claims.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A fixed-size control frame has the wrong length, or a variable one is
    /// shorter than its fixed fields.
    #[error("{kind} frame has invalid length {length}")]
    InvalidLength {
        /// The frame kind.
        kind: FrameKind,
        /// The length the header claims.
        length: usize,
    },
    /// A frame that must name a stream names stream 0.
    #[error("{kind} frame for stream 0")]
    ZeroStreamId {
        /// The frame kind.
        kind: FrameKind,
    },
    /// A SETTINGS frame's entry count disagrees with its length.
    #[error("SETTINGS frame claims {count} entries in {length} bytes")]
    SettingsCountMismatch {
        /// The entry count.
        count: u32,
        /// The frame length.
        length: usize,
    },
    /// A WINDOW_UPDATE with delta 0 (or, when serializing, above 2^31 - 1).
    #[error("WINDOW_UPDATE delta {delta} outside 1..=2^31-1")]
    InvalidWindowDelta {
        /// The delta.
        delta: u32,
    },
    /// A RST_STREAM with status 0, which the spec declares invalid.
    #[error("RST_STREAM with invalid status 0")]
    InvalidRstStatus,
    /// Serializing: a stream id above 2^31 - 1.
    #[error("stream id {stream_id} exceeds 31 bits")]
    StreamIdOutOfRange {
        /// The stream id.
        stream_id: u32,
    },
    /// Serializing: a priority above 7.
    #[error("priority {priority} outside 0..=7")]
    InvalidPriority {
        /// The priority.
        priority: u8,
    },
    /// Serializing: a payload longer than the 24-bit length field allows.
    #[error("{kind} payload of {length} bytes does not fit a frame")]
    PayloadTooLong {
        /// The frame kind.
        kind: FrameKind,
        /// The payload length.
        length: usize,
    },
    /// The input ended inside a frame.
    #[error("input ended inside a frame ({buffered} bytes buffered, {missing} more expected)")]
    Truncated {
        /// Bytes of the incomplete frame already received.
        buffered: usize,
        /// Bytes still expected, at least.
        missing: usize,
    },
}

fn check_id(stream_id: u32) -> Result<u32, FrameError> {
    if stream_id > MAX_STREAM_ID {
        Err(FrameError::StreamIdOutOfRange { stream_id })
    } else {
        Ok(stream_id)
    }
}

fn put_control_header(
    dst: &mut BytesMut,
    kind: FrameKind,
    flags: u8,
    length: usize,
) -> Result<(), FrameError> {
    if length > MAX_FRAME_PAYLOAD {
        return Err(FrameError::PayloadTooLong { kind, length });
    }
    let ty = kind.control_type().unwrap_or(0);
    dst.put_u16(0x8000 | SPDY_VERSION);
    dst.put_u16(ty);
    // Checked above: length fits 24 bits.
    dst.put_u32((u32::from(flags) << 24) | (length as u32));
    Ok(())
}

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Data(_) => FrameKind::Data,
            Frame::SynStream(_) => FrameKind::SynStream,
            Frame::SynReply(_) => FrameKind::SynReply,
            Frame::RstStream(_) => FrameKind::RstStream,
            Frame::Settings(_) => FrameKind::Settings,
            Frame::Ping(_) => FrameKind::Ping,
            Frame::GoAway(_) => FrameKind::GoAway,
            Frame::Headers(_) => FrameKind::Headers,
            Frame::WindowUpdate(_) => FrameKind::WindowUpdate,
        }
    }

    /// Appends the frame's wire form to `dst`. Fails, writing nothing, on a
    /// value the wire format cannot carry.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        let kind = self.kind();
        match self {
            Frame::Data(f) => {
                let id = check_id(f.stream_id)?;
                if id == 0 {
                    return Err(FrameError::ZeroStreamId { kind });
                }
                let length = f.data.len();
                if length > MAX_FRAME_PAYLOAD {
                    return Err(FrameError::PayloadTooLong { kind, length });
                }
                dst.reserve(FRAME_HEADER_LEN + length);
                dst.put_u32(id);
                let flags = if f.fin { FLAG_FIN } else { 0 };
                dst.put_u32((u32::from(flags) << 24) | (length as u32));
                dst.put_slice(&f.data);
            }
            Frame::SynStream(f) => {
                let id = check_id(f.stream_id)?;
                let assoc = check_id(f.associated_stream_id)?;
                if id == 0 {
                    return Err(FrameError::ZeroStreamId { kind });
                }
                if f.priority > 7 {
                    return Err(FrameError::InvalidPriority {
                        priority: f.priority,
                    });
                }
                let mut flags = 0;
                if f.fin {
                    flags |= FLAG_FIN;
                }
                if f.unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                let length = 10 + f.header_block.len();
                put_control_header(dst, kind, flags, length)?;
                dst.put_u32(id);
                dst.put_u32(assoc);
                dst.put_u8(f.priority << 5);
                dst.put_u8(f.slot);
                dst.put_slice(&f.header_block);
            }
            Frame::SynReply(f) => {
                let id = check_id(f.stream_id)?;
                if id == 0 {
                    return Err(FrameError::ZeroStreamId { kind });
                }
                let flags = if f.fin { FLAG_FIN } else { 0 };
                put_control_header(dst, kind, flags, 4 + f.header_block.len())?;
                dst.put_u32(id);
                dst.put_slice(&f.header_block);
            }
            Frame::RstStream(f) => {
                let id = check_id(f.stream_id)?;
                if id == 0 {
                    return Err(FrameError::ZeroStreamId { kind });
                }
                if f.status.0 == 0 {
                    return Err(FrameError::InvalidRstStatus);
                }
                put_control_header(dst, kind, 0, 8)?;
                dst.put_u32(id);
                dst.put_u32(f.status.0);
            }
            Frame::Settings(f) => {
                let flags = if f.clear {
                    FLAG_SETTINGS_CLEAR_SETTINGS
                } else {
                    0
                };
                let length = f
                    .entries
                    .len()
                    .checked_mul(8)
                    .and_then(|n| n.checked_add(4))
                    .unwrap_or(usize::MAX);
                put_control_header(dst, kind, flags, length)?;
                // length <= 2^24 so the count fits in u32.
                dst.put_u32(f.entries.len() as u32);
                for e in &f.entries {
                    dst.put_u32((u32::from(e.flags) << 24) | (e.id.0 & 0x00ff_ffff));
                    dst.put_u32(e.value);
                }
            }
            Frame::Ping(f) => {
                put_control_header(dst, kind, 0, 4)?;
                dst.put_u32(f.id);
            }
            Frame::GoAway(f) => {
                let id = check_id(f.last_good_stream_id)?;
                put_control_header(dst, kind, 0, 8)?;
                dst.put_u32(id);
                dst.put_u32(f.status.0);
            }
            Frame::Headers(f) => {
                let id = check_id(f.stream_id)?;
                if id == 0 {
                    return Err(FrameError::ZeroStreamId { kind });
                }
                let flags = if f.fin { FLAG_FIN } else { 0 };
                put_control_header(dst, kind, flags, 4 + f.header_block.len())?;
                dst.put_u32(id);
                dst.put_slice(&f.header_block);
            }
            Frame::WindowUpdate(f) => {
                let id = check_id(f.stream_id)?;
                if f.delta == 0 || f.delta > MAX_WINDOW {
                    return Err(FrameError::InvalidWindowDelta { delta: f.delta });
                }
                put_control_header(dst, kind, 0, 8)?;
                dst.put_u32(id);
                dst.put_u32(f.delta);
            }
        }
        Ok(())
    }

    /// The frame's wire form as a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes, FrameError> {
        let mut dst = BytesMut::new();
        self.encode(&mut dst)?;
        Ok(dst.freeze())
    }
}

/// Limits for a [`Decoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest control frame payload accepted. A control frame is buffered
    /// whole before parsing, so this bounds that buffer.
    pub max_control_frame_len: usize,
    /// Largest DATA frame payload accepted. DATA payloads are handed out as
    /// they arrive and never buffered whole, so the protocol maximum
    /// ([`MAX_FRAME_PAYLOAD`]) is a safe default.
    pub max_data_frame_len: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_control_frame_len: DEFAULT_MAX_CONTROL_FRAME_LEN,
            max_data_frame_len: MAX_FRAME_PAYLOAD,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecodeState {
    /// Waiting for a frame header.
    Header,
    /// Inside a DATA frame's payload.
    Data {
        stream_id: u32,
        fin: bool,
        remaining: usize,
    },
    /// Inside an unknown control frame's payload, which is skipped.
    Skip { remaining: usize },
}

/// Incremental frame decoder: feed it bytes as they arrive.
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    state: DecodeState,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        word.copy_from_slice(s);
    }
    u32::from_be_bytes(word)
}

impl Decoder {
    /// A decoder with the given limits.
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            state: DecodeState::Header,
        }
    }

    /// The decoder's limits.
    pub fn config(&self) -> DecoderConfig {
        self.config
    }

    /// Decodes the next frame from the front of `src`, consuming its bytes.
    ///
    /// `Ok(None)` means more input is needed. Control frames are returned
    /// whole. A DATA frame's payload is returned as it arrives: a frame may
    /// come out as several [`DataFrame`] pieces for the same stream, of which
    /// only the last carries `fin`; a frame whose payload is all in `src`
    /// comes out as one piece. Unknown control frame types are skipped, as
    /// the spec requires. After an error the stream is unusable: the caller
    /// must end the session.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                DecodeState::Header => {
                    if src.len() < FRAME_HEADER_LEN {
                        return Ok(None);
                    }
                    let w0 = be_u32(src, 0);
                    let w1 = be_u32(src, 4);
                    let flags = (w1 >> 24) as u8;
                    let length = (w1 & 0x00ff_ffff) as usize;
                    if w0 & 0x8000_0000 != 0 {
                        let version = ((w0 >> 16) & 0x7fff) as u16;
                        if version != SPDY_VERSION {
                            return Err(FrameError::UnsupportedVersion { version });
                        }
                        let Some(kind) = FrameKind::from_control_type((w0 & 0xffff) as u16) else {
                            src.advance(FRAME_HEADER_LEN);
                            self.state = DecodeState::Skip { remaining: length };
                            continue;
                        };
                        if length > self.config.max_control_frame_len {
                            return Err(FrameError::FrameTooLarge {
                                kind,
                                length,
                                max: self.config.max_control_frame_len,
                            });
                        }
                        let total = FRAME_HEADER_LEN + length;
                        if src.len() < total {
                            // Bounded by the limit checked above.
                            src.reserve(total - src.len());
                            return Ok(None);
                        }
                        src.advance(FRAME_HEADER_LEN);
                        let payload = src.split_to(length).freeze();
                        return parse_control(kind, flags, payload).map(Some);
                    }
                    let stream_id = w0 & MAX_STREAM_ID;
                    if length > self.config.max_data_frame_len {
                        return Err(FrameError::FrameTooLarge {
                            kind: FrameKind::Data,
                            length,
                            max: self.config.max_data_frame_len,
                        });
                    }
                    if stream_id == 0 {
                        return Err(FrameError::ZeroStreamId {
                            kind: FrameKind::Data,
                        });
                    }
                    src.advance(FRAME_HEADER_LEN);
                    let fin = flags & FLAG_FIN != 0;
                    if length == 0 {
                        return Ok(Some(Frame::Data(DataFrame {
                            stream_id,
                            fin,
                            data: Bytes::new(),
                        })));
                    }
                    self.state = DecodeState::Data {
                        stream_id,
                        fin,
                        remaining: length,
                    };
                }
                DecodeState::Data {
                    stream_id,
                    fin,
                    remaining,
                } => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(src.len());
                    let data = src.split_to(n).freeze();
                    let left = remaining - n;
                    self.state = if left == 0 {
                        DecodeState::Header
                    } else {
                        DecodeState::Data {
                            stream_id,
                            fin,
                            remaining: left,
                        }
                    };
                    return Ok(Some(Frame::Data(DataFrame {
                        stream_id,
                        fin: fin && left == 0,
                        data,
                    })));
                }
                DecodeState::Skip { remaining } => {
                    let n = remaining.min(src.len());
                    src.advance(n);
                    if remaining == n {
                        self.state = DecodeState::Header;
                    } else {
                        self.state = DecodeState::Skip {
                            remaining: remaining - n,
                        };
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Checks that the input may end here, with `src` holding what
    /// [`Decoder::decode`] left: fails with [`FrameError::Truncated`] inside
    /// a frame.
    pub fn finish(&self, src: &BytesMut) -> Result<(), FrameError> {
        let missing = match self.state {
            DecodeState::Header if src.is_empty() => return Ok(()),
            DecodeState::Header if src.len() < FRAME_HEADER_LEN => FRAME_HEADER_LEN - src.len(),
            DecodeState::Header => {
                let length = (be_u32(src, 4) & 0x00ff_ffff) as usize;
                (FRAME_HEADER_LEN + length).saturating_sub(src.len())
            }
            DecodeState::Data { remaining, .. } | DecodeState::Skip { remaining } => {
                remaining.saturating_sub(src.len())
            }
        };
        Err(FrameError::Truncated {
            buffered: src.len(),
            missing: missing.max(1),
        })
    }
}

fn need(kind: FrameKind, payload: &Bytes, min: usize) -> Result<(), FrameError> {
    if payload.len() < min {
        Err(FrameError::InvalidLength {
            kind,
            length: payload.len(),
        })
    } else {
        Ok(())
    }
}

fn exact(kind: FrameKind, payload: &Bytes, len: usize) -> Result<(), FrameError> {
    if payload.len() != len {
        Err(FrameError::InvalidLength {
            kind,
            length: payload.len(),
        })
    } else {
        Ok(())
    }
}

fn nonzero(kind: FrameKind, stream_id: u32) -> Result<u32, FrameError> {
    if stream_id == 0 {
        Err(FrameError::ZeroStreamId { kind })
    } else {
        Ok(stream_id)
    }
}

/// Parses a control frame's payload; lengths are checked before every read.
fn parse_control(kind: FrameKind, flags: u8, mut p: Bytes) -> Result<Frame, FrameError> {
    let fin = flags & FLAG_FIN != 0;
    Ok(match kind {
        FrameKind::SynStream => {
            need(kind, &p, 10)?;
            let stream_id = nonzero(kind, p.get_u32() & MAX_STREAM_ID)?;
            let associated_stream_id = p.get_u32() & MAX_STREAM_ID;
            let priority = p.get_u8() >> 5;
            let slot = p.get_u8();
            Frame::SynStream(SynStream {
                stream_id,
                associated_stream_id,
                priority,
                slot,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                header_block: p,
            })
        }
        FrameKind::SynReply => {
            need(kind, &p, 4)?;
            let stream_id = nonzero(kind, p.get_u32() & MAX_STREAM_ID)?;
            Frame::SynReply(SynReply {
                stream_id,
                fin,
                header_block: p,
            })
        }
        FrameKind::Headers => {
            need(kind, &p, 4)?;
            let stream_id = nonzero(kind, p.get_u32() & MAX_STREAM_ID)?;
            Frame::Headers(HeadersFrame {
                stream_id,
                fin,
                header_block: p,
            })
        }
        FrameKind::RstStream => {
            exact(kind, &p, 8)?;
            let stream_id = nonzero(kind, p.get_u32() & MAX_STREAM_ID)?;
            let status = p.get_u32();
            if status == 0 {
                return Err(FrameError::InvalidRstStatus);
            }
            Frame::RstStream(RstStream {
                stream_id,
                status: RstStatus(status),
            })
        }
        FrameKind::Settings => {
            need(kind, &p, 4)?;
            let length = p.len();
            let count = p.get_u32();
            if (count as u64) * 8 + 4 != length as u64 {
                return Err(FrameError::SettingsCountMismatch { count, length });
            }
            let mut entries = Vec::with_capacity(p.len() / 8);
            while p.remaining() >= 8 {
                let w = p.get_u32();
                entries.push(Setting {
                    flags: (w >> 24) as u8,
                    id: SettingId(w & 0x00ff_ffff),
                    value: p.get_u32(),
                });
            }
            Frame::Settings(Settings {
                clear: flags & FLAG_SETTINGS_CLEAR_SETTINGS != 0,
                entries,
            })
        }
        FrameKind::Ping => {
            exact(kind, &p, 4)?;
            Frame::Ping(Ping { id: p.get_u32() })
        }
        FrameKind::GoAway => {
            exact(kind, &p, 8)?;
            Frame::GoAway(GoAway {
                last_good_stream_id: p.get_u32() & MAX_STREAM_ID,
                status: GoAwayStatus(p.get_u32()),
            })
        }
        FrameKind::WindowUpdate => {
            exact(kind, &p, 8)?;
            let stream_id = p.get_u32() & MAX_STREAM_ID;
            let delta = p.get_u32() & MAX_WINDOW;
            if delta == 0 {
                return Err(FrameError::InvalidWindowDelta { delta });
            }
            Frame::WindowUpdate(WindowUpdate { stream_id, delta })
        }
        // Not a control frame: parse_control is only called for control
        // kinds; treat a misuse as a malformed frame rather than panicking.
        FrameKind::Data => {
            return Err(FrameError::InvalidLength {
                kind,
                length: p.len(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            out.push(f);
        }
        d.finish(&buf).unwrap();
        out
    }

    fn one(bytes: &[u8]) -> Frame {
        let mut v = decode_all(bytes);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream(SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 7,
                slot: 0,
                fin: false,
                unidirectional: true,
                header_block: Bytes::from_static(b"\x78\xbb\x01\x02"),
            }),
            Frame::SynReply(SynReply {
                stream_id: 3,
                fin: true,
                header_block: Bytes::from_static(b"abc"),
            }),
            Frame::RstStream(RstStream {
                stream_id: 5,
                status: RstStatus::CANCEL,
            }),
            Frame::Settings(Settings {
                clear: true,
                entries: vec![
                    Setting {
                        flags: 0,
                        id: SettingId::INITIAL_WINDOW_SIZE,
                        value: 1 << 20,
                    },
                    Setting {
                        flags: 1,
                        id: SettingId::MAX_CONCURRENT_STREAMS,
                        value: 100,
                    },
                ],
            }),
            Frame::Settings(Settings::default()),
            Frame::Ping(Ping { id: 0xffff_fffe }),
            Frame::GoAway(GoAway {
                last_good_stream_id: 7,
                status: GoAwayStatus::PROTOCOL_ERROR,
            }),
            Frame::Headers(HeadersFrame {
                stream_id: 9,
                fin: true,
                header_block: Bytes::new(),
            }),
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 0,
                delta: MAX_WINDOW,
            }),
            Frame::Data(DataFrame {
                stream_id: MAX_STREAM_ID,
                fin: true,
                data: Bytes::from_static(b"hello"),
            }),
            Frame::Data(DataFrame {
                stream_id: 2,
                fin: true,
                data: Bytes::new(),
            }),
        ]
    }

    #[test]
    fn round_trip_every_frame() {
        for f in all_frames() {
            let bytes = f.to_bytes().unwrap();
            assert_eq!(one(&bytes), f);
        }
    }

    #[test]
    fn syn_stream_layout_matches_spec() {
        let f = Frame::SynStream(SynStream {
            stream_id: 1,
            associated_stream_id: 0,
            priority: 2,
            slot: 0,
            fin: true,
            unidirectional: false,
            header_block: Bytes::from_static(&[0xaa, 0xbb]),
        });
        let bytes = f.to_bytes().unwrap();
        assert_eq!(
            &bytes[..],
            &[
                0x80, 0x03, 0x00, 0x01, // C=1, version 3, type 1
                0x01, 0x00, 0x00, 0x0c, // FLAG_FIN, length 10 + 2
                0x00, 0x00, 0x00, 0x01, // stream id 1
                0x00, 0x00, 0x00, 0x00, // associated-to 0
                0x40, 0x00, // priority 2 << 5, slot 0
                0xaa, 0xbb,
            ]
        );
    }

    #[test]
    fn data_layout_matches_spec() {
        let f = Frame::Data(DataFrame {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"hi"),
        });
        assert_eq!(
            &f.to_bytes().unwrap()[..],
            &[0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02, b'h', b'i']
        );
    }

    #[test]
    fn fixed_control_layouts_match_spec() {
        let rst = Frame::RstStream(RstStream {
            stream_id: 1,
            status: RstStatus::FLOW_CONTROL_ERROR,
        });
        assert_eq!(
            &rst.to_bytes().unwrap()[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 7]
        );
        let ping = Frame::Ping(Ping { id: 2 });
        assert_eq!(
            &ping.to_bytes().unwrap()[..],
            &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2]
        );
        let goaway = Frame::GoAway(GoAway {
            last_good_stream_id: 5,
            status: GoAwayStatus::OK,
        });
        assert_eq!(
            &goaway.to_bytes().unwrap()[..],
            &[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0]
        );
        let wu = Frame::WindowUpdate(WindowUpdate {
            stream_id: 0,
            delta: 0x10000,
        });
        assert_eq!(
            &wu.to_bytes().unwrap()[..],
            &[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        let settings = Frame::Settings(Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: SettingId::INITIAL_WINDOW_SIZE,
                value: 0x0001_0000,
            }],
        });
        assert_eq!(
            &settings.to_bytes().unwrap()[..],
            &[
                0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0
            ]
        );
        let reply = Frame::SynReply(SynReply {
            stream_id: 1,
            fin: false,
            header_block: Bytes::from_static(b"x"),
        });
        assert_eq!(
            &reply.to_bytes().unwrap()[..],
            &[0x80, 3, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, b'x']
        );
    }

    #[test]
    fn reserved_bits_are_ignored() {
        // Stream id with the reserved high bit set in SYN_REPLY.
        let f = one(&[0x80, 3, 0, 2, 0, 0, 0, 4, 0x80, 0, 0, 1]);
        assert_eq!(
            f,
            Frame::SynReply(SynReply {
                stream_id: 1,
                fin: false,
                header_block: Bytes::new()
            })
        );
    }

    #[test]
    fn incremental_decoding_split_at_every_byte() {
        let mut stream = BytesMut::new();
        let frames = all_frames();
        for f in &frames {
            f.encode(&mut stream).unwrap();
        }
        // An unknown control frame type in the middle is skipped.
        let unknown = [0x80, 3, 0, 10, 0, 0, 0, 3, 1, 2, 3];
        let mut with_unknown = BytesMut::from(&unknown[..]);
        with_unknown.extend_from_slice(&stream);
        let bytes = with_unknown.freeze();

        for split in 0..=bytes.len() {
            let mut d = Decoder::default();
            let mut buf = BytesMut::new();
            let mut out: Vec<Frame> = Vec::new();
            let feed = |buf: &mut BytesMut, d: &mut Decoder, out: &mut Vec<Frame>| {
                while let Some(f) = d.decode(buf).unwrap() {
                    // Merge DATA pieces back into whole frames.
                    if let (Frame::Data(piece), Some(Frame::Data(prev))) = (&f, out.last_mut())
                        && prev.stream_id == piece.stream_id
                        && !prev.fin
                        && !piece.data.is_empty()
                    {
                        let mut merged = BytesMut::from(&prev.data[..]);
                        merged.extend_from_slice(&piece.data);
                        prev.data = merged.freeze();
                        prev.fin = piece.fin;
                        continue;
                    }
                    out.push(f);
                }
            };
            buf.extend_from_slice(&bytes[..split]);
            feed(&mut buf, &mut d, &mut out);
            buf.extend_from_slice(&bytes[split..]);
            feed(&mut buf, &mut d, &mut out);
            d.finish(&buf).unwrap();
            assert_eq!(out, frames, "split at {split}");
        }

        // One byte at a time.
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut controls = 0;
        for b in bytes.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                match f {
                    Frame::Data(p) => data.extend_from_slice(&p.data),
                    _ => controls += 1,
                }
            }
        }
        assert_eq!(controls, frames.len() - 2);
        assert_eq!(data, b"hello");
    }

    #[test]
    fn bad_version_is_rejected() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::UnsupportedVersion { version: 2 })
        );
    }

    #[test]
    fn truncated_input_is_reported() {
        let bytes = Frame::Ping(Ping { id: 1 }).to_bytes().unwrap();
        for cut in 1..bytes.len() {
            let mut d = Decoder::default();
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(d.decode(&mut buf), Ok(None));
            assert!(matches!(d.finish(&buf), Err(FrameError::Truncated { .. })));
        }
        // Inside a DATA payload.
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 0, 0, 9, b'a'][..]);
        assert!(matches!(d.decode(&mut buf), Ok(Some(Frame::Data(_)))));
        assert_eq!(
            d.finish(&buf),
            Err(FrameError::Truncated {
                buffered: 0,
                missing: 8
            })
        );
    }

    #[test]
    fn oversized_frames_are_rejected_before_buffering() {
        let mut d = Decoder::new(DecoderConfig {
            max_control_frame_len: 1024,
            max_data_frame_len: 4096,
        });
        // A SYN_STREAM claiming 16 MiB - 1: rejected from the header alone.
        let mut buf = BytesMut::from(&[0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::FrameTooLarge {
                kind: FrameKind::SynStream,
                length: MAX_FRAME_PAYLOAD,
                max: 1024
            })
        );
        assert!(buf.capacity() < 4096);
        let mut d = Decoder::new(DecoderConfig {
            max_control_frame_len: 1024,
            max_data_frame_len: 4096,
        });
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 0, 0x10, 0x01][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(FrameError::FrameTooLarge {
                kind: FrameKind::Data,
                length: 4097,
                ..
            })
        ));
    }

    #[test]
    fn malformed_control_frames_are_rejected() {
        let cases: &[(&[u8], FrameError)] = &[
            (
                &[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1],
                FrameError::InvalidLength {
                    kind: FrameKind::RstStream,
                    length: 4,
                },
            ),
            (
                &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
                FrameError::InvalidRstStatus,
            ),
            (
                &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
                FrameError::ZeroStreamId {
                    kind: FrameKind::RstStream,
                },
            ),
            (
                &[0x80, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0],
                FrameError::InvalidLength {
                    kind: FrameKind::SynStream,
                    length: 6,
                },
            ),
            (
                &[0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                FrameError::ZeroStreamId {
                    kind: FrameKind::SynStream,
                },
            ),
            (
                &[0x80, 3, 0, 4, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
                FrameError::SettingsCountMismatch {
                    count: u32::MAX,
                    length: 4,
                },
            ),
            (
                &[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0x80, 0, 0, 0],
                FrameError::InvalidWindowDelta { delta: 0 },
            ),
            (
                &[0x80, 3, 0, 6, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
                FrameError::InvalidLength {
                    kind: FrameKind::Ping,
                    length: 8,
                },
            ),
            (
                &[0x80, 3, 0, 7, 0, 0, 0, 4, 0, 0, 0, 1],
                FrameError::InvalidLength {
                    kind: FrameKind::GoAway,
                    length: 4,
                },
            ),
            (
                &[0, 0, 0, 0, 0, 0, 0, 0],
                FrameError::ZeroStreamId {
                    kind: FrameKind::Data,
                },
            ),
        ];
        for (bytes, err) in cases {
            let mut d = Decoder::default();
            let mut buf = BytesMut::from(*bytes);
            assert_eq!(d.decode(&mut buf).as_ref(), Err(err), "{bytes:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random walk over inputs.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            let n = (x % 64) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            // Bias towards control frames of version 3.
            if bytes.len() >= 2 && x.is_multiple_of(2) {
                bytes[0] = 0x80;
                bytes[1] = 3;
            }
            let mut d = Decoder::default();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
            let _ = d.finish(&buf);
        }
    }

    #[test]
    fn encode_rejects_unrepresentable_values() {
        let too_long = Frame::Data(DataFrame {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0; MAX_FRAME_PAYLOAD + 1]),
        });
        assert!(matches!(
            too_long.to_bytes(),
            Err(FrameError::PayloadTooLong { .. })
        ));
        let bad_id = Frame::Ping(Ping { id: 1 });
        assert!(bad_id.to_bytes().is_ok());
        let bad = Frame::RstStream(RstStream {
            stream_id: 0x8000_0000,
            status: RstStatus::CANCEL,
        });
        assert!(matches!(
            bad.to_bytes(),
            Err(FrameError::StreamIdOutOfRange { .. })
        ));
        let bad = Frame::WindowUpdate(WindowUpdate {
            stream_id: 1,
            delta: 0,
        });
        assert!(matches!(
            bad.to_bytes(),
            Err(FrameError::InvalidWindowDelta { .. })
        ));
    }
}
