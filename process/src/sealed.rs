//! Sealed executables: the defence against a container overwriting the
//! host binary of a process berth runs inside the container's namespaces
//! (CVE-2019-5736, the `/proc/self/exe` escape found in runc).
//!
//! The threat: berth-runtime runs its own code inside a container's
//! namespaces (create's init until the execve of the container's program,
//! exec's joining child), and `berth-shim pause` is pid 1 of a pod's shared
//! PID namespace. The container's processes see such a process, and
//! `/proc/<pid>/exe` is a magic link to its executable: opening it, or
//! making the runtime execute `#!/proc/self/exe` and opening the link then,
//! reaches the host's file. Root in the container could keep that open and
//! write it once no process executes it any more; the next runtime call
//! would run the attacker's code as root on the host.
//!
//! Two defences, both applied:
//! - The process runs from a sealed memfd copy of its binary, so what its
//!   exe link reaches is that copy, and nobody can write, shrink or grow it
//!   (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW`, and `F_SEAL_SEAL` so
//!   the seals stay). A read-only bind mount or overlay of the host file is
//!   not enough: runc's was bypassed by poisoning the file's page cache
//!   through it; a memfd shares no page with the host file.
//! - The process is non-dumpable until it executes the container's program
//!   ([`make_non_dumpable`]): other processes cannot open its /proc entries
//!   (exe, fd, mem, ...) or ptrace it without CAP_SYS_PTRACE in the host's
//!   user namespace. The execve of the container's program makes it
//!   dumpable again, as any process.
//!
//! One sealed copy is made when berthd starts ([`SealedExe::seal`]) and
//! shared by every process started from it (berthd hands it to each shim),
//! not one per call: runc's per-call copy cost ~9 MiB per concurrent create
//! and could exhaust a node's memory. A process started some other way (by
//! hand, by a test) makes its own copy once ([`reexec_sealed`]).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{MemfdFlags, SealFlags};

/// The seals that make a memfd immutable for good.
pub const REQUIRED_SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// A sealed, in-memory copy of an executable.
#[derive(Debug)]
pub struct SealedExe {
    fd: OwnedFd,
    source: PathBuf,
}

impl SealedExe {
    /// Copies `source` into a new memfd (close-on-exec) and seals it with
    /// [`REQUIRED_SEALS`] and, where the kernel has it (6.3), `F_SEAL_EXEC`:
    /// a shared copy whose mode bits a process that reached it could
    /// clear would stop every later exec of it.
    pub fn seal(source: &Path) -> io::Result<SealedExe> {
        Self::seal_from(File::open(source)?, source, true)
    }

    /// As [`SealedExe::seal`], with exactly [`REQUIRED_SEALS`]: runc (1.1)
    /// runs from a copy as it is only when its seals are exactly these (its
    /// `is_self_cloned`, as with its own memfd-bind tool); otherwise it
    /// makes a copy of its own on every call.
    pub fn seal_exact(source: &Path) -> io::Result<SealedExe> {
        Self::seal_from(File::open(source)?, source, false)
    }

    /// Copies the open file `src`, whose path is `source`, into a new
    /// memfd named after it (its exe link reads `/memfd:<name> (deleted)`).
    fn seal_from(mut src: File, source: &Path, exec_seal: bool) -> io::Result<SealedExe> {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "berth-exe".to_owned());
        let fd = memfd(&name)?;
        let expected = src.metadata()?.len();
        let mut dst = File::from(fd);
        let copied = io::copy(&mut src, &mut dst)?;
        if copied != expected {
            return Err(io::Error::other(format!(
                "{}: copied {copied} of {expected} bytes (changed while read?)",
                source.display()
            )));
        }
        let fd = OwnedFd::from(dst);
        // F_SEAL_EXEC (Linux 6.3) also keeps the mode bits fixed; older
        // kernels refuse the flag, and the four required seals still hold.
        if !exec_seal || rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS | SealFlags::EXEC).is_err()
        {
            rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS)?;
        }
        Ok(SealedExe {
            fd,
            source: source.to_owned(),
        })
    }

    /// Takes an inherited descriptor that must already be a sealed memfd
    /// (a shim's copy from berthd); `source` is the file it was copied from.
    pub fn from_fd(fd: OwnedFd, source: PathBuf) -> io::Result<SealedExe> {
        if !is_sealed(&fd) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {} is not a sealed memfd", fd.as_raw_fd()),
            ));
        }
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        Ok(SealedExe { fd, source })
    }

    /// The file this is a copy of (what `argv[0]` of its processes says).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// A path that executes the copy: `/proc/self/fd/<n>`. It holds in this
    /// process and in a child it forks, up to and including the child's
    /// execve (the descriptor is close-on-exec; the kernel opens the file
    /// before it closes those), so it works as `Command`'s program.
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

impl AsFd for SealedExe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether `fd` is a memfd carrying every seal of [`REQUIRED_SEALS`].
pub fn is_sealed(fd: impl AsFd) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(REQUIRED_SEALS))
}

/// Whether this process runs from a sealed copy of its binary.
pub fn running_sealed() -> io::Result<bool> {
    let exe = File::open("/proc/self/exe")?;
    Ok(is_sealed(&exe))
}

/// Makes sure this process runs from a sealed copy of its binary: returns
/// at once when it does; otherwise copies its binary into a sealed memfd
/// and executes that with the same arguments and environment (descriptors
/// without close-on-exec stay open), so it never returns on success. Call
/// it first in `main`, before any thread or state exists.
pub fn reexec_sealed() -> io::Result<()> {
    if running_sealed()? {
        return Ok(());
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let sealed = SealedExe::seal_from(File::open("/proc/self/exe")?, &exe, true)?;
    // Checked before the exec, so the new image's own check cannot fail
    // and loop.
    if !is_sealed(&sealed) {
        return Err(io::Error::other("the memfd copy did not keep its seals"));
    }
    let mut args: Vec<CString> = std::env::args_os().map(cstring).collect::<Result<_, _>>()?;
    if args.is_empty() {
        args.push(cstring(exe.into_os_string())?);
    }
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(kv)
        })
        .collect::<Result<_, _>>()?;
    let e = nix::unistd::fexecve(sealed.as_fd(), &args, &env).unwrap_err();
    Err(io::Error::new(
        io::Error::from(e).kind(),
        format!("executing a sealed copy of this binary: {e} (is vm.memfd_noexec 2?)"),
    ))
}

/// Marks this process non-dumpable: no other process may open its /proc
/// entries or ptrace it without CAP_SYS_PTRACE in the host's user
/// namespace. Inherited by forked children; reset by execve.
pub fn make_non_dumpable() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(io::Error::from)
}

/// In a forked child before its exec: makes `fd` available as `target`,
/// inherited by the program it executes (no close-on-exec). Only
/// async-signal-safe system calls.
pub fn hand_over(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        return rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(io::Error::from);
    }
    // SAFETY: the child owns nothing at `target` that anything else will
    // use (it is about to exec); dup2 replaces it, and the returned owner
    // is forgotten so that the exec'd program inherits the descriptor.
    let dup = unsafe { nix::unistd::dup2_raw(fd, target) }?;
    std::mem::forget(dup);
    Ok(())
}

fn memfd(name: &str) -> io::Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) says the memfd is meant to be executed, which
    // vm.memfd_noexec = 1 requires; older kernels refuse the flag.
    match rustix::fs::memfd_create(name, flags | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(name, flags),
        r => r,
    }
    .map_err(io::Error::from)
}

fn cstring(s: OsString) -> io::Result<CString> {
    CString::new(s.into_vec()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;

    fn sealed_copy_of(bytes: &[u8]) -> (tempfile::TempDir, SealedExe) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prog");
        std::fs::write(&p, bytes).unwrap();
        let s = SealedExe::seal(&p).unwrap();
        (dir, s)
    }

    #[test]
    fn a_sealed_copy_has_the_content_and_refuses_every_change() {
        let (_dir, s) = sealed_copy_of(b"#!/bin/sh\nexit 0\n");
        assert!(is_sealed(&s));
        let mut text = String::new();
        let mut f = File::from(s.fd.try_clone().unwrap());
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "#!/bin/sh\nexit 0\n");
        // Written through a new open file description, as an attacker
        // holding /proc/<pid>/exe would: refused.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(s.exec_path())
            .unwrap();
        assert_eq!(
            w.write(b"evil").unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert!(w.set_len(0).is_err());
        assert!(w.set_len(1 << 20).is_err());
        // F_SEAL_SEAL: the set of seals is final.
        assert_eq!(
            rustix::fs::fcntl_add_seals(&s, SealFlags::FUTURE_WRITE),
            Err(rustix::io::Errno::PERM)
        );
        assert!(is_sealed(&s));
    }

    #[test]
    fn a_sealed_copy_runs_through_its_exec_path() {
        let sh = which("true");
        let s = SealedExe::seal(&sh).unwrap();
        let st = std::process::Command::new(s.exec_path()).status().unwrap();
        assert!(st.success());
        assert_eq!(s.source(), sh.as_path());
    }

    #[test]
    fn a_copy_for_runc_has_exactly_the_four_seals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prog");
        std::fs::write(&p, b"x").unwrap();
        let s = SealedExe::seal_exact(&p).unwrap();
        assert_eq!(rustix::fs::fcntl_get_seals(&s).unwrap(), REQUIRED_SEALS);
        let strict = SealedExe::seal(&p).unwrap();
        assert!(
            rustix::fs::fcntl_get_seals(&strict)
                .unwrap()
                .contains(REQUIRED_SEALS)
        );
    }

    #[test]
    fn an_ordinary_file_is_not_sealed() {
        let f = tempfile::tempfile().unwrap();
        assert!(!is_sealed(&f));
        assert!(SealedExe::from_fd(f.into(), PathBuf::from("/x")).is_err());
        // The test binary itself runs from its file.
        assert!(!running_sealed().unwrap());
    }

    #[test]
    fn a_memfd_without_seals_is_refused() {
        let fd = memfd("unsealed").unwrap();
        assert!(!is_sealed(&fd));
        assert!(SealedExe::from_fd(fd, PathBuf::from("/x")).is_err());
    }

    fn which(name: &str) -> PathBuf {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
            .unwrap()
    }
}
