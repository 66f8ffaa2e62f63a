//! Creating and removing cgroups by writing the cgroup filesystem, on v1
//! (one directory per controller hierarchy) and v2 (one tree, controllers
//! enabled down the path). The root is a parameter, so the v2 layout is
//! unit-tested on a plain directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::detect::Hierarchy;

/// Controllers berth enables for pods on cgroup v2.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids", "io", "hugetlb"];

#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    hierarchy: Hierarchy,
}

fn io_at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Cgroups {
    pub fn new(root: &Path, hierarchy: Hierarchy) -> Cgroups {
        Cgroups {
            root: root.to_owned(),
            hierarchy,
        }
    }

    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// v1: every mounted controller hierarchy (symlinked aliases such as
    /// `cpu,cpuacct` skipped; `unified` left to v2 tools).
    fn v1_hierarchies(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(|e| io_at(&self.root, e))? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() && !ft.is_symlink() && e.file_name() != "unified" {
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directories `rel` occupies: one per v1 hierarchy, or one on v2.
    pub fn dirs(&self, rel: &str) -> io::Result<Vec<PathBuf>> {
        let rel = rel.trim_start_matches('/');
        Ok(match self.hierarchy {
            Hierarchy::Unified => vec![self.root.join(rel)],
            Hierarchy::Hybrid | Hierarchy::Legacy => self
                .v1_hierarchies()?
                .into_iter()
                .map(|h| h.join(rel))
                .collect(),
        })
    }

    /// Creates `rel` (and missing parents) so processes can be placed in it.
    pub fn create(&self, rel: &str) -> io::Result<()> {
        match self.hierarchy {
            Hierarchy::Unified => self.create_v2(rel),
            Hierarchy::Hybrid | Hierarchy::Legacy => {
                for h in self.v1_hierarchies()? {
                    create_v1(&h, rel)?;
                }
                Ok(())
            }
        }
    }

    fn create_v2(&self, rel: &str) -> io::Result<()> {
        let mut cur = self.root.clone();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            enable_v2_controllers(&cur)?;
            cur = cur.join(comp);
            match fs::create_dir(&cur) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_at(&cur, e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the leaf `rel` everywhere; parents stay (kubelet's, or
    /// shared). Absent is fine. It must hold no processes. On a hybrid host
    /// also the leaf in the `unified` hierarchy, which berth does not
    /// create but runc does (for its containers, below the pod's path).
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        let mut dirs = self.dirs(rel)?;
        if self.hierarchy == Hierarchy::Hybrid {
            dirs.push(self.root.join("unified").join(rel.trim_start_matches('/')));
        }
        for d in dirs {
            match fs::remove_dir(&d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at(&d, e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves process `pid` into `rel` in every hierarchy.
    pub fn add_process(&self, rel: &str, pid: u32) -> io::Result<()> {
        for d in self.dirs(rel)? {
            let f = d.join("cgroup.procs");
            fs::write(&f, pid.to_string()).map_err(|e| io_at(&f, e))?;
        }
        Ok(())
    }

    /// The directory of `rel` where memory is accounted (its OOM events):
    /// the memory hierarchy on v1, the one tree on v2.
    pub fn memory_dir(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        match self.hierarchy {
            Hierarchy::Unified => self.root.join(rel),
            Hierarchy::Hybrid | Hierarchy::Legacy => self.root.join("memory").join(rel),
        }
    }

    /// Whether `rel` exists (in the first hierarchy).
    pub fn exists(&self, rel: &str) -> bool {
        self.dirs(rel)
            .ok()
            .and_then(|d| d.into_iter().next())
            .is_some_and(|d| d.is_dir())
    }
}

/// v1: mkdir -p under one hierarchy; a new cpuset dir inherits its
/// parent's cpus and mems (an empty cpuset cannot hold tasks).
fn create_v1(hierarchy: &Path, rel: &str) -> io::Result<()> {
    let is_cpuset = hierarchy.join("cpuset.cpus").exists();
    let mut cur = hierarchy.to_owned();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        let parent = cur.clone();
        cur = cur.join(comp);
        match fs::create_dir(&cur) {
            Ok(()) if is_cpuset => {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = fs::read_to_string(parent.join(f)).map_err(|e| io_at(&parent, e))?;
                    fs::write(cur.join(f), v.trim()).map_err(|e| io_at(&cur, e))?;
                }
            }
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_at(&cur, e)),
        }
    }
    Ok(())
}

/// v2: enables in `dir`'s subtree the pod controllers it has available.
fn enable_v2_controllers(dir: &Path) -> io::Result<()> {
    let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let f = dir.join("cgroup.subtree_control");
    fs::write(&f, missing.join(" ")).map_err(|e| io_at(&f, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain directory standing in for a cgroup2 mount.
    fn fake_v2() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids rdma\n",
        )
        .unwrap();
        fs::write(d.path().join("cgroup.subtree_control"), "memory\n").unwrap();
        d
    }

    #[test]
    fn v2_creates_the_path_and_enables_controllers_on_the_way() {
        let root = fake_v2();
        let cg = Cgroups::new(root.path(), Hierarchy::Unified);
        // On a real cgroup2 fs the kernel adds these files; emulate the
        // controllers being available one level down.
        fs::create_dir(root.path().join("kubepods")).unwrap();
        fs::write(
            root.path().join("kubepods/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        cg.create("/kubepods/pod1/berth-x").unwrap();
        assert!(root.path().join("kubepods/pod1/berth-x").is_dir());
        // Root: memory was on; the others available are added (not rdma).
        let root_ctl = fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(root_ctl, "+cpu +cpuset +pids +io");
        let kp = fs::read_to_string(root.path().join("kubepods/cgroup.subtree_control")).unwrap();
        assert_eq!(kp, "+cpu +memory +pids");
        assert_eq!(cg.dirs("/kubepods/pod1/berth-x").unwrap().len(), 1);
        cg.remove("/kubepods/pod1/berth-x").unwrap();
        assert!(!root.path().join("kubepods/pod1/berth-x").exists());
        assert!(root.path().join("kubepods/pod1").exists(), "parents stay");
        cg.remove("/kubepods/pod1/berth-x").unwrap();
    }

    #[test]
    fn v1_creates_in_every_hierarchy_and_fills_cpuset() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpuset", "pids"] {
            fs::create_dir(root.path().join(h)).unwrap();
        }
        fs::write(root.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        std::os::unix::fs::symlink("memory", root.path().join("mem-alias")).unwrap();
        let cg = Cgroups::new(root.path(), Hierarchy::Legacy);
        // Plain directories do not get cpuset files from a kernel; the
        // first level is emulated by creating it with its files.
        fs::create_dir(root.path().join("cpuset/berth")).unwrap();
        fs::write(root.path().join("cpuset/berth/cpuset.cpus"), "0-1").unwrap();
        fs::write(root.path().join("cpuset/berth/cpuset.mems"), "0").unwrap();
        cg.create("/berth/berth-p").unwrap();
        assert_eq!(cg.dirs("/berth/berth-p").unwrap().len(), 3);
        assert_eq!(
            fs::read_to_string(root.path().join("cpuset/berth/berth-p/cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert!(root.path().join("memory/berth/berth-p").is_dir());
        assert!(cg.exists("/berth/berth-p"));
    }

    #[test]
    fn removing_on_a_hybrid_host_takes_the_unified_leaf_too() {
        let d = tempfile::tempdir().unwrap();
        for h in ["memory", "pids", "unified"] {
            fs::create_dir(d.path().join(h)).unwrap();
        }
        let cg = Cgroups::new(d.path(), Hierarchy::Hybrid);
        cg.create("/berth/berth-p1").unwrap();
        assert!(d.path().join("memory/berth/berth-p1").is_dir());
        assert!(!d.path().join("unified/berth").exists());
        // runc made the pod's path in the unified hierarchy for a container.
        fs::create_dir_all(d.path().join("unified/berth/berth-p1")).unwrap();
        cg.remove("/berth/berth-p1").unwrap();
        for h in ["memory", "pids", "unified"] {
            assert!(!d.path().join(h).join("berth/berth-p1").exists(), "{h}");
        }
        // Absent everywhere is fine.
        cg.remove("/berth/berth-p1").unwrap();
    }
}
