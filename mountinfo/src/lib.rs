//! `/proc/<pid>/mountinfo`, one [`Entry`] per line (proc(5)): the fields
//! berth reads, paths unescaped. No dependencies: berth-runtime, the spec
//! generator, the image store and the tests all read mount tables.

/// One mount of a mountinfo table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path of the mounted filesystem that is this mount's root.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// The optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<&'a str>,
    pub fstype: &'a str,
    pub source: &'a str,
    /// Per-superblock options, comma-separated.
    pub super_options: &'a str,
}

/// The entries of a mountinfo table, in its order; malformed lines are
/// skipped.
pub fn parse(mountinfo: &str) -> impl Iterator<Item = Entry<'_>> {
    mountinfo.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if sep < 6 {
            return None;
        }
        let mut after = fields[sep + 1..].iter().copied();
        Some(Entry {
            root: unescape(fields[3]),
            mount_point: unescape(fields[4]),
            optional: fields[6..sep].to_vec(),
            fstype: after.next()?,
            source: after.next()?,
            super_options: after.next()?,
        })
    })
}

/// This process's mount table; empty when it cannot be read.
pub fn read_own() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// The mount point of the filesystem holding `path` in `mountinfo`: the
/// longest mount point `path` is under (compared by whole components).
pub fn mount_point_of(mountinfo: &str, path: &std::path::Path) -> Option<std::path::PathBuf> {
    parse(mountinfo)
        .map(|e| std::path::PathBuf::from(e.mount_point))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
}

/// The mount point of the filesystem holding one directory, read from
/// this process's mount table once and again only when the directory's
/// device changes (something was mounted over it): a stat per call
/// instead of parsing a table that grows with every container's rootfs
/// and pod namespace.
#[derive(Debug)]
pub struct MountPointCache {
    dir: std::path::PathBuf,
    cached: std::sync::Mutex<Option<(u64, std::path::PathBuf)>>,
}

impl MountPointCache {
    pub fn new(dir: &std::path::Path) -> MountPointCache {
        MountPointCache {
            dir: dir.to_owned(),
            cached: std::sync::Mutex::new(None),
        }
    }

    /// The mount point; `dir` itself when the table does not name one.
    pub fn get(&self) -> std::path::PathBuf {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(&self.dir).map(|m| m.dev()).ok();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(dev), Some((d, m))) = (dev, cached.as_ref())
            && dev == *d
        {
            return m.clone();
        }
        let found = mount_point_of(&read_own(), &self.dir).unwrap_or_else(|| self.dir.clone());
        if let Some(dev) = dev {
            *cached = Some((dev, found.clone()));
        }
        found
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_escapes() {
        let t = "\
36 35 98:0 /mnt1 /mnt/my\\040dir rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
bad line
37 35 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        let e: Vec<Entry> = parse(t).collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].root, "/mnt1");
        assert_eq!(e[0].mount_point, "/mnt/my dir");
        assert_eq!(e[0].optional, ["master:1", "shared:2"]);
        assert_eq!((e[0].fstype, e[0].source), ("ext3", "/dev/root"));
        assert_eq!(e[0].super_options, "rw,errors=continue");
        assert!(e[1].optional.is_empty());
        assert_eq!(e[1].super_options, "rw,cpu");
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b\\134c\\011d"), "a b\\c\td");
        assert_eq!(unescape("end\\04"), "end\\04");
        assert_eq!(unescape("\\09x"), "\\09x");
    }

    #[test]
    fn mount_points_match_whole_components() {
        let t = "\
1 0 8:1 / / rw - ext4 /dev/sda1 rw
2 1 8:2 / /var/lib rw - ext4 /dev/sda2 rw
3 1 8:3 / /var/li rw - ext4 /dev/sda3 rw
";
        let at = |p: &str| mount_point_of(t, std::path::Path::new(p));
        assert_eq!(at("/var/lib/berth"), Some("/var/lib".into()));
        assert_eq!(at("/var/library"), Some("/".into()));
        assert_eq!(at("/var/li/x"), Some("/var/li".into()));
    }

    #[test]
    fn the_cached_mount_point_is_the_tables() {
        let c = MountPointCache::new(std::path::Path::new("/proc/self"));
        assert_eq!(c.get(), std::path::PathBuf::from("/proc"));
        assert_eq!(c.get(), std::path::PathBuf::from("/proc"));
    }

    #[test]
    fn reads_its_own_table() {
        assert!(parse(&read_own()).any(|e| e.mount_point == "/"));
    }
}
