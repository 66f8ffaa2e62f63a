//! Lexical handling of archive paths. Nothing here touches the filesystem:
//! it turns the raw bytes of a tar name into a list of safe components, and
//! recognises whiteout names.
//!
//! The rules (the same for entry names and hard link targets):
//! - a leading `/` is ignored: absolute names are relative to the layer root,
//!   as containerd treats them;
//! - empty and `.` components are dropped (`./a//b/` is `a/b`);
//! - `..` removes the previous component, like Go's `filepath.Clean` that
//!   docker and containerd apply; a `..` with nothing left to remove would
//!   climb above the root. No image builder writes such a name, so it is
//!   treated as hostile ([`PathProblem::EscapesRoot`]) rather than clamped.
//!
//! Symlinks are not considered here: the resulting components are resolved
//! by the kernel with `RESOLVE_IN_ROOT` (see `resolve.rs`), which confines
//! them.

/// One component of a normalized path: non-empty, without `/` or NUL, and
/// never `.` or `..`. Safe to pass as the final name of an `*at()` syscall.
pub(crate) type Component = Vec<u8>;

/// Why a raw name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    /// A NUL byte (possible in PAX and GNU long names): the kernel would
    /// silently truncate the name there.
    Nul,
    /// A `..` climbs above the layer root.
    EscapesRoot,
}

/// Splits and normalizes a raw archive name (see the module docs). An empty
/// result names the layer root itself.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<Component>, PathProblem> {
    if raw.contains(&0) {
        return Err(PathProblem::Nul);
    }
    let mut comps: Vec<Component> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if comps.pop().is_none() {
                    return Err(PathProblem::EscapesRoot);
                }
            }
            name => comps.push(name.to_vec()),
        }
    }
    Ok(comps)
}

/// Joins components into a relative path for `openat2`; the root is `.`.
pub(crate) fn join(comps: &[Component]) -> Vec<u8> {
    if comps.is_empty() {
        return b".".to_vec();
    }
    let mut out = Vec::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// Prefix of a whiteout name (OCI image-spec "Whiteouts").
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What the final component of an entry name means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    /// An ordinary file name.
    Plain,
    /// `.wh..wh..opq`: the containing directory is opaque.
    Opaque,
    /// `.wh.<target>`: `<target>` in the same directory is deleted. The
    /// target is not validated here (it may be empty, `.` or `..`).
    Whiteout(&'a [u8]),
}

/// Classifies the final component of an entry name.
pub(crate) fn classify(last: &[u8]) -> Name<'_> {
    if last == OPAQUE_MARKER {
        Name::Opaque
    } else if let Some(target) = last.strip_prefix(WHITEOUT_PREFIX) {
        Name::Whiteout(target)
    } else {
        Name::Plain
    }
}

/// Whether a whiteout target names an actual sibling (not the directory
/// itself or its parent, and not nothing).
pub(crate) fn is_valid_whiteout_target(target: &[u8]) -> bool {
    !matches!(target, b"" | b"." | b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<Vec<String>, PathProblem> {
        normalize(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|c| String::from_utf8(c).expect("utf8"))
                .collect()
        })
    }

    #[test]
    fn plain_and_dotted_names() {
        assert_eq!(norm("a/b/c").unwrap(), ["a", "b", "c"]);
        assert_eq!(norm("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(norm("a/b/../c").unwrap(), ["a", "c"]);
        assert_eq!(norm("a/..").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn root_names_are_empty() {
        for s in ["", ".", "./", "/", "//", "/./."] {
            assert_eq!(norm(s).unwrap(), Vec::<String>::new(), "{s:?}");
        }
    }

    #[test]
    fn absolute_names_are_relative_to_the_root() {
        assert_eq!(norm("/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(norm("//etc//passwd").unwrap(), ["etc", "passwd"]);
    }

    #[test]
    fn climbing_above_the_root_is_rejected() {
        for s in [
            "..",
            "../x",
            "a/../../x",
            "/../x",
            "/../../outside/x",
            "./..",
        ] {
            assert_eq!(norm(s), Err(PathProblem::EscapesRoot), "{s:?}");
        }
    }

    #[test]
    fn nul_is_rejected() {
        assert_eq!(normalize(b"a\0b"), Err(PathProblem::Nul));
    }

    #[test]
    fn join_components() {
        assert_eq!(join(&[]), b".");
        assert_eq!(join(&[b"a".to_vec(), b"b".to_vec()]), b"a/b");
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(classify(b"file"), Name::Plain);
        assert_eq!(classify(b".wh..wh..opq"), Name::Opaque);
        assert_eq!(classify(b".wh.file"), Name::Whiteout(b"file"));
        assert_eq!(classify(b".wh..wh.plnk"), Name::Whiteout(b".wh.plnk"));
        assert_eq!(classify(b".wh."), Name::Whiteout(b""));
        assert!(is_valid_whiteout_target(b"file"));
        assert!(!is_valid_whiteout_target(b""));
        assert!(!is_valid_whiteout_target(b"."));
        assert!(!is_valid_whiteout_target(b".."));
    }
}
