//! The blocking half of a layer pull: bytes in (from the network or a local
//! blob), verified blob and unpacked snapshot out, in one pass. The
//! compressed stream is teed into the content store while it is
//! decompressed and unpacked, so nothing is buffered whole and nothing is
//! read twice.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::content::{ContentStore, Ingest};
use crate::digest::Digest;
use crate::error::{ImageError, io_error};
use crate::manifest::Compression;
use crate::meta::{LayerRecord, SnapshotRecord};
use crate::snapshot::Snapshots;
use crate::unpack::{UnpackOptions, unpack_layer};

/// Reads chunks sent by the async side of the pull.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    /// Set when the network side failed, so the error is reported as such
    /// and not as a broken layer.
    pub network_error: Option<String>,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: Bytes::new(),
            network_error: None,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    self.network_error = Some(e.to_string());
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// Copies what is read into the blob being stored.
struct Tee<'a, R> {
    inner: &'a mut R,
    sink: Option<Ingest>,
    hasher: Sha256,
    read: u64,
    /// Why writing the blob failed. The failure reaches the unpacker as a
    /// read error, which it would report as a corrupt stream; this keeps the
    /// real cause (a full disk, typically) for the caller.
    sink_failed: Option<io::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if let Some(s) = &mut self.sink
            && let Err(e) = s.write_all(&buf[..n])
        {
            let kept = match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            };
            self.sink_failed = Some(kept);
            // Drops the partial blob now: frees the space it held.
            self.sink = None;
            return Err(e);
        }
        Ok(n)
    }
}

/// Hashes what passes through (the uncompressed tar: the diff ID).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What the layer pipeline needs (owned: it runs on a blocking thread).
#[derive(Debug)]
pub struct LayerJob {
    pub content: Arc<ContentStore>,
    pub snapshots: Arc<Snapshots>,
    pub layer: LayerRecord,
    pub parent: Option<Digest>,
    pub compression: Compression,
    /// Store the compressed bytes as a blob (false when reading one).
    pub write_blob: bool,
}

fn decompressor<'a, R: Read + 'a>(c: Compression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// Runs the pipeline: verify, store, unpack, commit. On any error nothing
/// is kept (no blob, no snapshot).
pub fn apply<R: Read>(job: &LayerJob, input: &mut R) -> Result<SnapshotRecord, ImageError> {
    let l = &job.layer;
    let what = format!("layer {}", l.digest);
    let ingest = if job.write_blob {
        Some(job.content.ingest(l.digest, Some(l.size))?)
    } else {
        None
    };
    let pending = job
        .snapshots
        .prepare(&l.chain_id)
        .map_err(|e| io_error(&what, &e))?;
    let mut tee = Tee {
        inner: input,
        sink: ingest,
        hasher: Sha256::new(),
        read: 0,
        sink_failed: None,
    };
    let (unpacked, diff_id) = {
        let decoded = decompressor(job.compression, &mut tee).map_err(|e| io_error(&what, &e))?;
        let mut hashing = Hashing {
            inner: decoded,
            hasher: Sha256::new(),
        };
        let opts = UnpackOptions::default();
        let unpacked = unpack_layer(&mut hashing, &pending.fs(), &opts).and_then(|stats| {
            // The tar's end-of-archive padding is part of the diff ID.
            io::copy(&mut hashing, &mut io::sink())
                .map(|_| stats)
                .map_err(crate::unpack::UnpackError::Tar)
        });
        (unpacked, Digest::from_hasher(hashing.hasher))
    };
    // Read what the decompressor left (trailing bytes) so the blob digest
    // covers the whole stream, also after a failed unpack: a corrupt
    // download must be reported as such, not as a broken layer.
    let drained = io::copy(&mut tee, &mut io::sink());
    if let Some(e) = tee.sink_failed.take() {
        return Err(io_error(&format!("{what}: store blob"), &e));
    }
    let blob_digest = Digest::from_hasher(std::mem::take(&mut tee.hasher));
    let blob_ok = drained.is_ok() && blob_digest == l.digest && tee.read == l.size;
    if !blob_ok && drained.is_ok() {
        return Err(ImageError::DigestMismatch {
            what: "layer",
            digest: l.digest,
            detail: format!("got {blob_digest}, {} bytes of {}", tee.read, l.size),
        });
    }
    let stats = unpacked.map_err(|source| match &source {
        crate::unpack::UnpackError::Io { source: io, .. }
            if matches!(io.raw_os_error(), Some(28) | Some(122)) =>
        {
            io_error(&what, io)
        }
        _ => ImageError::BadLayer {
            digest: l.digest,
            source,
        },
    })?;
    drained.map_err(|e| io_error(&what, &e))?;
    if diff_id != l.diff_id {
        return Err(ImageError::DigestMismatch {
            what: "uncompressed layer",
            digest: l.diff_id,
            detail: format!("got {diff_id}"),
        });
    }
    if let Some(ingest) = tee.sink.take() {
        ingest.commit()?;
    }
    job.snapshots
        .commit(pending, &l.chain_id)
        .map_err(|e| io_error(&what, &e))?;
    Ok(SnapshotRecord {
        chain_id: l.chain_id,
        parent: job.parent,
        diff_id: l.diff_id,
        bytes: stats.bytes,
        inodes: stats.entries,
    })
}
