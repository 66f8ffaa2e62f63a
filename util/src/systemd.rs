//! systemd's cgroup layout of slices.

/// The cgroup path systemd gives a slice, relative to the hierarchy root:
/// each dash-separated prefix is a parent slice, so
/// `kubepods-burstable-pod1.slice` is
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`,
/// and the root slice `-.slice` is the root itself (`""`). Anything else
/// (no `.slice` suffix, a `/`, an empty part) is refused, with the reason.
pub fn expand_slice(slice: &str) -> Result<String, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a systemd slice (*.slice)"));
    };
    if stem == "-" {
        return Ok(String::new());
    }
    if stem.is_empty()
        || stem.contains('/')
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
    {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(
            expand_slice("kubepods-burstable-pod1234.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice"
        );
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "");
        for bad in [
            "",
            ".slice",
            "kubepods",
            "a/b.slice",
            "-a.slice",
            "a-.slice",
            "a--b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad:?}");
        }
    }
}
