//! What follows pivot_root, in libcontainer's order: the root's
//! propagation, /dev/null, sysctls, a read-only root, read-only and masked
//! paths.

use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::oci_spec::runtime::Linux;
use libcontainer::syscall::Syscall;
use nix::mount::MsFlags as NixMsFlags;
use nix_lc::mount::MsFlags;

/// pivot_root into the rootfs (libcontainer's: the old root stacked
/// under the new one at `.` and detached).
pub fn pivot(sys: &dyn Syscall, rootfs: &Path) -> Result<()> {
    sys.pivot_rootfs(rootfs).context("pivot_root")
}

/// Everything after pivot_root, in libcontainer's order.
pub fn finish(sys: &dyn Syscall, linux: &Linux, readonly_root: bool) -> Result<()> {
    let propagation = match linux.rootfs_propagation().as_deref() {
        Some("shared" | "rshared") => Some(MsFlags::MS_SHARED),
        Some("unbindable" | "runbindable") => Some(MsFlags::MS_UNBINDABLE),
        _ => None,
    };
    if let Some(flags) = propagation {
        sys.mount(None, Path::new("/"), None, flags, None)
            .context("set the propagation of the root")?;
    }
    reopen_dev_null()?;
    for (key, value) in linux.sysctl().as_ref().into_iter().flatten() {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, value).with_context(|| format!("sysctl {key}"))?;
    }
    if readonly_root {
        let flags = nix::sys::statfs::statfs("/").context("statfs /")?.flags();
        let keep = NixMsFlags::from_bits_truncate(flags.bits());
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_RDONLY
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::from_bits_truncate(keep.bits()),
            None,
        )
        .context("remount / read-only")?;
    }
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        let path = Path::new(p);
        match sys.mount(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ) {
            Ok(()) => {}
            Err(libcontainer::syscall::SyscallError::Nix(nix_lc::errno::Errno::ENOENT)) => continue,
            Err(e) => return Err(e).with_context(|| format!("read-only path {p}")),
        }
        sys.mount(
            Some(path),
            path,
            None,
            MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY,
            None,
        )
        .with_context(|| format!("read-only path {p}"))?;
    }
    let masked = linux.masked_paths().as_deref().unwrap_or_default();
    if !masked.is_empty() {
        let null = fs::File::open("/dev/null").context("open /dev/null")?;
        check_dev_null(&null)?;
        for p in masked {
            let path = Path::new(p);
            let Ok(md) = fs::metadata(path) else {
                continue;
            };
            if md.is_dir() {
                sys.mount(
                    Some(Path::new("tmpfs")),
                    path,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None,
                )
            } else {
                let from = PathBuf::from(format!("/proc/self/fd/{}", null.as_raw_fd()));
                sys.mount(Some(&from), path, None, MsFlags::MS_BIND, None)
            }
            .with_context(|| format!("mask {p}"))?;
        }
    }
    Ok(())
}

/// /dev/null must be the null device, not something the image put there.
fn check_dev_null(f: &fs::File) -> Result<()> {
    let st = nix::sys::stat::fstat(f).context("stat /dev/null")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        bail!("/dev/null in the container is not the null device");
    }
    Ok(())
}

/// Standard fds on the host's /dev/null move to the container's.
fn reopen_dev_null() -> Result<()> {
    let mut null: Option<fs::File> = None;
    for fd in 0..3 {
        // SAFETY: 0..3 stay open for the whole process.
        let stdio = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(st) = nix::sys::stat::fstat(stdio) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3) {
            if null.is_none() {
                let f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .context("open /dev/null")?;
                check_dev_null(&f)?;
                null = Some(f);
            }
            if let Some(f) = &null {
                // SAFETY: both fds are open; fd is replaced atomically.
                if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
                    return Err(std::io::Error::last_os_error()).context("reopen /dev/null");
                }
            }
        }
    }
    Ok(())
}
