//! Operator-written configuration as arbitrary text:
//! - containerd-style `hosts.toml` (`berth_image::hosts::endpoints`, which
//!   reads `<dir>/<registry>/hosts.toml` or `<dir>/_default/hosts.toml`):
//!   the text is written to both and endpoints are asked for registries
//!   taking either file, loopback ones included;
//! - berthd's config file (`berth_cri::config::Config::parse`);
//! - Docker `config.json` auth files (`berth_image::creds::file_auth`, which
//!   runs no credential helper) and CRI AuthConfig fields
//!   (`AuthFields::credentials`).
//!
//! Asserted:
//! - no panic;
//! - endpoints: at least one, and one that may pull; mirrors first, the
//!   upstream (if any) last; every host is non-empty and has no `/`; every
//!   API path is empty or starts with `/` and does not end with one; the
//!   same file read twice gives the same answer;
//! - berthd config: a config that parses (and so validates) serializes
//!   back to TOML that parses to an equal config;
//! - credentials: `Debug` of credentials never shows the password or token.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_image::creds::{self, AuthFields, Credentials, FileAuth};
use berth_image::hosts;
use libfuzzer_sys::fuzz_target;

struct Dirs {
    _tmp: tempfile::TempDir,
    config_dir: PathBuf,
    auth_file: PathBuf,
}

fn dirs() -> &'static Dirs {
    static D: OnceLock<Dirs> = OnceLock::new();
    D.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let config_dir = tmp.path().join("certs.d");
        for sub in ["docker.io", "_default"] {
            fs::create_dir_all(config_dir.join(sub)).expect("mkdir");
        }
        let auth_file = tmp.path().join("auth.json");
        Dirs {
            config_dir,
            auth_file,
            _tmp: tmp,
        }
    })
}

fn check_endpoints(dir: &Path, registry: &str) {
    let first = hosts::endpoints(dir, registry);
    if let Ok(eps) = &first {
        let (_, before) = eps.split_last().expect("no endpoint at all");
        assert!(
            before.iter().all(|e| e.mirror),
            "{registry}: upstream before the end: {eps:?}"
        );
        assert!(eps.iter().any(|e| e.pull), "{registry}: none may pull: {eps:?}");
        for e in eps {
            assert!(
                !e.host.is_empty() && !e.host.contains('/'),
                "{registry}: host {:?}",
                e.host
            );
            assert!(
                e.path.is_empty() || (e.path.starts_with('/') && !e.path.ends_with('/')),
                "{registry}: path {:?}",
                e.path
            );
            let _ = hosts::is_loopback(&e.host);
        }
    }
    let second = hosts::endpoints(dir, registry);
    assert_eq!(
        first.as_ref().ok(),
        second.as_ref().ok(),
        "{registry}: not deterministic"
    );
}

fn check_credentials(c: &Credentials) {
    let shown = format!("{c:?}");
    let secret = match c {
        Credentials::Basic { username, password } => {
            // A password that is part of the username (or of the fixed
            // text) cannot be told apart.
            (!username.contains(password.as_str())).then_some(password)
        }
        Credentials::Bearer(t) | Credentials::IdentityToken(t) => Some(t),
    };
    if let Some(s) = secret
        && s.len() >= 4
        && !"Basic(, <redacted>)Bearer(<redacted>)IdentityToken(<redacted>)".contains(s.as_str())
    {
        assert!(!shown.contains(s.as_str()), "Debug shows a secret: {shown}");
    }
}

fuzz_target!(|data: &[u8]| {
    let d = dirs();

    // hosts.toml reads the file as UTF-8 text; other bytes are an error.
    for sub in ["docker.io", "_default"] {
        fs::write(d.config_dir.join(sub).join("hosts.toml"), data).expect("write hosts.toml");
    }
    for registry in [
        "docker.io",
        "quay.io",
        "127.0.0.1:5000",
        "[::1]:5000",
        "localhost",
    ] {
        check_endpoints(&d.config_dir, registry);
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let path = Path::new("/etc/berth/config.toml");
        if let Ok(config) = berth_cri::config::Config::parse(text, path) {
            let out = toml::to_string(&config).expect("config serializes");
            let back = berth_cri::config::Config::parse(&out, path)
                .unwrap_or_else(|e| panic!("serialized config is refused: {e}\n{out}"));
            assert_eq!(back, config, "config round trip\n{out}");
        }
    }

    fs::write(&d.auth_file, data).expect("write auth file");
    for registry in ["docker.io", "127.0.0.1:5000", "quay.io"] {
        match creds::file_auth(&d.auth_file, registry) {
            Ok(FileAuth::Static(c)) => check_credentials(&c),
            Ok(FileAuth::Helper {
                name,
                fallback: Some(c),
                ..
            }) => {
                // Helper names are what a file name may carry.
                assert!(!name.contains('/') && !name.starts_with('.'), "{name:?}");
                check_credentials(&c);
            }
            _ => {}
        }
    }
    if let Ok(fields) = serde_json::from_slice::<AuthFields>(data) {
        assert_eq!(format!("{fields:?}"), "AuthFields(<redacted>)");
        if let Ok(Some(c)) = fields.credentials() {
            check_credentials(&c);
        }
    }
});
