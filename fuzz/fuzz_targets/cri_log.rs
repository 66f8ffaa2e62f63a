//! The CLI's CRI log reading (`berth_cli::logs`): records, the reader that
//! joins partial lines, `--since` and `--tail`, on arbitrary log bytes.
//!
//! Asserted:
//! - no panic (the timestamp and duration arithmetic included);
//! - a parsed record's `nanos` is `parse_rfc3339` of its `time`, which is
//!   the record's first field;
//! - feeding the bytes in any chunking gives the same lines and malformed
//!   count as feeding them at once;
//! - lines never hold more content than the input had; with `since`, no
//!   line is older than it;
//! - `tail(n)` is the last `n` lines; `render` ends in one newline and
//!   starts with the timestamp when asked;
//! - `parse_rfc3339` agrees with chrono on every time both accept (leap
//!   seconds aside), and a time it prints (chrono's RFC 3339, UTC, in
//!   years 0000-9999) parses back to the same nanoseconds;
//! - `parse_duration` is never negative; `parse_since` of a duration is
//!   `now - duration` (saturating).
#![no_main]

use berth_cli::logs::{self, Line, Reader};
use libfuzzer_sys::fuzz_target;

fn read_all(data: &[u8], cuts: &[usize], since: Option<i64>) -> (Vec<Line>, usize) {
    let mut r = Reader::new(since);
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        let c = c.clamp(prev, data.len());
        out.extend(r.feed(&data[prev..c]));
        prev = c;
    }
    out.extend(r.finish());
    (out, r.malformed)
}

fn check_time(s: &str) {
    let Some(ours) = logs::parse_rfc3339(s) else {
        return;
    };
    if let Ok(theirs) = chrono::DateTime::parse_from_rfc3339(s)
        && s.as_bytes().get(17..19) != Some(b"60")
        && let Some(n) = theirs.timestamp_nanos_opt()
    {
        assert_eq!(ours, n, "{s:?}: berth {ours}, chrono {n}");
    }
    let printed = chrono::DateTime::from_timestamp_nanos(ours)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    if printed.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        assert_eq!(
            logs::parse_rfc3339(&printed),
            Some(ours),
            "{s:?} -> {ours} -> {printed:?}"
        );
    }
}

fn check_strings(s: &str) {
    check_time(s);
    if let Some(d) = logs::parse_duration(s) {
        assert!(d >= 0, "{s:?} is a negative duration {d}");
        let now = 1_700_000_000_000_000_000;
        assert_eq!(logs::parse_since(s, now), Ok(now.saturating_sub(d)));
    }
}

fuzz_target!(|data: &[u8]| {
    // Records on their own.
    for raw in data.split(|&b| b == b'\n') {
        if let Some(r) = logs::parse_record(raw) {
            assert_eq!(logs::parse_rfc3339(r.time), Some(r.nanos));
            assert!(raw.starts_with(r.time.as_bytes()));
            assert!(r.content.len() <= raw.len());
        }
        if let Ok(s) = std::str::from_utf8(raw) {
            check_strings(s);
            // The timestamp field alone, as `--since` gets it.
            if let Some((t, _)) = s.split_once(' ') {
                check_strings(t);
            }
        }
    }

    // Chunking points and `since` from the input itself.
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut cuts: Vec<usize> = (0..(h % 7) as usize)
        .map(|i| ((h >> (i * 8)) as usize) % (data.len() + 1))
        .collect();
    cuts.sort_unstable();
    let since = if h & 0x100 != 0 {
        data.split(|&b| b == b'\n')
            .find_map(logs::parse_record)
            .map(|r| r.nanos)
    } else {
        None
    };

    let (whole, malformed) = read_all(data, &[], since);
    let (chunked, malformed_chunked) = read_all(data, &cuts, since);
    assert_eq!(whole, chunked, "chunking at {cuts:?} changed the lines");
    assert_eq!(
        malformed, malformed_chunked,
        "chunking at {cuts:?} changed the malformed count"
    );
    // One byte at a time, for small inputs.
    if data.len() <= 256 {
        let every: Vec<usize> = (1..data.len()).collect();
        let (bytewise, m) = read_all(data, &every, since);
        assert_eq!(whole, bytewise, "byte-wise feeding changed the lines");
        assert_eq!(malformed, m);
    }

    let total: usize = whole.iter().map(|l| l.content.len()).sum();
    assert!(
        total <= data.len(),
        "{total} bytes of content from {} bytes",
        data.len()
    );
    for l in &whole {
        if let Some(s) = since {
            assert!(l.nanos >= s, "line older than since");
        }
        assert_eq!(logs::parse_rfc3339(&l.time), Some(l.nanos));
        let plain = logs::render(l, false);
        assert_eq!(plain.len(), l.content.len() + 1);
        assert_eq!(plain.last(), Some(&b'\n'));
        let stamped = logs::render(l, true);
        assert!(stamped.starts_with(format!("{} ", l.time).as_bytes()));
        assert!(stamped.ends_with(&plain));
    }
    let n = (h >> 16) as usize % 4;
    let tail = logs::tail(whole.clone(), Some(n));
    assert_eq!(tail.len(), whole.len().min(n));
    assert_eq!(tail[..], whole[whole.len() - tail.len()..]);
    assert_eq!(logs::tail(whole.clone(), None), whole);
});
