//! The CRI log format, as containerd's CRI plugin writes it and kubelet
//! reads it: `<RFC3339Nano UTC> <stdout|stderr> <P|F> <content>\n`.
//!
//! Behaviour (containerd `pkg/cri/io/logger.go`):
//! - a line's content is the bytes before its `\n`, minus one `\r` right
//!   before that `\n` (a `\r\n` ending is dropped whole);
//! - content longer than [`MAX_LINE`] is cut into `P` chunks of exactly
//!   [`MAX_LINE`] bytes followed by an `F` chunk with the rest (1 to
//!   [`MAX_LINE`] bytes); content of exactly [`MAX_LINE`] bytes is one `F`;
//! - output still without `\n` when the stream ends is written as `P`
//!   (chunked the same way), so kubelet reproduces it without adding a
//!   newline (it strips only the `\n` the log file adds after `P` lines).
//!
//! Timestamps have a fixed 9 fractional digits (kubelet's own
//! `RFC3339NanoFixed`; its reader accepts any precision).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest content of one log line; longer lines become `P` chunks
/// (containerd's default `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;
/// Length of a formatted timestamp: `2006-01-02T15:04:05.000000000Z`.
pub const TS_LEN: usize = 30;
/// Formatted lines are collected up to about this many bytes per write.
pub const FLUSH_AT: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `P`: a chunk of a longer line, or output left without a newline.
    Partial,
    /// `F`: the (last chunk of a) line that ended with a newline.
    Full,
}

impl Tag {
    fn byte(self) -> u8 {
        match self {
            Tag::Partial => b'P',
            Tag::Full => b'F',
        }
    }
}

/// The current time as a CRI log timestamp.
pub fn now() -> [u8; TS_LEN] {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_ts(d.as_secs() as i64, d.subsec_nanos())
}

/// `secs` since the epoch plus `nanos` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn format_ts(secs: i64, nanos: u32) -> [u8; TS_LEN] {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put(&mut out[0..4], y.clamp(0, 9999) as u64);
    put(&mut out[5..7], u64::from(m));
    put(&mut out[8..10], u64::from(d));
    put(&mut out[11..13], (sod / 3600) as u64);
    put(&mut out[14..16], (sod / 60 % 60) as u64);
    put(&mut out[17..19], (sod % 60) as u64);
    put(&mut out[20..29], u64::from(nanos.min(999_999_999)));
    out
}

/// Writes `v` as zero-padded decimal filling `dst`.
fn put(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends one formatted log line to `out`.
pub fn format_line(out: &mut Vec<u8>, ts: &[u8], stream: &str, tag: Tag, content: &[u8]) {
    out.reserve(ts.len() + stream.len() + 4 + content.len());
    out.extend_from_slice(ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.push(tag.byte());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Splits one stream's output into CRI log chunks. Holds the current
/// unterminated line (at most [`MAX_LINE`] + 1 bytes: one `\r` that may
/// turn out to end a `\r\n`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`; `emit` gets every complete chunk in order.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.end_line(&data[..i], emit);
            data = &data[i + 1..];
        }
        if !data.is_empty() {
            self.append(data, emit);
        }
    }

    /// The stream ended: what is left is written as `P`.
    pub fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        for chunk in self.pending.chunks(MAX_LINE) {
            emit(Tag::Partial, chunk);
        }
        self.pending.clear();
    }

    /// Whether an unterminated line is held.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// `seg` (no `\n`) followed by the `\n` that ends the line.
    fn end_line(&mut self, seg: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        if self.pending.is_empty() {
            // Fast path: the whole line is in `seg`, no copy.
            let mut c = seg.strip_suffix(b"\r").unwrap_or(seg);
            while c.len() > MAX_LINE {
                emit(Tag::Partial, &c[..MAX_LINE]);
                c = &c[MAX_LINE..];
            }
            emit(Tag::Full, c);
            return;
        }
        self.append(seg, emit);
        let p = &self.pending;
        let c = p.strip_suffix(b"\r").unwrap_or(p);
        emit(Tag::Full, c);
        self.pending.clear();
    }

    /// Adds bytes of an unterminated line, emitting `P` chunks once more
    /// than [`MAX_LINE`] content bytes are known.
    fn append(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(MAX_LINE + 1);
        }
        loop {
            let take = (MAX_LINE + 1 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            // MAX_LINE + 1 bytes: the first MAX_LINE are a P chunk, unless
            // the extra byte is a `\r` that the next byte may show to be
            // part of a `\r\n` line end.
            if self.pending.len() == MAX_LINE + 1
                && (self.pending[MAX_LINE] != b'\r' || !data.is_empty())
            {
                emit(Tag::Partial, &self.pending[..MAX_LINE]);
                let last = self.pending[MAX_LINE];
                self.pending.clear();
                self.pending.push(last);
            }
            if data.is_empty() {
                return;
            }
        }
    }
}

/// A container's CRI log file, opened `O_WRONLY|O_APPEND|O_CREAT`, 0640.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// The file's length after the last whole write: where a failed write
    /// is cut back to.
    len: u64,
    /// A write failed; logged once until the next success.
    failing: bool,
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let file = open_log(path)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            len: file.metadata()?.len(),
            file,
            failing: false,
        })
    }

    /// Closes and reopens the file at its path (after a rename by log
    /// rotation, this creates a new file).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_log(&self.path)?;
        self.len = self.file.metadata()?.len();
        self.failing = false;
        Ok(())
    }

    /// Writes formatted lines; errors are reported once, and the lines of
    /// a failed write are dropped whole (a full disk: the log stops, the
    /// container's output keeps being drained, and logging resumes with
    /// the next line once there is space, never after half a line).
    pub fn write(&mut self, buf: &[u8]) {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.failing = false;
                self.len += buf.len() as u64;
            }
            Err(e) => {
                if !self.failing {
                    diag!(
                        super::diag::Level::Error,
                        "log write {}: {e}; lines dropped until it succeeds",
                        self.path.display()
                    );
                }
                self.failing = true;
                // What reached the file of this write goes again.
                let _ = self.file.set_len(self.len);
            }
        }
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(inputs: &[&[u8]], eof: bool) -> Vec<(char, Vec<u8>)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        let mut emit = |t: Tag, c: &[u8]| out.push((t.byte() as char, c.to_vec()));
        for i in inputs {
            s.push(i, &mut emit);
        }
        if eof {
            s.finish(&mut emit);
        }
        out
    }

    fn f(c: &[u8]) -> (char, Vec<u8>) {
        ('F', c.to_vec())
    }
    fn p(c: &[u8]) -> (char, Vec<u8>) {
        ('P', c.to_vec())
    }

    #[test]
    fn timestamps_are_rfc3339_nano_utc_fixed() {
        assert_eq!(&format_ts(0, 0), b"1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            &format_ts(1_795_823_941, 123_456_789),
            b"2026-11-27T23:59:01.123456789Z"
        );
        // Leap day, end of century rules.
        assert_eq!(
            &format_ts(951_782_400, 5),
            b"2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            &format_ts(4_107_542_399, 0),
            b"2100-02-28T23:59:59.000000000Z"
        );
        assert_eq!(
            &format_ts(4_107_542_400, 0),
            b"2100-03-01T00:00:00.000000000Z"
        );
        assert_eq!(now().len(), TS_LEN);
    }

    #[test]
    fn lines_and_line_ends() {
        assert_eq!(
            split(&[b"a\nbc\r\n\n\rd\r\r\n"], false),
            vec![f(b"a"), f(b"bc"), f(b""), f(b"\rd\r")]
        );
        // Split across reads, also between \r and \n.
        assert_eq!(
            split(&[b"ab", b"c\r", b"\nd", b"e\n"], false),
            vec![f(b"abc"), f(b"de")]
        );
    }

    #[test]
    fn unterminated_output_at_eof_is_partial() {
        assert_eq!(
            split(&[b"x\nno newline"], true),
            vec![f(b"x"), p(b"no newline")]
        );
        assert_eq!(split(&[b"cr\r"], true), vec![p(b"cr\r")]);
        assert_eq!(split(&[b"done\n"], true), vec![f(b"done")]);
        assert_eq!(split(&[], true), vec![]);
        let mut s = LineSplitter::default();
        s.push(b"held", &mut |_, _| panic!("nothing complete yet"));
        assert!(s.has_pending());
    }

    #[test]
    fn long_lines_are_cut_at_max_line() {
        let a = vec![b'a'; MAX_LINE];
        // Exactly MAX_LINE: one F, also when it arrives in pieces.
        let mut line = a.clone();
        line.push(b'\n');
        assert_eq!(split(&[&line], false), vec![f(&a)]);
        assert_eq!(split(&[&line[..100], &line[100..]], false), vec![f(&a)]);
        // With \r\n.
        let mut crlf = a.clone();
        crlf.extend_from_slice(b"\r\n");
        assert_eq!(split(&[&crlf[..MAX_LINE + 1], b"\n"], false), vec![f(&a)]);
        assert_eq!(split(&[&crlf], false), vec![f(&a)]);
        // One more byte: P of MAX_LINE, then F of 1.
        let mut long = a.clone();
        long.extend_from_slice(b"b\n");
        let want = vec![p(&a), f(b"b")];
        assert_eq!(split(&[&long], false), want);
        assert_eq!(split(&[&long[..10], &long[10..]], false), want);
        // A \r after MAX_LINE bytes that is content, not a line end.
        let mut cr = a.clone();
        cr.extend_from_slice(b"\rb\n");
        let want = vec![p(&a), f(b"\rb")];
        assert_eq!(split(&[&cr], false), want);
        assert_eq!(
            split(&[&cr[..MAX_LINE + 1], &cr[MAX_LINE + 1..]], false),
            want
        );
        // 2.5 × MAX_LINE.
        let mut big: Vec<u8> = (0..MAX_LINE * 5 / 2)
            .map(|i| b'0' + (i % 10) as u8)
            .collect();
        let content = big.clone();
        big.push(b'\n');
        let want = vec![
            p(&content[..MAX_LINE]),
            p(&content[MAX_LINE..2 * MAX_LINE]),
            f(&content[2 * MAX_LINE..]),
        ];
        assert_eq!(split(&[&big], false), want);
        let pieces: Vec<&[u8]> = big.chunks(4096).collect();
        assert_eq!(split(&pieces, false), want);
        // Exactly 2 × MAX_LINE: P then F of MAX_LINE.
        let mut two = vec![b'z'; 2 * MAX_LINE];
        two.push(b'\n');
        assert_eq!(
            split(&[&two], false),
            vec![p(&two[..MAX_LINE]), f(&two[MAX_LINE..2 * MAX_LINE])]
        );
        // Unterminated long output at EOF: P chunks only.
        assert_eq!(
            split(&[&content], true),
            vec![
                p(&content[..MAX_LINE]),
                p(&content[MAX_LINE..2 * MAX_LINE]),
                p(&content[2 * MAX_LINE..]),
            ]
        );
        let mut a_cr = a.clone();
        a_cr.push(b'\r');
        assert_eq!(split(&[&a_cr], true), vec![p(&a), p(b"\r")]);
    }

    #[test]
    fn formatted_lines() {
        let mut out = Vec::new();
        let ts = format_ts(0, 1);
        format_line(&mut out, &ts, "stdout", Tag::Full, b"hello");
        format_line(&mut out, &ts, "stderr", Tag::Partial, b"");
        assert_eq!(
            out,
            b"1970-01-01T00:00:00.000000001Z stdout F hello\n\
              1970-01-01T00:00:00.000000001Z stderr P \n"
        );
    }
}
