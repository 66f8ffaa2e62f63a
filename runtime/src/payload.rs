//! The last steps of starting a container process, shared by the direct
//! exec (setns_exec.rs) and the direct create (direct_create.rs): once the
//! process is in the container's namespaces, cgroups and root, set its
//! rlimits, no_new_privs, umask, working directory, groups and ids, mark
//! inherited fds close-on-exec, load seccomp (before dropping capabilities
//! when no_new_privs is off, so loading may use CAP_SYS_ADMIN, as runc
//! does; as late as possible otherwise), drop capabilities, add HOME from
//! the container's passwd, find the program, and execve it.
//!
//! `ready` runs just before execve, when nothing but the exec itself can
//! fail: the direct create reports the container created there and waits
//! for `start`.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::capabilities;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Process};
use libcontainer::syscall::syscall::create_syscall;
use nix_lc::unistd::{Gid, Uid};

/// The PATH a process without one is searched with (runc's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether a value of a JSON spec is set: not null, nor an empty string,
/// array or object.
pub fn is_set(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Whether a process (JSON) sets an attribute these steps do not apply,
/// which only libcontainer's path does.
pub fn has_libcontainer_attribute(process: &serde_json::Value) -> bool {
    [
        "apparmorProfile",
        "selinuxLabel",
        "ioPriority",
        "scheduler",
        "execCPUAffinity",
    ]
    .iter()
    .any(|key| is_set(&process[key]))
}

/// Never returns on success: the process image is replaced.
pub fn setup_and_exec(
    p: &Process,
    seccomp: Option<&LinuxSeccomp>,
    ready: impl FnOnce() -> Result<()>,
) -> Result<std::convert::Infallible> {
    let sys = create_syscall();
    for rlimit in p.rlimits().as_deref().unwrap_or_default() {
        sys.set_rlimit(rlimit)
            .with_context(|| format!("set rlimit {:?}", rlimit.typ()))?;
    }
    if p.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().context("set no_new_privs")?;
    }
    let user = p.user();
    if let Some(umask) = user.umask() {
        let mode = nix::sys::stat::Mode::from_bits(umask)
            .with_context(|| format!("invalid umask {umask:o}"))?;
        nix::sys::stat::umask(mode);
    }
    // A directory only the target user may enter is entered after set_id.
    let chdir_later = match nix::unistd::chdir(p.cwd()) {
        Ok(()) => false,
        Err(nix::errno::Errno::EPERM | nix::errno::Errno::EACCES) => true,
        Err(e) => return Err(e).with_context(|| format!("chdir {}", p.cwd().display())),
    };
    // Always set: an empty list clears the runtime's own groups.
    let groups: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    sys.set_groups(groups.as_slice())
        .context("set supplementary groups")?;
    sys.set_id(Uid::from_raw(user.uid()), Gid::from_raw(user.gid()))
        .with_context(|| format!("set uid {} gid {}", user.uid(), user.gid()))?;
    sys.close_range(0).context("close inherited fds")?;
    let nnp = p.no_new_privileges() == Some(true);
    if !nnp && let Some(seccomp) = seccomp {
        crate::seccomp::load(seccomp)?;
    }
    capabilities::reset_effective(sys.as_ref()).context("reset effective capabilities")?;
    if let Some(caps) = p.capabilities() {
        capabilities::drop_privileges(caps, sys.as_ref()).context("drop capabilities")?;
    }
    if chdir_later {
        nix::unistd::chdir(p.cwd()).with_context(|| format!("chdir {}", p.cwd().display()))?;
    }
    // A cwd outside the container's root (a leaked fd's directory) reads
    // as unreachable: refuse it (runc GHSA-xr7r-f8xq-vfvv).
    let cwd = nix::unistd::getcwd().context("getcwd")?;
    if !cwd.is_absolute() {
        bail!("the working directory is outside the container");
    }
    if nnp && let Some(seccomp) = seccomp {
        crate::seccomp::load(seccomp)?;
    }
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|h| !h.is_empty()))
        && let Some(home) = home_of(user.uid(), Path::new("/etc/passwd"))
    {
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={home}"));
    }
    let args = p.args().as_deref().unwrap_or_default();
    let Some(arg0) = args.first() else {
        bail!("process.args is empty");
    };
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let executable =
        |c: &Path| nix::unistd::access(c, nix::unistd::AccessFlags::X_OK).is_ok() && c.is_file();
    // A path is checked too: a create must fail on a program that is not
    // there, not the start after it (libcontainer's and runc's rule).
    let program = resolve(arg0, path_var, executable)
        .filter(|p| executable(p))
        .with_context(|| format!("executable {arg0:?} not found in the container"))?;
    let cstr = |s: &[u8]| CString::new(s).context("NUL byte in an argument or variable");
    let program = cstr(program.as_os_str().as_bytes())?;
    let argv = args
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let envp = env
        .iter()
        .map(|e| cstr(e.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    ready()?;
    let e = nix::unistd::execve(&program, &argv, &envp).unwrap_err();
    Err(e).with_context(|| format!("execve {arg0:?}"))
}

/// The program `arg0` names: itself when it holds a slash, else the first
/// executable of that name in `path_var`'s directories (execvp's rule).
fn resolve(arg0: &str, path_var: &str, executable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if arg0.contains('/') {
        return Some(PathBuf::from(arg0));
    }
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
        .find(|c| executable(c))
}

/// The home directory of `uid` in a passwd file, if listed. The file is
/// the container's: a FIFO there must not hang the exec (opened without
/// blocking, regular files only) nor a huge one fill memory (first 4 MiB).
fn home_of(uid: u32, passwd: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(passwd)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(4 << 20).read_to_string(&mut text).ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid) && !f[5].is_empty()).then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_like_execvp() {
        let exists = |names: &'static [&'static str]| {
            move |p: &Path| names.iter().any(|n| p == Path::new(n))
        };
        assert_eq!(
            resolve("sh", "/usr/bin:/bin", exists(&["/bin/sh"])),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            resolve("sh", "/usr/bin:/bin", exists(&["/usr/bin/sh", "/bin/sh"])),
            Some(PathBuf::from("/usr/bin/sh"))
        );
        assert_eq!(resolve("sh", "/usr/bin", exists(&["/bin/sh"])), None);
        // A slash: the path as given, not searched.
        assert_eq!(
            resolve("./run", "/bin", exists(&[])),
            Some(PathBuf::from("./run"))
        );
        assert_eq!(
            resolve("x", ":/bin", exists(&["./x"])),
            Some(PathBuf::from("./x"))
        );
    }

    #[test]
    fn home_comes_from_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("passwd");
        std::fs::write(
            &f,
            "root:x:0:0:root:/root:/bin/sh\nbad line\nwww:x:33:33::/var/www:/bin/false\nnohome:x:5:5:::\n",
        )
        .unwrap();
        assert_eq!(home_of(0, &f).as_deref(), Some("/root"));
        assert_eq!(home_of(33, &f).as_deref(), Some("/var/www"));
        assert_eq!(home_of(5, &f), None);
        assert_eq!(home_of(7, &f), None);
        assert_eq!(home_of(0, &dir.path().join("none")), None);
        // A FIFO (nobody writing): no hang, no home.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(home_of(0, &fifo), None);
    }
}
