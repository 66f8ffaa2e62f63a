//! Small kernel files (cgroup and /proc files) read the cheap way: the
//! object's directory is opened once (`O_PATH`) and each file opened
//! relative to it, so the path is walked once per directory rather than
//! once per file; the bytes land in one buffer reused for every file,
//! without the size probe (`statx`) `std::fs::read_to_string` makes. With
//! hundreds of cgroups read on every stats tick, the path walks and the
//! extra system calls were most of the tick's cost.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// An open directory that files are read relative to.
#[derive(Debug)]
pub struct Dir(OwnedFd);

impl Dir {
    /// Opens `path`; None when it is not there (a cgroup being removed).
    pub fn open(path: &Path) -> Option<Dir> {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .map(Dir)
    }
}

/// The buffer files are read into.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Default for Reader {
    fn default() -> Self {
        // Every cgroup file berth reads fits (v1's memory.stat is ~1 KiB);
        // a larger one grows it.
        Reader { buf: vec![0; 4096] }
    }
}

impl Reader {
    /// The text of `name` in `dir`; None when `dir` is None, or the file
    /// is missing, unreadable or not UTF-8.
    pub fn text(&mut self, dir: Option<&Dir>, name: &str) -> Option<&str> {
        let fd = rustix::fs::openat(
            &dir?.0,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match rustix::io::read(&fd, &mut self.buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return None,
            }
        }
        std::str::from_utf8(&self.buf[..len]).ok()
    }

    /// `name` in `dir` as one number.
    pub fn u64(&mut self, dir: Option<&Dir>, name: &str) -> Option<u64> {
        self.text(dir, name)?.trim().parse().ok()
    }
}

/// The values of `keys` in `key value` lines (memory.stat, cpu.stat,
/// memory.events, oom_control), in one pass over the text.
pub fn fields<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|key| *key == k) {
            out[i] = v.trim().parse().ok();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_relative_to_their_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("n"), "42\n").unwrap();
        // Larger than the initial buffer: it grows.
        let big = "x".repeat(10_000);
        std::fs::write(d.path().join("big"), &big).unwrap();
        let dir = Dir::open(d.path());
        let mut r = Reader::default();
        assert_eq!(r.u64(dir.as_ref(), "n"), Some(42));
        assert_eq!(r.text(dir.as_ref(), "big"), Some(big.as_str()));
        assert_eq!(r.text(dir.as_ref(), "missing"), None);
        assert_eq!(r.u64(None, "n"), None);
        assert!(Dir::open(&d.path().join("gone")).is_none());
    }

    #[test]
    fn fields_are_found_in_one_pass() {
        let text = "cache 10\nrss 20\ntotal_rss 30\nbad\npgfault x\n";
        assert_eq!(
            fields(text, ["total_rss", "cache", "pgfault", "absent"]),
            [Some(30), Some(10), None, None]
        );
    }
}
