//! Memory of a runtime's processes: RSS and PSS from /proc.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// Resident and proportional set size of one process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Anonymous resident memory: the heap and stacks, not file pages.
    pub anon_kib: u64,
}

impl std::ops::Add for Mem {
    type Output = Mem;
    fn add(self, o: Mem) -> Mem {
        Mem {
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
            anon_kib: self.anon_kib + o.anon_kib,
        }
    }
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads `pid`'s memory; None if it is gone.
pub fn of_pid(pid: u32) -> Option<Mem> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = field_kib(&status, "VmRSS:")?;
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let pss = field_kib(&rollup, "Pss:")?;
    Some(Mem {
        rss_kib: rss,
        pss_kib: pss,
        anon_kib: field_kib(&status, "RssAnon:").unwrap_or(0),
    })
}

/// Pids whose command line has an argument equal to `program` (or ending in
/// `/program`) and, if given, an argument containing `marker`.
pub fn pids_of(program: &str, marker: Option<&str>) -> Vec<u32> {
    pids_matching(program, |args| {
        marker.is_none_or(|m| args.iter().any(|a| a.contains(m)))
    })
}

/// Pids of `program` whose argument after `flag` (`--dir X`, or `--dir=X`)
/// satisfies `value`: a runtime's shims, told apart from another
/// instance's by their state dir or daemon address.
pub fn pids_with_flag(program: &str, flag: &str, value: impl Fn(&str) -> bool) -> Vec<u32> {
    let eq = format!("{flag}=");
    pids_matching(program, |args| {
        args.iter().enumerate().any(|(i, a)| {
            if a == flag {
                args.get(i + 1).is_some_and(|v| value(v))
            } else {
                a.strip_prefix(&eq).is_some_and(&value)
            }
        })
    })
}

fn pids_matching(program: &str, pick: impl Fn(&[String]) -> bool) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_program = args
            .first()
            .is_some_and(|a| a == program || a.ends_with(&format!("/{program}")));
        // A zombie (exited, not yet reaped) holds no memory.
        if is_program && pick(&args) && of_pid(pid).is_some() {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// The sum over `pids` (those still there).
pub fn sum(pids: &[u32]) -> Mem {
    pids.iter()
        .filter_map(|p| of_pid(*p))
        .fold(Mem::default(), |a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let m = of_pid(std::process::id()).unwrap();
        assert!(
            m.rss_kib > 0 && m.pss_kib > 0 && m.pss_kib <= m.rss_kib,
            "{m:?}"
        );
    }

    #[test]
    fn parses_status_fields() {
        assert_eq!(
            field_kib("Name:\tx\nVmRSS:\t   7348 kB\n", "VmRSS:"),
            Some(7348)
        );
        assert_eq!(field_kib("Name:\tx\n", "VmRSS:"), None);
    }

    #[test]
    fn finds_processes_by_program_and_marker() {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(pids_of(name, None).contains(&std::process::id()));
        assert!(!pids_of(name, Some("no-such-marker-xyz")).contains(&std::process::id()));
    }

    #[test]
    fn finds_processes_by_flag_value() {
        // `; :` keeps sh from exec'ing sleep, so its arguments stay.
        let mut c = std::process::Command::new("sh")
            .args([
                "-c",
                "sleep 30; :",
                "sh",
                "--dir",
                "/tmp/xyz-marker/state/s/p1",
            ])
            // The sleep outlives the killed sh: keep it off the test's pipes.
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = c.id();
        // The child shows its argv once it has exec'd: wait for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .windows(b"xyz-marker".len())
            .any(|w| w == b"xyz-marker")
        {
            assert!(std::time::Instant::now() < deadline, "child never exec'd");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mine = pids_with_flag("sh", "--dir", |v| v.starts_with("/tmp/xyz-marker/state/"));
        let other = pids_with_flag("sh", "--dir", |v| v.starts_with("/tmp/other/"));
        let _ = c.kill();
        let _ = c.wait();
        assert!(mine.contains(&pid), "{mine:?}");
        assert!(!other.contains(&pid));
    }
}
