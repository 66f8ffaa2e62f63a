//! The process user: uid, gid and additional gids, from the CRI security
//! context or the image's USER, resolved against the image's /etc/passwd and
//! /etc/group (read inside the rootfs, see [`crate::rootfs`]).
//!
//! containerd 1.7's rules:
//! - the user string is `run_as_username` or `run_as_user`, with
//!   `:run_as_group` appended; `run_as_group` alone is an error; with no
//!   CRI user the image USER is used (`uid`, `name`, `uid:gid`, `name:group`,
//!   `uid:group`, `name:gid`);
//! - a lone uid takes its gid from /etc/passwd (0 when absent, and a missing
//!   /etc/passwd is fine); a name must exist in /etc/passwd; with an explicit
//!   group the passwd gid is not used and a group name must exist in /etc/group;
//! - additional gids: the primary gid (CVE-2023-25173), the groups of
//!   /etc/group listing the user as a member (policy Merge, the default; not
//!   with Strict), and the CRI supplemental groups; sorted, deduplicated.

use std::path::Path;

use k8s_cri::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};

use crate::error::SpecError;
use crate::rootfs::{MAX_FILE_BYTES, read_in_root};

/// The resolved identity of the container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lazily read /etc/passwd and /etc/group of one rootfs.
struct Db<'a> {
    rootfs: &'a Path,
    passwd: Option<Option<Vec<PasswdEntry>>>,
    group: Option<Option<Vec<GroupEntry>>>,
}

impl<'a> Db<'a> {
    fn new(rootfs: &'a Path) -> Self {
        Db {
            rootfs,
            passwd: None,
            group: None,
        }
    }

    /// `None` when the image has no /etc/passwd.
    fn passwd(&mut self) -> Result<Option<&[PasswdEntry]>, SpecError> {
        if self.passwd.is_none() {
            let text = read_in_root(self.rootfs, "/etc/passwd", MAX_FILE_BYTES)?;
            self.passwd = Some(text.map(|t| parse_passwd(&String::from_utf8_lossy(&t))));
        }
        Ok(self.passwd.as_ref().and_then(|p| p.as_deref()))
    }

    /// `None` when the image has no /etc/group.
    fn group(&mut self) -> Result<Option<&[GroupEntry]>, SpecError> {
        if self.group.is_none() {
            let text = read_in_root(self.rootfs, "/etc/group", MAX_FILE_BYTES)?;
            self.group = Some(text.map(|t| parse_group(&String::from_utf8_lossy(&t))));
        }
        Ok(self.group.as_ref().and_then(|g| g.as_deref()))
    }

    fn user_by_name(&mut self, name: &str) -> Result<PasswdEntry, SpecError> {
        self.passwd()?
            .and_then(|p| p.iter().find(|u| u.name == name).cloned())
            .ok_or_else(|| SpecError::UserNotFound(name.into()))
    }

    fn user_by_uid(&mut self, uid: u32) -> Result<Option<PasswdEntry>, SpecError> {
        Ok(self
            .passwd()?
            .and_then(|p| p.iter().find(|u| u.uid == uid).cloned()))
    }

    fn gid_by_name(&mut self, name: &str) -> Result<u32, SpecError> {
        self.group()?
            .and_then(|g| g.iter().find(|g| g.name == name).map(|g| g.gid))
            .ok_or_else(|| SpecError::GroupNotFound(name.into()))
    }

    /// Gids of the groups listing `user` as a member, except a group named
    /// like the user (its primary group, as containerd).
    fn member_gids(&mut self, user: &str) -> Result<Vec<u32>, SpecError> {
        Ok(self
            .group()?
            .map(|groups| {
                groups
                    .iter()
                    .filter(|g| g.name != user && g.members.iter().any(|m| m == user))
                    .map(|g| g.gid)
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first()?).to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: (*f.first()?).to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn id_u32(v: i64, what: &str) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::InvalidUser {
        user: v.to_string(),
        reason: format!("{what} must be between 0 and {}", u32::MAX),
    })
}

/// The user string from the CRI security context, or `None` when it sets
/// no user.
fn cri_user_string(sc: &LinuxContainerSecurityContext) -> Result<Option<String>, SpecError> {
    let mut user = match &sc.run_as_user {
        Some(u) => Some(id_u32(u.value, "run_as_user")?.to_string()),
        None => None,
    };
    if !sc.run_as_username.is_empty() {
        user = Some(sc.run_as_username.clone());
    }
    match (&user, &sc.run_as_group) {
        (None, Some(g)) => Err(SpecError::GroupWithoutUser(g.value)),
        (Some(u), Some(g)) => Ok(Some(format!("{u}:{}", id_u32(g.value, "run_as_group")?))),
        (u, None) => Ok(u.clone()),
    }
}

/// A part of a user string: numeric ids are ids, anything else a name.
enum Part<'s> {
    Id(u32),
    Name(&'s str),
}

fn part<'s>(s: &'s str, user: &str) -> Result<Part<'s>, SpecError> {
    if s.is_empty() {
        return Err(SpecError::InvalidUser {
            user: user.into(),
            reason: "empty user or group".into(),
        });
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map(Part::Id).map_err(|_| SpecError::InvalidUser {
            user: user.into(),
            reason: "id out of range".into(),
        });
    }
    Ok(Part::Name(s))
}

/// Resolves the process identity. `image_user` is the image config's USER.
pub(crate) fn resolve(
    sc: Option<&LinuxContainerSecurityContext>,
    image_user: Option<&str>,
    rootfs: &Path,
) -> Result<Identity, SpecError> {
    let mut db = Db::new(rootfs);
    let userstr = match sc.map(cri_user_string).transpose()?.flatten() {
        Some(u) => u,
        None => image_user.unwrap_or("").trim().to_string(),
    };

    // (uid, gid, name of the user when known)
    let (uid, gid, name) = if userstr.is_empty() {
        (0, 0, None)
    } else {
        let mut split = userstr.split(':');
        let user_part = split.next().unwrap_or("");
        let group_part = split.next();
        if split.next().is_some() {
            return Err(SpecError::InvalidUser {
                user: userstr.clone(),
                reason: "expected user, user:group".into(),
            });
        }
        match group_part {
            None => match part(user_part, &userstr)? {
                Part::Id(uid) => match db.user_by_uid(uid)? {
                    Some(u) => (uid, u.gid, Some(u.name)),
                    None => (uid, 0, None),
                },
                Part::Name(n) => {
                    let u = db.user_by_name(n)?;
                    (u.uid, u.gid, Some(u.name))
                }
            },
            Some(g) => {
                let (uid, name) = match part(user_part, &userstr)? {
                    Part::Id(uid) => (uid, None),
                    Part::Name(n) => {
                        let u = db.user_by_name(n)?;
                        (u.uid, Some(u.name))
                    }
                };
                let gid = match part(g, &userstr)? {
                    Part::Id(gid) => gid,
                    Part::Name(n) => db.gid_by_name(n)?,
                };
                (uid, gid, name)
            }
        }
    };

    let strict = sc
        .is_some_and(|sc| sc.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32);
    let mut gids = vec![gid];
    if !strict {
        let name = match name {
            Some(n) => Some(n),
            None => db.user_by_uid(uid)?.map(|u| u.name),
        };
        if let Some(name) = name {
            gids.extend(db.member_gids(&name)?);
        }
    }
    for g in sc
        .map(|sc| sc.supplemental_groups.as_slice())
        .unwrap_or(&[])
    {
        gids.push(u32::try_from(*g).map_err(|_| SpecError::InvalidUser {
            user: g.to_string(),
            reason: "supplemental group out of range".into(),
        })?);
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(Identity {
        uid,
        gid,
        additional_gids: gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::Int64Value;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1::/:/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
broken:x:notanumber:1::/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:root
users:x:100:alice,bob
alice:x:1000:alice
wheel:x:10: alice , root
audio:x:29:bob
";

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        if let Some(p) = passwd {
            std::fs::write(d.path().join("etc/passwd"), p).unwrap();
        }
        if let Some(g) = group {
            std::fs::write(d.path().join("etc/group"), g).unwrap();
        }
        d
    }

    fn sc() -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext::default()
    }

    fn id(uid: u32, gid: u32, extra: &[u32]) -> Identity {
        Identity {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn image_user_forms() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        let p = r.path();
        // Nothing: root, with root's groups (wheel lists root).
        assert_eq!(resolve(None, None, p).unwrap(), id(0, 0, &[0, 10]));
        assert_eq!(resolve(None, Some(""), p).unwrap(), id(0, 0, &[0, 10]));
        // Name: uid and gid from passwd, member groups (not its own "alice").
        assert_eq!(
            resolve(None, Some("alice"), p).unwrap(),
            id(1000, 1000, &[10, 100, 1000])
        );
        // Uid: gid from passwd.
        assert_eq!(
            resolve(None, Some("1001"), p).unwrap(),
            id(1001, 100, &[29, 100])
        );
        // Unknown uid: gid 0, no member groups.
        assert_eq!(resolve(None, Some("4242"), p).unwrap(), id(4242, 0, &[0]));
        // uid:gid: no lookups for the ids themselves.
        assert_eq!(
            resolve(None, Some("1000:5"), p).unwrap(),
            id(1000, 5, &[5, 10, 100])
        );
        // name:group, uid:group, name:gid.
        assert_eq!(
            resolve(None, Some("bob:wheel"), p).unwrap(),
            id(1001, 10, &[10, 29, 100])
        );
        assert_eq!(
            resolve(None, Some("1000:audio"), p).unwrap(),
            id(1000, 29, &[10, 29, 100])
        );
        assert_eq!(
            resolve(None, Some("alice:7"), p).unwrap(),
            id(1000, 7, &[7, 10, 100])
        );
    }

    #[test]
    fn unknown_names_are_invalid_argument() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        let e = resolve(None, Some("mallory"), r.path()).unwrap_err();
        assert!(
            matches!(&e, SpecError::UserNotFound(n) if n == "mallory"),
            "{e}"
        );
        assert!(e.is_invalid_argument());
        let e = resolve(None, Some("alice:nogroup"), r.path()).unwrap_err();
        assert!(
            matches!(&e, SpecError::GroupNotFound(n) if n == "nogroup"),
            "{e}"
        );
        assert!(e.is_invalid_argument());
        // A malformed line is not a user.
        let e = resolve(None, Some("broken"), r.path()).unwrap_err();
        assert!(matches!(e, SpecError::UserNotFound(_)));
        let e = resolve(None, Some("a:b:c"), r.path()).unwrap_err();
        assert!(matches!(e, SpecError::InvalidUser { .. }));
        let e = resolve(None, Some("1000:"), r.path()).unwrap_err();
        assert!(matches!(e, SpecError::InvalidUser { .. }));
        let e = resolve(None, Some("99999999999"), r.path()).unwrap_err();
        assert!(matches!(e, SpecError::InvalidUser { .. }));
    }

    #[test]
    fn missing_passwd_is_fine_for_numeric_users() {
        let r = rootfs(None, None);
        assert_eq!(
            resolve(None, Some("1234"), r.path()).unwrap(),
            id(1234, 0, &[0])
        );
        assert_eq!(
            resolve(None, Some("1234:55"), r.path()).unwrap(),
            id(1234, 55, &[55])
        );
        assert_eq!(resolve(None, None, r.path()).unwrap(), id(0, 0, &[0]));
        let e = resolve(None, Some("alice"), r.path()).unwrap_err();
        assert!(matches!(e, SpecError::UserNotFound(_)));
        // No /etc at all.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(None, Some("7"), empty.path()).unwrap(),
            id(7, 0, &[0])
        );
    }

    #[test]
    fn security_context_wins_over_image() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        let p = r.path();
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 1001 });
        assert_eq!(
            resolve(Some(&s), Some("alice"), p).unwrap(),
            id(1001, 100, &[29, 100])
        );
        s.run_as_group = Some(Int64Value { value: 3000 });
        s.supplemental_groups = vec![4000, 29];
        assert_eq!(
            resolve(Some(&s), Some("alice"), p).unwrap(),
            id(1001, 3000, &[29, 100, 3000, 4000])
        );
        // Username wins over uid.
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 1001 });
        s.run_as_username = "alice".into();
        assert_eq!(
            resolve(Some(&s), None, p).unwrap(),
            id(1000, 1000, &[10, 100, 1000])
        );
        // uid 0 explicitly set overrides the image's user.
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 0 });
        assert_eq!(resolve(Some(&s), Some("alice"), p).unwrap().uid, 0);
    }

    #[test]
    fn group_without_user_is_an_error() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        let mut s = sc();
        s.run_as_group = Some(Int64Value { value: 5 });
        let e = resolve(Some(&s), Some("alice"), r.path()).unwrap_err();
        assert!(matches!(e, SpecError::GroupWithoutUser(5)), "{e}");
        assert!(e.is_invalid_argument());
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: -1 });
        assert!(resolve(Some(&s), None, r.path()).is_err());
    }

    #[test]
    fn strict_policy_ignores_image_groups() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        let mut s = sc();
        s.run_as_username = "alice".into();
        s.supplemental_groups = vec![4000];
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            resolve(Some(&s), None, r.path()).unwrap(),
            id(1000, 1000, &[1000, 4000])
        );
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Merge as i32;
        assert_eq!(
            resolve(Some(&s), None, r.path()).unwrap(),
            id(1000, 1000, &[10, 100, 1000, 4000])
        );
    }

    #[test]
    fn hostile_passwd_symlink_is_not_followed_out() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(d.path().join("host/etc")).unwrap();
        // The "host" passwd knows mallory; the image passwd points at it.
        std::fs::write(
            d.path().join("host/etc/passwd"),
            "mallory:x:0:0::/:/bin/sh\n",
        )
        .unwrap();
        symlink("/../../host/etc/passwd", root.join("etc/passwd")).unwrap();
        symlink("../../host/etc/passwd", root.join("etc/group")).unwrap();
        let e = resolve(None, Some("mallory"), &root).unwrap_err();
        assert!(matches!(e, SpecError::UserNotFound(_)), "{e}");
        // Numeric users still work (as with no passwd at all).
        assert_eq!(resolve(None, Some("5"), &root).unwrap(), id(5, 0, &[0]));
    }
}
