//! The CRI socket: created mode 0600 in a directory berthd creates if
//! missing; a stale socket left by a dead daemon is replaced, a live one or
//! a non-socket file in its place is an error.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create socket directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is in use: another process accepts connections on it")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound listener and the identity of the file it created, so it is
/// removed at exit only if it is still ours.
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    dev_ino: (u64, u64),
}

impl BoundSocket {
    /// Removes the socket file if it is still the one we bound.
    pub fn remove(&self) {
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.dev_ino
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(|source| SocketError::Dir {
                dir: dir.to_owned(),
                source,
            })?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!(socket = %path.display(), "replacing stale socket");
            fs::remove_file(path).map_err(|source| SocketError::Bind {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(_) => {}
    }
    let bind_err = |source| SocketError::Bind {
        path: path.to_owned(),
        source,
    };
    // The socket file is created with mode 0600 from the start: no window in
    // which another user could connect.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(bind_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    let m = fs::symlink_metadata(path).map_err(bind_err)?;
    Ok(BoundSocket {
        listener,
        path: path.to_owned(),
        dev_ino: (m.dev(), m.ino()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_missing_dir_and_a_0600_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/berth.sock");
        let s = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        s.remove();
        assert!(!path.exists());
    }

    #[test]
    fn stale_socket_is_replaced_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        let live = bind(&path).unwrap();
        assert!(matches!(bind(&path), Err(SocketError::InUse { .. })));
        drop(live); // file stays, nobody listens: stale
        assert!(path.exists());
        let again = bind(&path).unwrap();
        again.remove();
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        fs::write(&path, "precious").unwrap();
        assert!(matches!(bind(&path), Err(SocketError::NotASocket { .. })));
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn remove_leaves_a_foreign_socket_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        let ours = bind(&path).unwrap();
        drop(fs::remove_file(&path));
        let theirs = UnixListener::bind(&path).unwrap();
        ours.remove();
        assert!(path.exists());
        drop(theirs);
    }
}
