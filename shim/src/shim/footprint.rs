//! The shim's resident footprint: startup code let go once serving.
//!
//! Startup (libc and std initialisation, argument parsing, forking away,
//! binding) runs code the event loop never runs again, and the kernel maps
//! file pages 64 KiB around each faulting address (fault-around), so those
//! pages stay counted in every shim's RSS. Once serving, the shim unmaps
//! the pages of its read-only file mappings that hold no private copy
//! (`Anonymous: 0` in smaps: nothing of this process would be lost); the
//! page cache keeps them, shared, and the loop maps back what it runs.

use std::fs;

/// Drops this process's clean, read-only file-backed pages from its page
/// tables. Returns the bytes of the mappings dropped.
pub fn drop_startup_pages() -> usize {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let ranges = clean_file_mappings(&smaps);
    // Freed before: freeing it after would trim the heap through libc's
    // sbrk, whose code is among what was just dropped.
    drop(smaps);
    let mut dropped = 0;
    for m in ranges {
        // rustix makes the syscall inline, here: libc's madvise wrapper
        // lives among the startup code and would fault its pages straight
        // back on return.
        // SAFETY: the range is a whole mapping of this process, read-only,
        // file-backed, with no anonymous (copied-on-write) pages: dropping
        // it loses nothing, its next access faults it back from the file.
        let r = unsafe {
            rustix::mm::madvise(
                m.start as *mut std::ffi::c_void,
                m.end - m.start,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
        if r.is_ok() {
            dropped += m.end - m.start;
        }
    }
    dropped
}

#[derive(Debug, PartialEq)]
struct Range {
    start: usize,
    end: usize,
}

/// Mappings that are file-backed, not writable, and hold no anonymous pages.
fn clean_file_mappings(smaps: &str) -> Vec<Range> {
    let mut out = Vec::new();
    let mut current: Option<Range> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((s, e)) = first.split_once('-')
            && let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16))
        {
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or_default();
            current = (perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/'))
            .then_some(Range { start: s, end: e });
        } else if first == "Anonymous:"
            && f.next() == Some("0")
            && let Some(r) = current.take()
        {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings() {
        let smaps = "\
00200000-00249000 r--p 00000000 fe:00 123 /usr/bin/berth-shim
Rss:                 192 kB
Anonymous:             0 kB
00249000-00341000 r-xp 00049000 fe:00 123 /usr/bin/berth-shim
Anonymous:             0 kB
00341000-00345000 r--p 00141000 fe:00 123 /usr/bin/berth-shim
Anonymous:            16 kB
00345000-00349000 rw-p 00145000 fe:00 123 /usr/bin/berth-shim
Anonymous:             0 kB
07070000-07092000 rw-p 00000000 00:00 0 [heap]
Anonymous:            40 kB
7ff5eebe5000-7ff5eebe7000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7ff5eec00000-7ff5eec01000 r--s 00000000 00:05 9 /dev/zero (deleted)
Anonymous:             0 kB
";
        assert_eq!(
            clean_file_mappings(smaps),
            vec![
                Range {
                    start: 0x200000,
                    end: 0x249000
                },
                Range {
                    start: 0x249000,
                    end: 0x341000
                },
            ]
        );
    }

    #[test]
    fn dropping_keeps_the_process_working() {
        let before = drop_startup_pages();
        assert!(before > 0);
        // Code and read-only data come back on use.
        assert_eq!(format!("{}", 6 * 7), "42");
        assert!(
            fs::read_to_string("/proc/self/status")
                .unwrap()
                .contains("VmRSS")
        );
    }
}
