//! Processes and the node, read from /proc and /sys: which processes are
//! berth's shims (by their pid files), how much memory they hold, and the
//! node's capacity.

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

/// The live processes that keep a pid file in a directory of their own
/// under `parent` (`parent/<name>/<pid_file>`, as shims do) and name that
/// directory on their command line (`--dir <dir>`): the check that a pid
/// file's pid was not reused by another process. One directory listing
/// and two small reads per process, not a walk of all of /proc.
pub fn with_pid_files(parent: &Path, pid_file: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let dir = e.path();
            let pid = std::fs::read_to_string(dir.join(pid_file)).ok()?;
            let pid = pid.trim();
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let cmdline = std::fs::read(Path::new("/proc").join(pid).join("cmdline")).ok()?;
            let dir = dir.to_str()?;
            cmdline
                .split(|b| *b == 0)
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] == b"--dir" && w[1] == dir.as_bytes())
                .then(|| pid.to_owned())
        })
        .collect()
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
    fn this_process_is_measured() {
        let me = std::process::id().to_string();
        assert!(rss(&me).unwrap() > 0);
        assert!(rss("999999999").is_none());
        let (cpus, mem) = capacity();
        assert!(cpus >= 1 && mem > 64 << 20);
    }

    #[test]
    fn processes_are_found_by_their_pid_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = |n: &str| {
            let p = d.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let a = dir("a");
        // A process that names its directory, as a shim does.
        // (`read` is the shell's own: no grandchild outlives the test.)
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x", "sh", "--dir"])
            .arg(&a)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(a.join("x.pid"), format!("{}\n", child.id())).unwrap();
        // A pid file whose pid is now another process (this one).
        std::fs::write(dir("b").join("x.pid"), std::process::id().to_string()).unwrap();
        std::fs::write(dir("c").join("x.pid"), "garbage").unwrap();
        dir("d");
        // The command line shows once the child has exec'd.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = with_pid_files(d.path(), "x.pid");
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, [child.id().to_string()]);
        assert!(with_pid_files(d.path(), "x.pid").is_empty(), "gone");
        assert!(with_pid_files(&d.path().join("none"), "x.pid").is_empty());
    }
}
