//! Reaping: SIGCHLD through the signalfd, `waitpid(-1, WNOHANG)` until
//! nothing is left, exit records (atomic), OOM kill detection.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_shim::proto::{self, Exit, Response, Status};
use nix::poll::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{WaitOptions, wait};

use super::Shim;
use super::diag::Level;
use super::runtime::kill;

/// Unknown children reaped during a runtime call, remembered.
const MAX_ORPHANS: usize = 16;

/// Exit code and terminating signal of a raw wait status: the exit
/// status, or 128 + the signal number when killed by a signal.
pub fn exit_code(raw: i32) -> (i32, Option<i32>) {
    let sig = raw & 0x7f;
    if sig == 0 {
        // WIFEXITED: WEXITSTATUS is bits 8..16.
        ((raw >> 8) & 0xff, None)
    } else if sig != 0x7f {
        // WIFSIGNALED (0x7f marks a stopped child, not reported without
        // WUNTRACED).
        (128 + sig, Some(sig))
    } else {
        (255, None)
    }
}

/// The `oom_kill N` count of a cgroup v1 `memory.oom_control` or a v2
/// `memory.events` file.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "oom_kill").then_some(())?;
        f.next()?.parse().ok()
    })
}

/// The OOM kill count of a memory cgroup directory (v2 file first).
pub fn read_oom_kill(cgroup: &Path) -> Option<u64> {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|f| parse_oom_kill(&fs::read_to_string(cgroup.join(f)).ok()?))
}

/// Writes an exit record atomically (berth_util::fs::write_atomic), so a
/// reader (berthd, also after a crash of its own) sees the whole record or
/// none. No fsync: the shim's files live in berthd's state dir, which does
/// not outlive the machine in any useful way (its containers die with it,
/// and berthd treats a pod whose namespaces are gone as not ready); the
/// page cache already survives any process crash.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    berth_util::fs::write_atomic(path, data, 0o600)
}

/// Path of a container's exit record.
pub fn exit_path(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join(format!("{id}{}", proto::EXIT_SUFFIX))
}

impl Shim {
    /// Drains the signalfd, then reaps every child that exited.
    pub(super) fn reap(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            if info.ssi_signo != libc::SIGCHLD as u32 {
                diag!(
                    Level::Info,
                    "ignoring signal {} from pid {}",
                    info.ssi_signo,
                    info.ssi_pid
                );
            }
        }
        loop {
            match wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => self.reaped(pid.as_raw_nonzero().get(), status.as_raw()),
                Ok(None) => break,
                Err(Errno::INTR) => continue,
                Err(_) => break, // ECHILD: no children.
            }
        }
    }

    fn reaped(&mut self, pid: i32, raw: i32) {
        if let Some((sync_pid, status)) = &mut self.sync
            && *sync_pid == pid
        {
            *status = Some(raw);
            return;
        }
        if let Some(i) = self
            .containers
            .iter()
            .position(|c| c.pid as i32 == pid && c.status != Status::Exited)
        {
            self.container_exited(i, raw);
        } else if let Some(i) = self.execs.iter().position(|e| e.runtime_pid == pid) {
            self.exec_exited(i, raw);
        } else if let Some(i) = self.streams.iter().position(|e| e.pid() == pid) {
            if self.streams[i].starting() {
                self.stream_runtime_exited(i, raw);
            } else {
                self.stream_process_exited(i, raw);
            }
        } else {
            diag!(Level::Debug, "reaped {pid} ({:?})", exit_code(raw));
            if self.sync.is_some() || self.streams.iter().any(|e| e.starting()) {
                // Maybe the init of the container being created, or a
                // process a streaming exec's runtime started, not
                // recorded yet: kept for `take_orphan`.
                if self.orphans.len() >= MAX_ORPHANS {
                    self.orphans.remove(0);
                }
                self.orphans.push((pid, raw));
            }
        }
    }

    /// The wait status of `pid` if it was reaped before it was known.
    pub(super) fn take_orphan(&mut self, pid: i32) -> Option<i32> {
        let i = self.orphans.iter().position(|o| o.0 == pid)?;
        Some(self.orphans.remove(i).1)
    }

    /// SIGKILLs container `i`'s init process and waits until it is reaped,
    /// at most `timeout`. True when it was.
    pub(super) fn kill_and_reap(&mut self, i: usize, timeout: Duration) -> bool {
        let (serial, pid) = (self.containers[i].serial, self.containers[i].pid);
        let _ = kill(pid as i32, libc::SIGKILL);
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            let exited = self
                .containers
                .iter()
                .find(|c| c.serial == serial)
                .is_none_or(|c| c.status == Status::Exited);
            let now = Instant::now();
            if exited || now >= deadline {
                return exited;
            }
            let mut fds = [PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, super::poller::poll_timeout(Some(deadline - now)));
        }
    }

    /// A container's init process was reaped: log what its pipes hold,
    /// write the exit record, then answer the waiters.
    pub(super) fn container_exited(&mut self, i: usize, raw: i32) {
        let finished_at_ns = berth_util::time::now_ns();
        self.drain_container(i, false);
        let (dir, c) = (&self.dir, &mut self.containers[i]);
        let (exit_code, signal) = exit_code(raw);
        let oom_killed = c
            .memory_cgroup
            .as_deref()
            .and_then(read_oom_kill)
            .is_some_and(|n| n > c.oom_base);
        let exit = Exit {
            pid: c.pid,
            exit_code,
            signal,
            finished_at_ns,
            oom_killed,
        };
        diag!(
            Level::Info,
            "container {} exited: code {exit_code} signal {signal:?} oom {oom_killed}",
            c.id
        );
        match serde_json::to_vec(&exit) {
            Ok(json) => {
                if let Err(e) = write_atomic(&exit_path(dir, &c.id), &json) {
                    diag!(Level::Error, "exit record of {}: {e}", c.id);
                }
            }
            Err(e) => diag!(Level::Error, "exit record of {}: {e}", c.id),
        }
        c.status = Status::Exited;
        c.exit = Some(exit.clone());
        c.stdin = None;
        let waiters = std::mem::take(&mut c.waiters);
        let attachers = std::mem::take(&mut c.attachers);
        for w in waiters {
            self.respond(w, &Response::Exited(exit.clone()));
        }
        // What they were sent is flushed, then they are closed.
        for a in attachers {
            self.finish_session(a, None);
        }
        self.check_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_mapping() {
        assert_eq!(exit_code(0), (0, None));
        assert_eq!(exit_code(3 << 8), (3, None));
        assert_eq!(exit_code(255 << 8), (255, None));
        assert_eq!(exit_code(9), (137, Some(9)));
        assert_eq!(exit_code(15), (143, Some(15)));
        // Core dumped flag (0x80) does not change the mapping.
        assert_eq!(exit_code(0x80 | 11), (139, Some(11)));
        // Real-time signals too.
        assert_eq!(exit_code(37), (165, Some(37)));
    }

    #[test]
    fn oom_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert_eq!(parse_oom_kill(""), None);
    }

    #[test]
    fn oom_counter_from_a_directory() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_oom_kill(d.path()), None);
        fs::write(d.path().join("memory.oom_control"), "oom_kill 5\n").unwrap();
        assert_eq!(read_oom_kill(d.path()), Some(5));
        fs::write(d.path().join("memory.events"), "oom 3\noom_kill 7\n").unwrap();
        assert_eq!(read_oom_kill(d.path()), Some(7));
    }

    #[test]
    fn exit_records_are_named_by_container() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c1.exit");
        assert_eq!(exit_path(d.path(), "c1"), p);
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{}");
    }
}
