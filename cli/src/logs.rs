//! CRI container log files, as kubelet and crictl read them: one record a
//! line, `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`, where
//! `P` marks a partial line continued by the stream's next record and `F`
//! ends one.
//!
//! The parsing, joining and filtering here are pure; [`LogFile`] is the one
//! part touching the file system (reading what was appended, noticing
//! truncation and rotation).
//!
//! Malformed records (no timestamp, unknown stream, missing tag) are skipped
//! and counted, as kubelet skips them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One record of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp as written.
    pub time: &'a str,
    /// The timestamp in nanoseconds since the Unix epoch.
    pub nanos: i64,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// A whole line of output: a record, or partial records joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The timestamp of its first record, as written.
    pub time: String,
    pub nanos: i64,
    pub stream: Stream,
    /// Without the newline.
    pub content: Vec<u8>,
}

/// Parses one record (without its newline); `None` if malformed.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let nanos = parse_rfc3339(time)?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tags = fields.next()?;
    if tags.is_empty() {
        return None;
    }
    // Tags are `:`-separated; today only P and F exist.
    let partial = tags.split(|&b| b == b':').any(|t| t == b"P");
    let content = fields.next().unwrap_or_default();
    Some(Record {
        time,
        nanos,
        stream,
        partial,
        content,
    })
}

/// Turns the file's bytes, as they arrive, into whole lines: splits records
/// at newlines (holding back an unterminated last one), joins partial
/// records per stream, and drops lines older than `since`.
#[derive(Debug, Default)]
pub struct Reader {
    since: Option<i64>,
    /// Bytes after the last newline.
    rest: Vec<u8>,
    /// Partial lines waiting for their `F` record: stdout, stderr.
    pending: [Option<Line>; 2],
    /// Malformed records skipped so far.
    pub malformed: usize,
}

impl Reader {
    /// A reader keeping lines from `since` (nanoseconds since the epoch) on.
    pub fn new(since: Option<i64>) -> Self {
        Reader {
            since,
            ..Default::default()
        }
    }

    /// The lines that `data`, appended to what came before, completes.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        let mut buf = std::mem::take(&mut self.rest);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(n) = buf[start..].iter().position(|&b| b == b'\n') {
            self.record(&buf[start..start + n], &mut out);
            start += n + 1;
        }
        buf.drain(..start);
        self.rest = buf;
        out
    }

    /// At the end of the log: an unterminated last record counts, and
    /// partial lines never finished are given out as they are.
    pub fn finish(&mut self) -> Vec<Line> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.rest);
        if !rest.is_empty() {
            self.record(&rest, &mut out);
        }
        let left: Vec<Line> = self.pending.iter_mut().filter_map(Option::take).collect();
        out.extend(left.into_iter().filter(|l| self.keep(l)));
        out.sort_by_key(|l| l.nanos);
        out
    }

    fn keep(&self, l: &Line) -> bool {
        self.since.is_none_or(|s| l.nanos >= s)
    }

    fn record(&mut self, raw: &[u8], out: &mut Vec<Line>) {
        let Some(r) = parse_record(raw) else {
            self.malformed += 1;
            return;
        };
        let slot = &mut self.pending[r.stream as usize];
        let line = slot.get_or_insert_with(|| Line {
            time: r.time.to_owned(),
            nanos: r.nanos,
            stream: r.stream,
            content: Vec::new(),
        });
        line.content.extend_from_slice(r.content);
        if r.partial {
            return;
        }
        if let Some(line) = slot.take()
            && self.keep(&line)
        {
            out.push(line);
        }
    }
}

/// The last `n` lines (all with `None`).
pub fn tail(mut lines: Vec<Line>, n: Option<usize>) -> Vec<Line> {
    if let Some(n) = n {
        let drop = lines.len().saturating_sub(n);
        lines.drain(..drop);
    }
    lines
}

/// A line as printed: `[<timestamp> ]<content>\n`.
pub fn render(line: &Line, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.content.len() + 40);
    if timestamps {
        out.extend_from_slice(line.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.content);
    out.push(b'\n');
    out
}

/// `--since`: a duration ago (`10s`, `5m`, `1h30m`, `1.5h`, Go's units) or
/// an RFC 3339 time; nanoseconds since the epoch.
pub fn parse_since(spec: &str, now_nanos: i64) -> Result<i64, String> {
    if let Some(d) = parse_duration(spec) {
        return Ok(now_nanos.saturating_sub(d));
    }
    parse_rfc3339(spec).ok_or_else(|| {
        format!(
            "--since {spec:?}: use a duration like 10s, 5m or 1h, or an RFC 3339 time like 2024-05-01T12:00:00Z"
        )
    })
}

/// A Go-style duration (`300ms`, `1h30m`, `2.5s`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    (total < i64::MAX as f64).then_some(total as i64)
}

/// An RFC 3339 time (`2024-05-01T12:00:00.123456789Z`, or with a `+02:00`
/// offset) in nanoseconds since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !b[..19].is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start {
            return None;
        }
        for (k, c) in b[start..end].iter().enumerate() {
            if k < 9 {
                frac = frac * 10 + i64::from(c - b'0');
            }
        }
        for _ in (end - start)..9 {
            frac *= 10;
        }
        i = end;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = (h * 60 + m) * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + min * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A log file read as it grows. kubelet rotates container logs by renaming
/// the file and having the runtime reopen the path, so a new file at the
/// path means "finish the old one, then start on the new one".
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    id: (u64, u64),
    pos: u64,
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(LogFile {
            path: path.to_owned(),
            file,
            id: (m.dev(), m.ino()),
            pos: 0,
        })
    }

    /// What was appended since the last call (from the start if the file
    /// was truncated meanwhile).
    pub fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let len = self.file.metadata()?.len();
        if len < self.pos {
            self.pos = 0;
        }
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        self.pos += buf.len() as u64;
        Ok(buf)
    }

    /// Whether the path now names another file (rotation). Not while the
    /// path is missing, between the rename and the reopen.
    pub fn replaced(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) != self.id)
    }

    /// Switches to the file now at the path, from its start.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        *self = LogFile::open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2024-05-01T12:00:00.000000001Z";
    const T0_NANOS: i64 = 1_714_564_800_000_000_001;

    fn contents(lines: &[Line]) -> Vec<(Stream, String)> {
        lines
            .iter()
            .map(|l| (l.stream, String::from_utf8_lossy(&l.content).into_owned()))
            .collect()
    }

    #[test]
    fn records_parse() {
        let line = format!("{T0} stdout F hello world");
        let r = parse_record(line.as_bytes()).unwrap();
        assert_eq!(r.time, T0);
        assert_eq!(r.nanos, T0_NANOS);
        assert_eq!(r.stream, Stream::Stdout);
        assert!(!r.partial);
        assert_eq!(r.content, b"hello world");
        let r = parse_record(b"2024-05-01T12:00:00Z stderr P  two  spaces ").unwrap();
        assert_eq!((r.stream, r.partial), (Stream::Stderr, true));
        assert_eq!(r.content, b" two  spaces ");
        // An empty line: the content may be missing with its separator.
        assert_eq!(
            parse_record(b"2024-05-01T12:00:00Z stdout F")
                .unwrap()
                .content,
            b""
        );
        assert_eq!(
            parse_record(b"2024-05-01T12:00:00Z stdout F ")
                .unwrap()
                .content,
            b""
        );
        for bad in [
            &b""[..],
            b"hello",
            b"notatime stdout F x",
            b"2024-05-01T12:00:00Z stdin F x",
            b"2024-05-01T12:00:00Z stdout",
            b"2024-05-01T12:00:00Z stdout  x",
        ] {
            assert!(
                parse_record(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn timestamps_parse_with_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339(T0), Some(T0_NANOS));
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00.5+02:00"),
            Some(1_714_564_800_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T11:30:00-00:30"),
            Some(1_714_564_800_000_000_000)
        );
        // Beyond nanoseconds is cut off; leap days are days.
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.1234567891Z"),
            Some(123_456_789)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800 * 1_000_000_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000_000_000));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01",
            "+024-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn partial_records_join_per_stream() {
        let mut r = Reader::new(None);
        let data = format!(
            "{T0} stdout P hel\n\
             2024-05-01T12:00:01Z stderr F oops\n\
             2024-05-01T12:00:02Z stdout P lo \n\
             2024-05-01T12:00:03Z stdout F world\n"
        );
        let lines = r.feed(data.as_bytes());
        assert_eq!(
            contents(&lines),
            [
                (Stream::Stderr, "oops".into()),
                (Stream::Stdout, "hello world".into())
            ]
        );
        // A joined line carries its first record's time.
        assert_eq!(lines[1].time, T0);
        assert_eq!(lines[1].nanos, T0_NANOS);
        assert_eq!(r.malformed, 0);
    }

    #[test]
    fn records_split_across_reads_wait_for_their_newline() {
        let mut r = Reader::new(None);
        let data = format!("{T0} stdout F first\n{T0} stdout P sec");
        assert_eq!(contents(&r.feed(data.as_bytes())).len(), 1);
        assert!(r.feed(b"ond").is_empty());
        assert!(r.feed(format!("\n{T0} stdout F  part\n").as_bytes()).len() == 1);
        // Fed one byte at a time, the same lines come out.
        let mut r = Reader::new(None);
        let data = format!("{T0} stdout P a\n{T0} stdout F b\n{T0} stderr F c\n");
        let lines: Vec<Line> = data.bytes().flat_map(|b| r.feed(&[b])).collect();
        assert_eq!(
            contents(&lines),
            [(Stream::Stdout, "ab".into()), (Stream::Stderr, "c".into())]
        );
        assert!(r.finish().is_empty());
    }

    #[test]
    fn finish_gives_out_the_unterminated_and_the_unfinished() {
        let mut r = Reader::new(None);
        let data = format!("{T0} stdout P never \n2024-05-01T12:00:05Z stderr F no newline");
        assert!(r.feed(data.as_bytes()).is_empty());
        assert_eq!(
            contents(&r.finish()),
            [
                (Stream::Stdout, "never ".into()),
                (Stream::Stderr, "no newline".into())
            ]
        );
        assert!(r.finish().is_empty());
    }

    #[test]
    fn malformed_records_are_skipped_and_counted() {
        let mut r = Reader::new(None);
        let data = format!("garbage\n{T0} stdout F ok\n{T0} stdin F no\n\n");
        assert_eq!(
            contents(&r.feed(data.as_bytes())),
            [(Stream::Stdout, "ok".into())]
        );
        assert_eq!(r.malformed, 3);
        // Content need not be UTF-8.
        let mut raw = format!("{T0} stdout F ").into_bytes();
        raw.extend_from_slice(b"\xff\xfe\n");
        assert_eq!(r.feed(&raw)[0].content, b"\xff\xfe");
    }

    #[test]
    fn since_drops_older_lines() {
        let data = "2024-05-01T12:00:00Z stdout F old\n\
                    2024-05-01T12:00:09Z stdout P straddles \n\
                    2024-05-01T12:00:11Z stdout F the cut\n\
                    2024-05-01T12:00:10Z stderr F at the cut\n\
                    2024-05-01T12:00:20Z stdout F new\n";
        let since = parse_rfc3339("2024-05-01T12:00:10Z");
        let mut r = Reader::new(since);
        // A joined line is as old as its first record.
        assert_eq!(
            contents(&r.feed(data.as_bytes())),
            [
                (Stream::Stderr, "at the cut".into()),
                (Stream::Stdout, "new".into())
            ]
        );
    }

    #[test]
    fn since_accepts_durations_and_times() {
        let now = T0_NANOS;
        assert_eq!(parse_since("10s", now), Ok(now - 10_000_000_000));
        assert_eq!(parse_since("5m", now), Ok(now - 300_000_000_000));
        assert_eq!(parse_since("1h30m", now), Ok(now - 5_400_000_000_000));
        assert_eq!(parse_since("1.5h", now), Ok(now - 5_400_000_000_000));
        assert_eq!(parse_since("250ms", now), Ok(now - 250_000_000));
        assert_eq!(parse_since(T0, 0), Ok(T0_NANOS));
        for bad in ["", "10", "10x", "s", "yesterday", "1h-5m"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut r = Reader::new(None);
        let data = format!("{T0} stdout F 1\n{T0} stdout P 2\n{T0} stdout F b\n{T0} stderr F 3\n");
        let lines = r.feed(data.as_bytes());
        let texts = |n| {
            contents(&tail(lines.clone(), n))
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        };
        // Joined lines count once.
        assert_eq!(texts(Some(2)), ["2b", "3"]);
        assert_eq!(texts(Some(0)), Vec::<String>::new());
        assert_eq!(texts(Some(10)), ["1", "2b", "3"]);
        assert_eq!(texts(None), ["1", "2b", "3"]);
    }

    #[test]
    fn lines_render_with_or_without_timestamps() {
        let l = Line {
            time: T0.into(),
            nanos: T0_NANOS,
            stream: Stream::Stdout,
            content: b"hi".to_vec(),
        };
        assert_eq!(render(&l, false), b"hi\n");
        assert_eq!(render(&l, true), format!("{T0} hi\n").into_bytes());
    }

    #[test]
    fn log_files_are_followed_through_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "a\n").unwrap();
        let mut f = LogFile::open(&path).unwrap();
        assert_eq!(f.read_new().unwrap(), b"a\n");
        assert!(f.read_new().unwrap().is_empty());
        let append = |s: &str| {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            w.write_all(s.as_bytes()).unwrap();
        };
        append("b\n");
        assert_eq!(f.read_new().unwrap(), b"b\n");
        // Truncated: read again from the start.
        std::fs::write(&path, "c").unwrap();
        assert_eq!(f.read_new().unwrap(), b"c");
        assert!(!f.replaced());
        // Rotated: renamed away, then a new file at the path.
        append("d\n");
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        assert!(!f.replaced());
        std::fs::write(&path, "e\n").unwrap();
        assert!(f.replaced());
        assert_eq!(f.read_new().unwrap(), b"d\n");
        f.reopen().unwrap();
        assert!(!f.replaced());
        assert_eq!(f.read_new().unwrap(), b"e\n");
    }
}
