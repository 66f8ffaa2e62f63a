//! The image's StopSignal.

use oci_spec::image::ImageConfiguration;

use crate::error::SpecError;

/// SIGRTMIN/SIGRTMAX as user space sees them (glibc reserves 32 and 33),
/// the values moby's signal table uses.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

const NAMED: &[(&str, i32)] = &[
    ("ABRT", libc::SIGABRT),
    ("ALRM", libc::SIGALRM),
    ("BUS", libc::SIGBUS),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("FPE", libc::SIGFPE),
    ("HUP", libc::SIGHUP),
    ("ILL", libc::SIGILL),
    ("INT", libc::SIGINT),
    ("IO", libc::SIGIO),
    ("IOT", libc::SIGIOT),
    ("KILL", libc::SIGKILL),
    ("PIPE", libc::SIGPIPE),
    ("POLL", libc::SIGPOLL),
    ("PROF", libc::SIGPROF),
    ("PWR", libc::SIGPWR),
    ("QUIT", libc::SIGQUIT),
    ("SEGV", libc::SIGSEGV),
    ("STKFLT", libc::SIGSTKFLT),
    ("STOP", libc::SIGSTOP),
    ("SYS", libc::SIGSYS),
    ("TERM", libc::SIGTERM),
    ("TRAP", libc::SIGTRAP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("VTALRM", libc::SIGVTALRM),
    ("WINCH", libc::SIGWINCH),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
];

/// Parses a signal as Docker/containerd accept it: a number ("15"), a name
/// with or without the SIG prefix, any case ("SIGTERM", "term"), or a
/// real-time offset ("SIGRTMIN+3", "RTMAX-1").
pub fn parse_signal(raw: &str) -> Result<i32, SpecError> {
    let bad = || SpecError::InvalidSignal(raw.to_string());
    let s = raw.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i32 = s.parse().map_err(|_| bad())?;
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMED.iter().find(|(k, _)| *k == name) {
        return Ok(n);
    }
    // The offset is plain digits: `i32::from_str` would also take a sign
    // ("RTMAX--2147483647"), and a large offset must not overflow the
    // addition (found by fuzzing, see fuzz/regressions/image_manifest/).
    let rt = |base: i32, rest: &str| -> Result<i32, SpecError> {
        let offset = |digits: &str| -> Result<i32, SpecError> {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            digits.parse::<i32>().map_err(|_| bad())
        };
        let n = if rest.is_empty() {
            Some(base)
        } else if let Some(off) = rest.strip_prefix('+') {
            base.checked_add(offset(off)?)
        } else if let Some(off) = rest.strip_prefix('-') {
            base.checked_sub(offset(off)?)
        } else {
            return Err(bad());
        };
        match n {
            Some(n) if (SIGRTMIN..=SIGRTMAX).contains(&n) => Ok(n),
            _ => Err(bad()),
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(SIGRTMIN, rest);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(SIGRTMAX, rest);
    }
    Err(bad())
}

/// The signal that stops a container of this image: its StopSignal, SIGTERM
/// when unset.
pub fn stop_signal(image: &ImageConfiguration) -> Result<i32, SpecError> {
    match image
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().as_deref())
    {
        Some(s) if !s.trim().is_empty() => parse_signal(s),
        _ => Ok(libc::SIGTERM),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    fn image(sig: Option<&str>) -> ImageConfiguration {
        let mut c = ConfigBuilder::default();
        if let Some(s) = sig {
            c = c.stop_signal(s.to_string());
        }
        ImageConfigurationBuilder::default()
            .config(c.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn stop_signals() {
        assert_eq!(stop_signal(&image(None)).unwrap(), 15);
        assert_eq!(stop_signal(&image(Some(""))).unwrap(), 15);
        assert_eq!(stop_signal(&image(Some("SIGTERM"))).unwrap(), 15);
        assert_eq!(stop_signal(&image(Some("TERM"))).unwrap(), 15);
        assert_eq!(stop_signal(&image(Some("sigquit"))).unwrap(), 3);
        assert_eq!(stop_signal(&image(Some("9"))).unwrap(), 9);
        assert_eq!(stop_signal(&image(Some("SIGWINCH"))).unwrap(), 28);
        assert_eq!(stop_signal(&image(Some("SIGRTMIN+3"))).unwrap(), 37);
        assert_eq!(stop_signal(&image(Some("RTMIN"))).unwrap(), 34);
        assert_eq!(stop_signal(&image(Some("SIGRTMAX-2"))).unwrap(), 62);
        assert_eq!(stop_signal(&ImageConfiguration::default()).unwrap(), 15);
    }

    #[test]
    fn bad_signals() {
        for s in [
            "SIGFOO",
            "0",
            "65",
            "-1",
            "SIGRTMIN+40",
            "SIGRTMIN3",
            "RTMAX+1",
            "1.5",
            "RTMIN+",
            "RTMAX-",
            "RTMIN++3",
            "RTMAX-+2",
            "RTMIN+-0",
            "RTMAX- 1",
            "99999999999",
        ] {
            let e = stop_signal(&image(Some(s))).unwrap_err();
            assert!(matches!(e, SpecError::InvalidSignal(_)), "{s}: {e}");
            assert!(e.is_invalid_argument());
        }
    }

    /// Offsets near i32's limits overflowed the addition (a panic with
    /// overflow checks, as in tests and fuzzing); the inputs fuzzing found,
    /// and their kin, are refused as invalid signals.
    #[test]
    fn rt_offset_overflow() {
        for s in [
            "RTMIN+2147483647",
            "SIGRTMIN+2147483647",
            "RTMAX--2147483647",
            "SIGRTMAX--2147483647",
            "RTMAX--2147483648",
            "RTMIN+-2147483648",
            "RTMAX-2147483647",
            "RTMAX-2147483648",
            "RTMIN+2147483648",
            "RTMIN+4294967330",
            "rtmax-18446744073709551615",
        ] {
            let e = parse_signal(s).unwrap_err();
            assert!(
                matches!(&e, SpecError::InvalidSignal(r) if r == s),
                "{s}: {e}"
            );
            assert!(e.is_invalid_argument());
        }
        // Still valid at both ends of the range.
        assert_eq!(parse_signal("RTMIN+30").unwrap(), 64);
        assert_eq!(parse_signal("RTMAX-30").unwrap(), 34);
        assert_eq!(parse_signal("RTMIN+0").unwrap(), 34);
        assert_eq!(parse_signal("RTMAX-0").unwrap(), 64);
    }

    /// The image config fuzzing found, through `stop_signal` as
    /// CreateContainer reads it.
    #[test]
    fn rt_offset_overflow_in_image_config() {
        let c: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"StopSignal":"SIGRTMAX--2147483647"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let e = stop_signal(&c).unwrap_err();
        assert!(matches!(e, SpecError::InvalidSignal(_)), "{e}");
    }
}
