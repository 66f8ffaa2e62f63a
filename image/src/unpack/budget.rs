//! A cap on what the tar crate may read between two entries.
//!
//! The tar crate reads PAX extended headers and GNU long names/link names
//! into memory whole, with no limit: a small compressed layer could declare
//! a multi-gigabyte PAX header and make berthd allocate it. Between two
//! entries the stream holds only headers, those extension bodies, and the
//! data of entries we did not read (directories, links and whiteouts carry
//! none in real layers), so a few MiB is generous. While an entry's data is
//! streamed to its file there is no limit.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Bytes the tar crate may consume to produce the next entry.
pub(crate) const METADATA_LIMIT: u64 = 16 * 1024 * 1024;

/// Shared switch between the capped and uncapped states.
#[derive(Debug, Clone, Default)]
pub(crate) struct Budget(Rc<Cell<Option<u64>>>);

impl Budget {
    /// Caps reads at [`METADATA_LIMIT`] from now on (before asking for the
    /// next entry).
    pub(crate) fn cap(&self) {
        self.0.set(Some(METADATA_LIMIT));
    }

    /// Lifts the cap (while an entry is applied and its data streamed).
    pub(crate) fn lift(&self) {
        self.0.set(None);
    }
}

/// The layer stream, reading within a [`Budget`].
#[derive(Debug)]
pub(crate) struct Budgeted<R> {
    inner: R,
    budget: Budget,
}

impl<R> Budgeted<R> {
    pub(crate) fn new(inner: R, budget: Budget) -> Self {
        Self { inner, budget }
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.budget.0.get() else {
            return self.inner.read(buf);
        };
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than {} MiB of headers (PAX, long names) or skipped data before one entry",
                    METADATA_LIMIT >> 20
                ),
            ));
        }
        let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.budget.0.set(Some(left - n as u64));
        Ok(n)
    }
}
