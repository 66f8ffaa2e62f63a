//! Processes and the node, read from /proc and /sys: which processes are
//! berth's shims, how much memory they hold, and the node's capacity.

use std::path::Path;

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(4096)
}

/// Resident memory of `pid` (statm's resident pages), None when it is gone.
pub fn rss(pid: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(Path::new("/proc").join(pid).join("statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The pids whose command line (NUL-separated arguments) `matches`.
pub fn find(matches: impl Fn(&[u8]) -> bool) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read(Path::new("/proc").join(pid).join("cmdline")).is_ok_and(|c| matches(&c))
        })
        .collect()
}

/// Whether the NUL-separated `cmdline` has `flag` followed by an argument
/// starting with `prefix`.
pub fn has_arg(cmdline: &[u8], flag: &str, prefix: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == flag.as_bytes() && w[1].starts_with(prefix.as_bytes()))
}

/// The node's CPUs online and its memory, in bytes.
pub fn capacity() -> (u64, u64) {
    let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024);
    (cpus, mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_and_measured() {
        let me = std::process::id().to_string();
        let mine = std::fs::read(format!("/proc/{me}/cmdline")).unwrap();
        let found = find(|c| c == mine.as_slice());
        assert!(found.contains(&me), "{found:?}");
        assert!(rss(&me).unwrap() > 0);
        assert!(rss("999999999").is_none());
        let (cpus, mem) = capacity();
        assert!(cpus >= 1 && mem > 64 << 20);
    }

    #[test]
    fn flags_and_values() {
        let c = b"berth-shim\0--pod-id\0p1\0--dir\0/run/berth/shims/p1\0";
        assert!(has_arg(c, "--dir", "/run/berth/shims/"));
        assert!(!has_arg(c, "--dir", "/run/other/"));
        assert!(!has_arg(c, "--pod-id", "/run/berth/shims/"));
    }
}
