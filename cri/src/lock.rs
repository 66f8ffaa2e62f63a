//! One berthd per root dir: an exclusive `flock` on `<root>/berth.lock`,
//! held for the daemon's life and released by the kernel when it exits,
//! also on `kill -9`. The file holds the owner's pid for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why the root dir could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "root dir {root} is in use by another berthd{} (lock {lock} is held); stop it or give this one its own daemon.root_dir",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        root: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot lock {lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the root dir.
#[derive(Debug)]
pub struct RootLock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl RootLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn acquire(root: &Path) -> Result<RootLock, LockError> {
        let path = root.join("berth.lock");
        let io = |source: std::io::Error| LockError::Io {
            lock: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut flock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(LockError::Held {
                    root: root.to_owned(),
                    lock: path,
                    pid: s.trim().parse().ok(),
                });
            }
            Err((_, e)) => return Err(io(e.into())),
        };
        flock.set_len(0).map_err(io)?;
        flock.rewind().map_err(io)?;
        writeln!(flock, "{}", std::process::id()).map_err(io)?;
        Ok(RootLock {
            _flock: flock,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_root_is_refused_with_owner_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(dir.path()).unwrap();
        let err = RootLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("in use by another berthd"), "{msg}");
        drop(first);
        RootLock::acquire(dir.path()).unwrap();
    }
}
