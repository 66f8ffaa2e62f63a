//! Reading files of the (untrusted) image rootfs without escaping it.
//!
//! The rootfs is image content: `/etc/passwd` may be a symlink to
//! `/../../host/etc/shadow`, a FIFO, or huge. Paths are resolved as if the
//! rootfs were `/` (symlinks and `..` never leave it): `openat2` with
//! `RESOLVE_IN_ROOT`, or, on kernels without openat2 (< 5.6), a
//! component-wise resolver doing the same in user space. The file is opened
//! non-blocking, must be a regular file, and is read up to a byte cap.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::SpecError;

/// Cap on the bytes read from one image file (/etc/passwd, /etc/group).
pub(crate) const MAX_FILE_BYTES: usize = 4 << 20;

/// Symlinks followed in one resolution, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// Reads `path` (absolute inside the rootfs, e.g. "/etc/passwd") resolved
/// inside `root`. `Ok(None)` when it does not exist.
pub(crate) fn read_in_root(
    root: &Path,
    path: &str,
    limit: usize,
) -> Result<Option<Vec<u8>>, SpecError> {
    let rootfd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SpecError::io(format!("opening rootfs {}", root.display()), e.into()))?;
    let fd = match open_in_root(&rootfd, path) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Ok(None),
        Err(e) => {
            return Err(SpecError::io(
                format!("opening {path} in {}", root.display()),
                e.into(),
            ));
        }
    };
    read_capped(fd, path, limit).map(Some)
}

/// Reads a file of the node that a request names (a seccomp Localhost
/// profile): opened without blocking (a FIFO there must not hang a berthd
/// thread in open), a regular file only, at most `limit` bytes.
/// `Ok(None)` when it does not exist.
pub(crate) fn read_node_file(path: &Path, limit: usize) -> Result<Option<Vec<u8>>, SpecError> {
    let fd = match rustix::fs::open(path, final_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
        Err(e) => {
            return Err(SpecError::io(
                format!("opening {}", path.display()),
                e.into(),
            ));
        }
    };
    read_capped(fd, &path.display().to_string(), limit).map(Some)
}

fn read_capped(fd: OwnedFd, path: &str, limit: usize) -> Result<Vec<u8>, SpecError> {
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| SpecError::io(format!("stat {path} in the image"), e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(SpecError::NotARegularFile { path: path.into() });
    }
    let file = std::fs::File::from(fd);
    let mut buf = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SpecError::io(format!("reading {path} in the image"), e))?;
    if buf.len() > limit {
        return Err(SpecError::FileTooLarge {
            path: path.into(),
            limit,
        });
    }
    Ok(buf)
}

fn final_flags() -> OFlags {
    // NONBLOCK: a FIFO planted at /etc/passwd must not hang berthd.
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

fn open_in_root(rootfd: &OwnedFd, path: &str) -> Result<OwnedFd, Errno> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    for _ in 0..8 {
        match rustix::fs::openat2(
            rootfd,
            rel,
            final_flags(),
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // Concurrent renames make RESOLVE_IN_ROOT ask for a retry.
            Err(Errno::AGAIN) => continue,
            // No openat2 (kernel < 5.6, or filtered by seccomp).
            Err(Errno::NOSYS | Errno::PERM) => return open_in_root_userspace(rootfd, path),
            other => return other,
        }
    }
    open_in_root_userspace(rootfd, path)
}

/// The user-space equivalent of `RESOLVE_IN_ROOT`: walks `path` one component
/// at a time below `rootfd`, expanding symlinks itself (absolute targets
/// restart at the root, `..` stops at the root), so the kernel only ever
/// resolves components already known not to be symlinks. The last open uses
/// `O_NOFOLLOW`. Meant for a rootfs nobody modifies concurrently (before the
/// container starts).
pub(crate) fn open_in_root_userspace(rootfd: &OwnedFd, path: &str) -> Result<OwnedFd, Errno> {
    // Components still to resolve, in order (front = next).
    let mut todo: Vec<Vec<u8>> = components(path.as_bytes());
    todo.reverse();
    // Components resolved so far (never symlinks), relative to the root.
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        match comp.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = done.clone();
        candidate.push(comp);
        let joined = join(&candidate);
        match rustix::fs::readlinkat(rootfd, OsStr::from_bytes(&joined), Vec::new()) {
            Ok(target) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP);
                }
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    done.clear();
                }
                let mut more = components(target);
                more.reverse();
                todo.extend(more);
            }
            // Not a symlink: a real component.
            Err(Errno::INVAL) => done = candidate,
            Err(e) => return Err(e),
        }
    }
    let joined = join(&done);
    let rel: &OsStr = if joined.is_empty() {
        OsStr::new(".")
    } else {
        OsStr::from_bytes(&joined)
    };
    rustix::fs::openat(rootfd, rel, final_flags() | OFlags::NOFOLLOW, Mode::empty())
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.join(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("host/etc")).unwrap();
        std::fs::write(dir.path().join("host/etc/shadow"), "root:SECRET\n").unwrap();
        (dir, root)
    }

    fn read_userspace(root: &Path, path: &str) -> Result<Vec<u8>, Errno> {
        let rootfd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let fd = open_in_root_userspace(&rootfd, path)?;
        let mut s = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut s).unwrap();
        Ok(s)
    }

    #[test]
    fn plain_file_is_read() {
        let (_d, root) = tree();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let got = read_in_root(&root, "/etc/passwd", MAX_FILE_BYTES).unwrap();
        assert_eq!(got.as_deref(), Some(&b"root:x:0:0::/root:/bin/sh\n"[..]));
        assert_eq!(
            read_userspace(&root, "/etc/passwd").unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
    }

    #[test]
    fn missing_file_is_none() {
        let (_d, root) = tree();
        assert!(read_in_root(&root, "/etc/passwd", 100).unwrap().is_none());
        assert!(read_in_root(&root, "/nope/group", 100).unwrap().is_none());
    }

    #[test]
    fn hostile_absolute_symlink_stays_inside() {
        let (_d, root) = tree();
        symlink("/../../host/etc/shadow", root.join("etc/passwd")).unwrap();
        // Outside the rootfs this resolves to <tmp>/host/etc/shadow; inside it
        // must resolve to <rootfs>/host/etc/shadow, which does not exist.
        assert!(read_in_root(&root, "/etc/passwd", 100).unwrap().is_none());
        assert_eq!(read_userspace(&root, "/etc/passwd"), Err(Errno::NOENT));
        // With the in-root target present, that one is read instead.
        std::fs::create_dir_all(root.join("host/etc")).unwrap();
        std::fs::write(root.join("host/etc/shadow"), "inside\n").unwrap();
        assert_eq!(
            read_in_root(&root, "/etc/passwd", 100).unwrap().as_deref(),
            Some(&b"inside\n"[..])
        );
        assert_eq!(read_userspace(&root, "/etc/passwd").unwrap(), b"inside\n");
    }

    #[test]
    fn hostile_relative_symlink_stays_inside() {
        let (_d, root) = tree();
        symlink("../../host/etc/shadow", root.join("etc/passwd")).unwrap();
        assert!(read_in_root(&root, "/etc/passwd", 100).unwrap().is_none());
        assert_eq!(read_userspace(&root, "/etc/passwd"), Err(Errno::NOENT));
        // A symlinked directory pointing out is also contained.
        std::fs::remove_dir_all(root.join("etc")).unwrap();
        symlink("../host/etc", root.join("etc")).unwrap();
        std::fs::write(root.join("../host/etc/group"), "evil:x:0:\n").unwrap();
        assert!(read_in_root(&root, "/etc/group", 100).unwrap().is_none());
        assert_eq!(read_userspace(&root, "/etc/group"), Err(Errno::NOENT));
    }

    #[test]
    fn benign_symlinks_resolve() {
        let (_d, root) = tree();
        std::fs::create_dir_all(root.join("usr/share/base")).unwrap();
        std::fs::write(root.join("usr/share/base/passwd"), "a:x:1:1::/:/bin/sh\n").unwrap();
        symlink("../usr/share/base/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(
            read_in_root(&root, "/etc/passwd", 100).unwrap().as_deref(),
            Some(&b"a:x:1:1::/:/bin/sh\n"[..])
        );
        assert_eq!(
            read_userspace(&root, "/etc/passwd").unwrap(),
            b"a:x:1:1::/:/bin/sh\n"
        );
    }

    #[test]
    fn symlink_loop_is_not_found() {
        let (_d, root) = tree();
        symlink("/etc/passwd", root.join("etc/passwd")).unwrap();
        assert!(read_in_root(&root, "/etc/passwd", 100).unwrap().is_none());
        assert_eq!(read_userspace(&root, "/etc/passwd"), Err(Errno::LOOP));
    }

    #[test]
    fn directory_and_fifo_are_rejected() {
        let (_d, root) = tree();
        std::fs::create_dir(root.join("etc/passwd")).unwrap();
        let err = read_in_root(&root, "/etc/passwd", 100).unwrap_err();
        assert!(matches!(err, SpecError::NotARegularFile { .. }), "{err}");
        assert!(err.is_invalid_argument());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/group"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Must not block.
        let err = read_in_root(&root, "/etc/group", 100).unwrap_err();
        assert!(matches!(err, SpecError::NotARegularFile { .. }), "{err}");
    }

    #[test]
    fn size_is_capped() {
        let (_d, root) = tree();
        std::fs::write(root.join("etc/group"), vec![b'a'; 101]).unwrap();
        let err = read_in_root(&root, "/etc/group", 100).unwrap_err();
        assert!(
            matches!(err, SpecError::FileTooLarge { limit: 100, .. }),
            "{err}"
        );
        std::fs::write(root.join("etc/group"), vec![b'a'; 100]).unwrap();
        assert_eq!(
            read_in_root(&root, "/etc/group", 100)
                .unwrap()
                .map(|v| v.len()),
            Some(100)
        );
    }
}
