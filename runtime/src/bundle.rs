//! The runtime's own copy of a container's config ("sidecar").
//!
//! libcontainer 0.7 reads `<bundle>/config.json` itself and offers no way to
//! hand it an adjusted spec, so `create` writes an adjusted copy to
//! `<root>/.berth/<id>/config.json` and gives libcontainer that directory as
//! the bundle. The copy differs from the caller's config in:
//! - `root.path` and relative bind-mount sources made absolute (relative to
//!   the caller's bundle, as runc resolves them);
//! - `process.oomScoreAdj` clamped to this process's current value when it is
//!   lower (lowering needs CAP_SYS_RESOURCE; libcontainer writes it in the
//!   runtime process and fails the create otherwise);
//! - `linux.rootfsPropagation` `rshared`/`rslave`/`rprivate`/`runbindable`
//!   (runc's names, which libcontainer rejects) without the `r`: both
//!   create paths apply the root's propagation recursively anyway;
//! - with `--systemd-cgroup`, `linux.cgroupsPath` `slice:prefix:name` expanded
//!   to the cgroupfs path systemd would use (libcontainer's systemd manager,
//!   D-Bus transient units, is not built in); without a cgroupsPath, `/<id>`.
//!
//! `meta.json` next to it records the caller's bundle (reported by `state`)
//! and the init's start time (guards against pid reuse).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Paths of one container's sidecar, and its meta.json once read or
/// written by this process (a command reads it more than once: `load`'s
/// start-time check, then exec or state).
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub dir: PathBuf,
    meta: std::cell::RefCell<Option<Meta>>,
}

impl Sidecar {
    pub fn new(root: &Path, id: &str) -> Self {
        Sidecar {
            dir: root.join(".berth").join(id),
            meta: Default::default(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    pub fn read_meta(&self) -> Meta {
        self.meta
            .borrow_mut()
            .get_or_insert_with(|| {
                fs::read(self.meta_path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .map(|v| Meta {
                        bundle: v["bundle"].as_str().map(PathBuf::from),
                        init_start: v["init_start"].as_u64(),
                    })
                    .unwrap_or_default()
            })
            .clone()
    }

    pub fn write_meta(&self, meta: &Meta) -> Result<()> {
        let v = serde_json::json!({
            "bundle": meta.bundle.as_ref().map(|b| b.to_string_lossy().into_owned()),
            "init_start": meta.init_start,
        });
        write_atomic(&self.meta_path(), v.to_string().as_bytes(), 0o600)?;
        *self.meta.borrow_mut() = Some(meta.clone());
        Ok(())
    }

    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        *self.meta.borrow_mut() = None;
    }
}

#[derive(Debug, Default, Clone)]
pub struct Meta {
    /// The bundle the caller gave to `create`.
    pub bundle: Option<PathBuf>,
    /// Start time of the init (field 22 of `/proc/<pid>/stat`).
    pub init_start: Option<u64>,
}

/// Loads `<bundle>/config.json`, adjusts it (see the module doc) and writes
/// the copy into the sidecar directory (created here); returns the copy.
pub fn prepare(bundle: &Path, id: &str, sidecar: &Sidecar, systemd_cgroup: bool) -> Result<Value> {
    let config_path = bundle.join("config.json");
    let raw = fs::read(&config_path).with_context(|| format!("read {}", config_path.display()))?;
    let mut spec: Value =
        serde_json::from_slice(&raw).with_context(|| format!("parse {}", config_path.display()))?;
    if !spec.is_object() {
        bail!("{}: not a JSON object", config_path.display());
    }
    adjust(
        &mut spec,
        bundle,
        id,
        systemd_cgroup,
        current_oom_score_adj(),
    )?;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sidecar.dir)
        .with_context(|| format!("create {}", sidecar.dir.display()))?;
    // A new file in a directory create just made (and removes if it
    // fails): nothing reads it half-written, so no temp file and rename.
    // meta.json is written once, by create, when the init runs.
    let config = sidecar.config();
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&config)
        .and_then(|mut f| f.write_all(spec.to_string().as_bytes()));
    if let Err(e) = written {
        bail!("write {}: {}", config.display(), io_words(&e));
    }
    Ok(spec)
}

fn adjust(
    spec: &mut Value,
    bundle: &Path,
    id: &str,
    systemd_cgroup: bool,
    current_oom: Option<i64>,
) -> Result<()> {
    // Root file system: absolute, and it must exist.
    let root = spec
        .pointer("/root/path")
        .and_then(Value::as_str)
        .context("config.json: root.path is missing")?;
    let root = absolute(bundle, root);
    if let Err(e) = fs::metadata(&root) {
        bail!("rootfs {}: {}", root.display(), io_words(&e));
    }
    spec["root"]["path"] = Value::String(root.to_string_lossy().into_owned());

    // Relative bind-mount sources are relative to the bundle.
    if let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) {
        for m in mounts {
            let is_bind = m.get("type").and_then(Value::as_str) == Some("bind")
                || m.get("options")
                    .and_then(Value::as_array)
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            if !is_bind {
                continue;
            }
            if let Some(src) = m.get("source").and_then(Value::as_str)
                && !src.starts_with('/')
            {
                m["source"] = Value::String(bundle.join(src).to_string_lossy().into_owned());
            }
        }
    }

    // oom_score_adj can only be raised without CAP_SYS_RESOURCE.
    if let (Some(want), Some(cur)) = (
        spec.pointer("/process/oomScoreAdj").and_then(Value::as_i64),
        current_oom,
    ) && want < cur
    {
        crate::log::warn(&format!(
            "process.oomScoreAdj {want} is below the runtime's {cur} (lowering needs CAP_SYS_RESOURCE): using {cur}"
        ));
        spec["process"]["oomScoreAdj"] = Value::from(cur);
    }

    drop_false_no_new_privileges(spec.get_mut("process"));

    // Cgroup path.
    let linux = spec
        .as_object_mut()
        .and_then(|o| {
            o.entry("linux")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
        })
        .context("config.json: linux is not an object")?;
    let path = linux
        .get("cgroupsPath")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let path = if systemd_cgroup {
        systemd_to_cgroupfs(&path, id)?
    } else if path.is_empty() {
        format!("/{id}")
    } else {
        path
    };
    linux.insert("cgroupsPath".into(), Value::String(path));

    // runc's recursive rootfs propagations, which libcontainer rejects;
    // it applies every one recursively, so the plain names mean the same.
    if let Some(p) = linux.get("rootfsPropagation").and_then(Value::as_str)
        && let Some(plain) = p
            .strip_prefix('r')
            .filter(|k| matches!(*k, "shared" | "slave" | "private" | "unbindable"))
    {
        let plain = plain.to_string();
        linux.insert("rootfsPropagation".into(), Value::String(plain));
    }
    Ok(())
}

/// libcontainer 0.7 loads seccomp before dropping capabilities only when
/// `noNewPrivileges` is absent; an explicit `false` takes the late path (after
/// the drop, without no_new_privs), where loading fails with EACCES
/// (libseccomp: ECANCELED). Absent and false mean the same: drop it.
pub fn drop_false_no_new_privileges(process: Option<&mut Value>) {
    if let Some(p) = process.and_then(Value::as_object_mut)
        && p.get("noNewPrivileges") == Some(&Value::Bool(false))
    {
        p.remove("noNewPrivileges");
    }
}

fn absolute(bundle: &Path, p: &str) -> PathBuf {
    if p.starts_with('/') {
        PathBuf::from(p)
    } else {
        bundle.join(p)
    }
}

/// An io::Error in plain words, without Rust's "(os error N)" suffix.
pub fn io_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

pub fn current_oom_score_adj() -> Option<i64> {
    fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `slice:prefix:name` to the cgroupfs path systemd gives that unit, as runc
/// names it: `/a.slice/a-b.slice/<prefix>-<name>.scope` (a `.slice` name is
/// taken as is). An empty slice is `system.slice`.
pub fn systemd_to_cgroupfs(path: &str, id: &str) -> Result<String> {
    let (slice, prefix, name) = if path.is_empty() {
        ("", "berth", id)
    } else {
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            bail!("cgroupsPath {path:?}: expected slice:prefix:name with --systemd-cgroup");
        };
        (slice, prefix, name)
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut out = berth_util::systemd::expand_slice(slice)
        .map_err(|e| anyhow::anyhow!("cgroupsPath {path:?}: {e}"))?;
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') {
        bail!("cgroupsPath {path:?}: unit name contains '/'");
    }
    out.push('/');
    out.push_str(&unit);
    Ok(out)
}

/// berth_util's atomic write, its error in the runtime's words. Runtime
/// state is volatile by design (it describes processes that do not survive
/// the machine, and lives in the state dir, normally tmpfs), as runc's is.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    berth_util::fs::write_atomic(path, data, mode)
        .map_err(|e| anyhow::anyhow!("write {}: {}", path.display(), io_words(&e)))
}

/// Start time of a process in clock ticks since boot, or None if it is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths() {
        assert_eq!(
            systemd_to_cgroupfs("kubepods-besteffort-pod12.slice:cri-berth:abc", "x").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-berth-abc.scope"
        );
        assert_eq!(
            systemd_to_cgroupfs("system.slice:berth:c1", "x").unwrap(),
            "/system.slice/berth-c1.scope"
        );
        assert_eq!(
            systemd_to_cgroupfs("", "c9").unwrap(),
            "/system.slice/berth-c9.scope"
        );
        assert_eq!(
            systemd_to_cgroupfs("-.slice::foo.slice", "x").unwrap(),
            "/foo.slice"
        );
        assert!(systemd_to_cgroupfs("/abs/path", "x").is_err());
        assert!(systemd_to_cgroupfs("a--b.slice:p:n", "x").is_err());
    }

    #[test]
    fn adjusts_paths_oom_and_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        let mut spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "oomScoreAdj": -999, "noNewPrivileges": false},
            "mounts": [
                {"destination": "/a", "type": "bind", "source": "data", "options": ["rbind"]},
                {"destination": "/proc", "type": "proc", "source": "proc"}
            ],
            "linux": {"rootfsPropagation": "rslave"},
            "x-unknown": 1
        });
        adjust(&mut spec, dir.path(), "c1", false, Some(0)).unwrap();
        assert_eq!(spec["linux"]["rootfsPropagation"], "slave");
        assert_eq!(
            spec["root"]["path"],
            dir.path().join("rootfs").to_string_lossy().as_ref()
        );
        assert_eq!(
            spec["mounts"][0]["source"],
            dir.path().join("data").to_string_lossy().as_ref()
        );
        assert_eq!(spec["mounts"][1]["source"], "proc");
        assert_eq!(spec["process"]["oomScoreAdj"], 0);
        assert!(spec["process"].get("noNewPrivileges").is_none());
        assert_eq!(spec["linux"]["cgroupsPath"], "/c1");
        assert_eq!(spec["x-unknown"], 1);

        let mut spec = serde_json::json!({"root": {"path": "missing"}});
        let err = adjust(&mut spec, dir.path(), "c1", false, Some(0)).unwrap_err();
        assert!(
            err.to_string().ends_with("No such file or directory"),
            "{err}"
        );
    }

    #[test]
    fn start_time_of_self() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(process_start_time(pid).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
