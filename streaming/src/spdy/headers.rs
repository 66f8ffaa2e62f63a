//! SPDY/3 name/value header blocks (spec section 2.6.10).
//!
//! Uncompressed, a block is:
//!
//! ```text
//! +------------------------------------+
//! | Number of Name/Value pairs (int32) |
//! +------------------------------------+
//! |     Length of name (int32)         |
//! +------------------------------------+
//! |           Name (string)            |
//! +------------------------------------+
//! |     Length of value  (int32)       |
//! +------------------------------------+
//! |          Value   (string)          |
//! +------------------------------------+
//! |           (repeats)                |
//! ```
//!
//! Names are lowercase; several values of one name are joined with NUL
//! bytes. Blocks are zlib-compressed with the SPDY/3 dictionary
//! ([`DICTIONARY`]), one stream of compression per direction of a session
//! (every block of a direction continues the same zlib stream), each block
//! ending with a SYNC_FLUSH.

use bytes::{BufMut, Bytes};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Default limit for a decompressed header block.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 64 * 1024;

/// Length of the SPDY/3 zlib dictionary.
pub const DICTIONARY_LEN: usize = 1423;

/// Adler-32 of [`DICTIONARY`]: the DICTID in every SPDY/3 zlib stream
/// header.
pub const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

/// The dictionary's length-prefixed words (section 2.6.10.1).
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's unprefixed tail: status codes, reason phrases, dates and
/// common values.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412",
    "413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
    "application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

const fn build_dictionary() -> [u8; DICTIONARY_LEN] {
    let mut out = [0u8; DICTIONARY_LEN];
    let mut pos = 0;
    let mut w = 0;
    while w < DICTIONARY_WORDS.len() {
        let word = DICTIONARY_WORDS[w].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut i = 0;
        while i < 4 {
            out[pos] = len[i];
            pos += 1;
            i += 1;
        }
        i = 0;
        while i < word.len() {
            out[pos] = word[i];
            pos += 1;
            i += 1;
        }
        w += 1;
    }
    let tail = DICTIONARY_TAIL.as_bytes();
    let mut i = 0;
    while i < tail.len() {
        out[pos] = tail[i];
        pos += 1;
        i += 1;
    }
    // Evaluated at compile time: a wrong length fails the build.
    assert!(pos == DICTIONARY_LEN);
    out
}

/// The SPDY/3 zlib dictionary (section 2.6.10.1), 1423 bytes.
pub static DICTIONARY: [u8; DICTIONARY_LEN] = build_dictionary();

/// A header block that cannot be compressed, decompressed or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// zlib failed to compress.
    #[error("header compression failed: {0}")]
    Compress(String),
    /// The compressed bytes are not a valid continuation of the direction's
    /// zlib stream.
    #[error("header decompression failed: {0}")]
    Decompress(String),
    /// The zlib stream asks for a preset dictionary other than SPDY/3's.
    #[error("header block asks for zlib dictionary {found:#010x}, not SPDY/3's")]
    WrongDictionary {
        /// The Adler-32 id the stream names.
        found: u32,
    },
    /// The decompressed block exceeds the limit (a compression bomb, or a
    /// peer sending more headers than allowed).
    #[error("decompressed header block exceeds {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The decompressed block ends inside a count, length or string.
    #[error("header block truncated")]
    Truncated,
    /// The decompressed block has bytes after its last pair.
    #[error("{0} stray bytes after the last header pair")]
    TrailingBytes(usize),
    /// A header name is empty.
    #[error("empty header name")]
    EmptyName,
    /// A header name contains a NUL byte.
    #[error("header name {0:?} contains NUL")]
    NulInName(String),
    /// A name or value is not UTF-8.
    #[error("header name or value is not UTF-8")]
    NotUtf8,
}

/// Header names and their values, in order; names are lowercase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<String>)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value for `name` (lowercased), after any existing ones.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl Into<String>) {
        let name = name.as_ref().to_ascii_lowercase();
        let value = value.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => self.entries.push((name, vec![value])),
        }
    }

    /// Builder form of [`Headers::insert`].
    pub fn with(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// The first value of `name` (matched case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(String::as_str)
    }

    /// Every value of `name` (matched case-insensitively).
    pub fn get_all(&self, name: &str) -> &[String] {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The names and their values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The uncompressed block. Fails on a name the format cannot carry.
    pub fn to_block(&self) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::new();
        put_len(&mut out, self.entries.len())?;
        for (name, values) in &self.entries {
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            if name.contains('\0') {
                return Err(HeaderError::NulInName(name.clone()));
            }
            put_len(&mut out, name.len())?;
            out.extend_from_slice(name.as_bytes());
            let value = values.join("\0");
            put_len(&mut out, value.len())?;
            out.extend_from_slice(value.as_bytes());
        }
        Ok(out)
    }

    /// Parses an uncompressed block. Names are lowercased; a repeated name's
    /// values are merged.
    pub fn from_block(block: &[u8]) -> Result<Self, HeaderError> {
        let mut rest = block;
        let count = take_u32(&mut rest)?;
        // Every pair takes at least 8 bytes: a larger count is a lie, and
        // must not size an allocation.
        if u64::from(count) * 8 > rest.len() as u64 {
            return Err(HeaderError::Truncated);
        }
        let mut headers = Headers::new();
        for _ in 0..count {
            let name = take_str(&mut rest)?;
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            if name.contains('\0') {
                return Err(HeaderError::NulInName(name.to_owned()));
            }
            let value = take_str(&mut rest)?;
            for v in value.split('\0') {
                headers.insert(name, v);
            }
        }
        if !rest.is_empty() {
            return Err(HeaderError::TrailingBytes(rest.len()));
        }
        Ok(headers)
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k, v);
        }
        h
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), HeaderError> {
    let len = u32::try_from(len).map_err(|_| HeaderError::TooLarge {
        limit: u32::MAX as usize,
    })?;
    out.put_u32(len);
    Ok(())
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, tail) = rest.split_at_checked(4).ok_or(HeaderError::Truncated)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(head);
    *rest = tail;
    Ok(u32::from_be_bytes(word))
}

fn take_str<'a>(rest: &mut &'a [u8]) -> Result<&'a str, HeaderError> {
    let len = take_u32(rest)? as usize;
    let (head, tail) = rest.split_at_checked(len).ok_or(HeaderError::Truncated)?;
    *rest = tail;
    std::str::from_utf8(head).map_err(|_| HeaderError::NotUtf8)
}

/// Compresses the header blocks of one direction of a session.
pub struct HeaderEncoder {
    z: Compress,
}

impl std::fmt::Debug for HeaderEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderEncoder")
            .field("total_in", &self.z.total_in())
            .finish()
    }
}

impl HeaderEncoder {
    /// A fresh compression context primed with [`DICTIONARY`].
    pub fn new() -> Result<Self, HeaderError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY)
            .map_err(|e| HeaderError::Compress(e.to_string()))?;
        Ok(Self { z })
    }

    /// Serializes and compresses `headers`, continuing this direction's
    /// zlib stream and ending with a sync flush.
    pub fn encode(&mut self, headers: &Headers) -> Result<Bytes, HeaderError> {
        let raw = headers.to_block()?;
        let mut out: Vec<u8> = Vec::with_capacity(raw.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let input = raw.get(consumed..).unwrap_or_default();
            let before = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Compress(e.to_string()))?;
            consumed += (self.z.total_in() - before) as usize;
            // A sync flush is complete once zlib stops with output space to
            // spare.
            if consumed >= raw.len() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(Bytes::from(out))
    }
}

/// Decompresses the header blocks of one direction of a session, with a
/// bound on each block's decompressed size.
pub struct HeaderDecoder {
    z: Decompress,
    max: usize,
}

impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field("total_in", &self.z.total_in())
            .field("max", &self.max)
            .finish()
    }
}

impl HeaderDecoder {
    /// A fresh decompression context; each block may decompress to at most
    /// `max_block` bytes.
    pub fn new(max_block: usize) -> Self {
        Self {
            z: Decompress::new(true),
            max: max_block,
        }
    }

    /// Decompresses and parses one block, continuing this direction's zlib
    /// stream. After an error the context is out of step with the peer's:
    /// the session must end.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.decompress(block)?;
        Headers::from_block(&raw)
    }

    fn decompress(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let limit = self.max;
        let mut out: Vec<u8> = Vec::with_capacity(
            block
                .len()
                .saturating_mul(4)
                .clamp(256, limit.saturating_add(1)),
        );
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                // Never grow beyond limit + 1: one byte past the limit
                // proves the block too large.
                let room = limit.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(HeaderError::TooLarge { limit });
                }
                out.reserve_exact(out.capacity().max(256).min(room));
            }
            let input = block.get(consumed..).unwrap_or_default();
            let (in_before, out_before) = (self.z.total_in(), out.len());
            let result = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            consumed += (self.z.total_in() - in_before) as usize;
            if out.len() > limit {
                return Err(HeaderError::TooLarge { limit });
            }
            match result {
                Ok(Status::StreamEnd) => {
                    // The peer ended its zlib stream: only an empty tail may
                    // follow.
                    if consumed < block.len() {
                        return Err(HeaderError::Decompress(
                            "data after the end of the zlib stream".into(),
                        ));
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(id) if id == DICTIONARY_ID => {
                        self.z
                            .set_dictionary(&DICTIONARY)
                            .map_err(|e| HeaderError::Decompress(e.to_string()))?;
                        continue;
                    }
                    Some(found) => return Err(HeaderError::WrongDictionary { found }),
                    None => return Err(HeaderError::Decompress(e.to_string())),
                },
            }
            let full = out.len() == out.capacity();
            if consumed >= block.len() && !full {
                break;
            }
            if !full && self.z.total_in() == in_before && out.len() == out_before {
                // No progress with input left and room to write: corrupt.
                return Err(HeaderError::Decompress("zlib made no progress".into()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Adler-32 (RFC 1950), to check the dictionary independently of zlib.
    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_the_spec_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
        // The DICTID SPDY/3 implementations put in their zlib headers
        // (78 bb e3 c6 a7 c2 on the wire).
        assert_eq!(adler32(&DICTIONARY), DICTIONARY_ID);
    }

    #[test]
    fn decodes_blocks_compressed_by_c_zlib() {
        // Three blocks compressed with one C zlib context (Python's zlib,
        // zdict = the SPDY/3 dictionary, Z_SYNC_FLUSH after each).
        let b1 = hex("78bbe3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff");
        let b2 = hex("c22a054ccc29f9a52500000000ffff");
        let b3 = hex("02b21800000000ffff");
        let mut d = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
        assert_eq!(
            d.decode(&b1).unwrap(),
            Headers::new().with("streamtype", "error")
        );
        assert_eq!(
            d.decode(&b2).unwrap(),
            Headers::new().with("streamtype", "stdout")
        );
        assert_eq!(d.decode(&b3).unwrap(), Headers::new());
    }

    #[test]
    fn encoder_names_the_spdy_dictionary() {
        let mut e = HeaderEncoder::new().unwrap();
        let block = e.encode(&Headers::new().with("host", "x")).unwrap();
        assert_eq!(&block[..6], &[0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
        assert!(block.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }

    #[test]
    fn round_trip_across_blocks_with_one_context() {
        let mut e = HeaderEncoder::new().unwrap();
        let mut d = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
        let blocks = [
            Headers::new()
                .with("streamtype", "error")
                .with("Port", "80")
                .with("requestid", "0"),
            Headers::new()
                .with("streamtype", "data")
                .with("port", "80")
                .with("requestid", "0"),
            Headers::new(),
            Headers::new().with("x-multi", "a").with("x-multi", "b"),
            Headers::new().with("big", "v".repeat(20_000)),
        ];
        let mut total = 0;
        for h in &blocks {
            let c = e.encode(h).unwrap();
            total += c.len();
            assert_eq!(&d.decode(&c).unwrap(), h);
        }
        // The shared context makes repeats cheap.
        assert!(total < 2000, "{total}");
        assert_eq!(blocks[0].get("port"), Some("80"));
        assert_eq!(blocks[3].get_all("X-Multi"), ["a", "b"]);
    }

    #[test]
    fn multiple_values_are_nul_separated() {
        let h = Headers::new().with("a", "1").with("a", "2");
        let raw = h.to_block().unwrap();
        assert_eq!(raw, b"\0\0\0\x01\0\0\0\x01a\0\0\0\x031\x002");
        assert_eq!(Headers::from_block(&raw).unwrap(), h);
    }

    #[test]
    fn zip_bomb_is_rejected_without_unbounded_allocation() {
        // 16 MiB of zeros compresses to ~16 KiB.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(&DICTIONARY).unwrap();
        let zeros = vec![0u8; 16 << 20];
        let mut out = Vec::with_capacity(1 << 20);
        z.compress_vec(&zeros, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.len() < 100_000);
        let mut d = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
        assert_eq!(
            d.decode(&out),
            Err(HeaderError::TooLarge {
                limit: DEFAULT_MAX_HEADER_BLOCK
            })
        );
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert_eq!(Headers::from_block(b"\0\0"), Err(HeaderError::Truncated));
        // A count far larger than the bytes.
        assert_eq!(
            Headers::from_block(b"\xff\xff\xff\xff\0\0\0\0"),
            Err(HeaderError::Truncated)
        );
        assert_eq!(
            Headers::from_block(b"\0\0\0\x01\0\0\0\x00\0\0\0\0"),
            Err(HeaderError::EmptyName)
        );
        assert_eq!(
            Headers::from_block(b"\0\0\0\x01\0\0\0\x01a\0\0\x10\0"),
            Err(HeaderError::Truncated)
        );
        assert_eq!(
            Headers::from_block(b"\0\0\0\0x"),
            Err(HeaderError::TrailingBytes(1))
        );
        let mut d = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
        assert!(matches!(
            d.decode(b"not zlib at all"),
            Err(HeaderError::Decompress(_))
        ));
        // A zlib stream with a different dictionary.
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(b"other").unwrap();
        let mut out = Vec::with_capacity(256);
        z.compress_vec(b"\0\0\0\0", &mut out, FlushCompress::Sync)
            .unwrap();
        let mut d = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
        assert!(matches!(
            d.decode(&out),
            Err(HeaderError::WrongDictionary { .. })
        ));
        // Uppercase names from a sloppy peer are lowercased.
        let h = Headers::from_block(b"\0\0\0\x01\0\0\0\x01A\0\0\0\x01b").unwrap();
        assert_eq!(h.iter().next().unwrap().0, "a");
    }
}
