//! Reading an entry's type and metadata from its tar header and PAX
//! records, validated before anything is written.

use std::io::Read;
use std::path::Path;

use rustix::fs::Timespec;
use tar::EntryType;

use super::error::UnpackError;

/// What an entry creates (whiteouts are recognised by name, before this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl Kind {
    /// Classifies an entry; `Ok(None)` for entries that carry no file (PAX
    /// global headers).
    pub(crate) fn of(
        header: &tar::Header,
        raw_name: &[u8],
        path: &Path,
    ) -> Result<Option<Self>, UnpackError> {
        let kind = match header.entry_type() {
            // Pre-POSIX archives mark directories only by a trailing slash
            // on an old-style ('\0') regular entry; Go's archive/tar (thus
            // docker and containerd) reads them as directories too.
            // (`EntryType` maps '\0' to `Regular`: look at the raw byte.)
            EntryType::Regular if header.as_old().linkflag[0] == 0 && raw_name.ends_with(b"/") => {
                Kind::Dir
            }
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            EntryType::Char => Kind::CharDevice,
            EntryType::Block => Kind::BlockDevice,
            EntryType::Fifo => Kind::Fifo,
            EntryType::XGlobalHeader => return Ok(None),
            EntryType::GNUSparse => return Err(unsupported(path, "GNU sparse file".to_owned())),
            other => {
                let kind = format!("tar type flag {:?}", char::from(other.as_byte()));
                return Err(unsupported(path, kind));
            }
        };
        Ok(Some(kind))
    }
}

fn unsupported(path: &Path, kind: String) -> UnpackError {
    UnpackError::UnsupportedEntry {
        path: path.to_owned(),
        kind,
    }
}

fn invalid(path: &Path, reason: &'static str) -> UnpackError {
    UnpackError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

/// An extended attribute from a `SCHILY.xattr.<name>` PAX record.
#[derive(Debug)]
pub(crate) struct Xattr {
    pub(crate) name: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// The metadata an entry asks for.
#[derive(Debug)]
pub(crate) struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: Timespec,
    pub(crate) xattrs: Vec<Xattr>,
}

/// Reads and validates the metadata of `entry` (the tar crate has already
/// applied PAX `uid`/`gid`/`size`/`path`/`linkpath`; `mtime` and xattrs are
/// ours to read).
pub(crate) fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
) -> Result<Meta, UnpackError> {
    let header = entry.header();
    let old = header.as_old();
    let mode = numeric(header.mode().map(u64::from), &old.mode)
        .map_err(|_| invalid(path, "mode field is not a number"))?;
    // Masked: the file type bits some writers add are not ours to apply.
    let mode = (mode & 0o7777) as u32;
    let uid =
        numeric(header.uid(), &old.uid).map_err(|_| invalid(path, "uid field is not a number"))?;
    let uid = id(uid).ok_or_else(|| invalid(path, "uid out of range"))?;
    let gid =
        numeric(header.gid(), &old.gid).map_err(|_| invalid(path, "gid field is not a number"))?;
    let gid = id(gid).ok_or_else(|| invalid(path, "gid out of range"))?;
    let header_mtime = numeric(header.mtime(), &old.mtime)
        .map_err(|_| invalid(path, "mtime field is not a number"))?;
    let pax = read_pax(entry, path)?;
    let mtime = match pax.mtime {
        Some(t) => t,
        None => Timespec {
            tv_sec: i64::try_from(header_mtime).map_err(|_| invalid(path, "mtime out of range"))?,
            tv_nsec: 0,
        },
    };
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs: pax.xattrs,
    })
}

/// A numeric header field as the tar crate parsed it, except that a field
/// left empty (all NUL or spaces) is 0, as Go's archive/tar (thus docker
/// and containerd) reads it; the tar crate refuses it.
fn numeric(parsed: std::io::Result<u64>, raw: &[u8]) -> std::io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

/// A numeric owner; `u32::MAX` is excluded because to `chown` it means
/// "leave unchanged".
fn id(value: u64) -> Option<u32> {
    u32::try_from(value).ok().filter(|&v| v != u32::MAX)
}

/// What we use from an entry's PAX records.
#[derive(Debug, Default)]
struct Pax {
    mtime: Option<Timespec>,
    xattrs: Vec<Xattr>,
}

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// PAX sparse formats (0.0, 0.1, 1.0) store a map in records or data; an
/// entry that has them is not a plain file even if typed '0'.
const SPARSE_PREFIX: &[u8] = b"GNU.sparse.";

fn read_pax<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<Pax, UnpackError> {
    let mut pax = Pax::default();
    let Some(records) = entry.pax_extensions().map_err(|e| tar_error(path, e))? else {
        return Ok(pax);
    };
    for record in records {
        let record = record.map_err(|e| tar_error(path, e))?;
        let key = record.key_bytes();
        if let Some(name) = key.strip_prefix(XATTR_PREFIX) {
            if name.is_empty() || name.contains(&0) {
                return Err(invalid(path, "malformed xattr name"));
            }
            pax.xattrs.push(Xattr {
                name: name.to_vec(),
                value: record.value_bytes().to_vec(),
            });
        } else if key == b"mtime" {
            let t = parse_pax_time(record.value_bytes())
                .ok_or_else(|| invalid(path, "malformed PAX mtime"))?;
            pax.mtime = Some(t);
        } else if key.starts_with(SPARSE_PREFIX) {
            return Err(unsupported(path, "PAX sparse file".to_owned()));
        }
    }
    Ok(pax)
}

/// A stream error while reading `path`, with the entry named in the message.
pub(crate) fn tar_error(path: &Path, e: std::io::Error) -> UnpackError {
    UnpackError::Tar(std::io::Error::new(
        e.kind(),
        format!("entry {:?}: {e}", path),
    ))
}

/// Parses a PAX time, `[-]seconds[.fraction]` (as Go's archive/tar does:
/// digits only, fraction truncated to nanoseconds).
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let whole: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    if secs.starts_with('-') && nanos > 0 {
        // -1.25 is 1.25 s before the epoch: tv_sec -2 plus 0.75 s.
        return Some(Timespec {
            tv_sec: whole.checked_sub(1)?,
            tv_nsec: (1_000_000_000 - nanos) as _,
        });
    }
    Some(Timespec {
        tv_sec: whole,
        tv_nsec: nanos as _,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<(i64, i64)> {
        parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec))
    }

    #[test]
    fn pax_times() {
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789999"), Some((1, 123_456_789)));
        assert_eq!(t("12."), Some((12, 0)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-0.5"), Some((-1, 500_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        for bad in ["", ".5", "1.5x", "abc", "1.-5", "1e9"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_exclude_minus_one() {
        assert_eq!(id(0), Some(0));
        assert_eq!(id(65534), Some(65534));
        assert_eq!(id(u64::from(u32::MAX)), None);
        assert_eq!(id(1 << 40), None);
    }

    #[test]
    fn empty_numeric_fields_are_zero() {
        let bad = || Err(std::io::Error::other("not a number"));
        assert_eq!(numeric(bad(), &[0; 8]).ok(), Some(0));
        assert_eq!(numeric(bad(), b"       \0").ok(), Some(0));
        assert!(numeric(bad(), b"12x\0\0\0\0\0").is_err());
        assert_eq!(numeric(Ok(5), b"0000005\0").ok(), Some(5));
    }
}
