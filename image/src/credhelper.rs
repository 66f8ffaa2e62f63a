//! Docker credential helpers (the docker-credential-helpers protocol):
//! `docker-credential-<name> get` reads the registry's server URL on stdin
//! and answers `{"ServerURL": …, "Username": …, "Secret": …}` on stdout;
//! `credentials not found in native keychain` on stdout with a failing
//! exit means it has nothing for that registry. A `Username` of `<token>`
//! makes the secret an identity token.
//!
//! The helper runs in a process group of its own, bounded by a timeout:
//! one that hangs is killed with its children and reaped. Its output
//! carries a secret, so it is never logged nor quoted in an error.
//! [`file_credentials`] is the auth file's answer for a registry, asking
//! the helper it names.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::creds::{self, Credentials, FileAuth};
use crate::error::ImageError;
use crate::hosts::HostsError;

/// How long a helper may take: helpers that call a cloud API answer in
/// about a second; a pull does not wait on one for longer than this.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a helper's output read.
const MAX_OUTPUT: usize = 64 << 10;
/// What helpers print when they have nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";
/// Docker's user name for an identity token.
const TOKEN_USER: &str = "<token>";

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username")]
    username: Option<String>,
    #[serde(rename = "Secret")]
    secret: Option<String>,
}

/// Credentials for `registry` from the auth file, running its credential
/// helper if it names one (bounded by `helper_timeout`).
pub async fn file_credentials(
    auth_file: &Path,
    registry: &str,
    helper_timeout: std::time::Duration,
) -> Result<Option<Credentials>, ImageError> {
    match creds::file_auth(auth_file, registry)? {
        FileAuth::None => Ok(None),
        FileAuth::Static(c) => Ok(Some(c)),
        FileAuth::Helper {
            name,
            key,
            fallback,
        } => {
            let got = get(&name, &creds::helper_server_url(registry), helper_timeout)
                .await
                .map_err(|message| HostsError {
                    path: auth_file.display().to_string(),
                    message: format!("{key} of {registry}: {message}"),
                })?;
            if got.is_none() {
                tracing::debug!(registry, helper = %name, "credential helper has nothing for the registry");
            }
            Ok(got.or(fallback))
        }
    }
}

/// Asks helper `name` for the credentials of `server_url`. None when it
/// has none. The error says what went wrong, never what the helper said
/// on stdout.
pub async fn get(
    name: &str,
    server_url: &str,
    timeout: Duration,
) -> Result<Option<Credentials>, String> {
    let bin = format!("docker-credential-{name}");
    run(&bin, Path::new(&bin), server_url, timeout).await
}

async fn run(
    bin: &str,
    program: &Path,
    server_url: &str,
    timeout: Duration,
) -> Result<Option<Credentials>, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{bin} is not in berthd's PATH"),
        _ => format!("{bin}: cannot run it: {e}"),
    })?;
    // It leads its own group; not reaped before the kill below, so the id
    // cannot have been reused.
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let io = async {
        let write = async {
            if let Some(mut stdin) = stdin {
                // A helper may exit without reading: not an error here.
                let _ = stdin.write_all(server_url.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        };
        let ((), out, err) = tokio::join!(write, read_capped(stdout), read_capped(stderr));
        (child.wait().await, out, err)
    };
    let (status, out, err) = match tokio::time::timeout(timeout, io).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            tracing::warn!(
                helper = bin,
                timeout_ms = timeout.as_millis() as u64,
                "credential helper timed out; killed its process group"
            );
            return Err(format!(
                "{bin} did not answer within {timeout:?}; it was killed"
            ));
        }
    };
    let status = status.map_err(|e| format!("{bin}: waiting for it: {e}"))?;
    let (out, err) = (
        out.ok_or_else(|| format!("{bin}: more than {MAX_OUTPUT} bytes of output"))?,
        err.unwrap_or_default(),
    );
    if !status.success() {
        let text = String::from_utf8_lossy(&out);
        if text.trim() == NOT_FOUND {
            return Ok(None);
        }
        // Its own words help, unless they might hold a secret.
        let said = [String::from_utf8_lossy(&err), text]
            .into_iter()
            .map(|t| t.trim().to_owned())
            .find(|t| !t.is_empty() && !t.contains("Secret"))
            .map(|t| {
                let t: String = t.chars().take(200).collect();
                format!(": {t}")
            })
            .unwrap_or_default();
        return Err(format!("{bin} get failed ({status}){said}"));
    }
    let answer: Answer = serde_json::from_slice(&out).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "JSON of the wrong shape",
            _ => "not JSON",
        };
        format!(
            "{bin} answered {what} (line {}, column {}); expected {{\"ServerURL\", \"Username\", \"Secret\"}}",
            e.line(),
            e.column()
        )
    })?;
    let secret = answer
        .secret
        .ok_or_else(|| format!("{bin} answered without a Secret"))?;
    let username = answer.username.unwrap_or_default();
    Ok(match (username.as_str(), secret.is_empty()) {
        (_, true) if username.is_empty() => None,
        (TOKEN_USER, _) => Some(Credentials::IdentityToken(secret)),
        _ => Some(Credentials::Basic {
            username,
            password: secret,
        }),
    })
}

/// All of `r`, or None past [`MAX_OUTPUT`] (the rest drained so the helper
/// does not block on a full pipe).
async fn read_capped(r: Option<impl AsyncRead + Unpin>) -> Option<Vec<u8>> {
    let Some(mut r) = r else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut over = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if !over => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_OUTPUT {
                    over = true;
                    out = Vec::new();
                }
            }
            Ok(_) => {}
        }
    }
    (!over).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    /// A helper script `docker-credential-t` printing `body`.
    fn helper(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("docker-credential-t");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    async fn ask(p: &Path, timeout: Duration) -> Result<Option<Credentials>, String> {
        run("docker-credential-t", p, "quay.io", timeout).await
    }

    #[tokio::test]
    async fn answers_of_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        // The server URL arrives on stdin; `get` is the argument.
        let p = helper(
            dir.path(),
            r#"[ "$1" = get ] || exit 3; read -r url; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s3cret"}' "$url" "$url""#,
        );
        assert_eq!(
            ask(&p, TIMEOUT).await.unwrap(),
            Some(Credentials::Basic {
                username: "u-quay.io".into(),
                password: "s3cret".into()
            })
        );
        let p = helper(
            dir.path(),
            r#"echo '{"ServerURL":"x","Username":"<token>","Secret":"idt"}'"#,
        );
        assert_eq!(
            ask(&p, TIMEOUT).await.unwrap(),
            Some(Credentials::IdentityToken("idt".into()))
        );
        let p = helper(
            dir.path(),
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert_eq!(ask(&p, TIMEOUT).await.unwrap(), None);
        let p = helper(
            dir.path(),
            r#"echo '{"ServerURL":"x","Username":"","Secret":""}'"#,
        );
        assert_eq!(ask(&p, TIMEOUT).await.unwrap(), None);
    }

    #[tokio::test]
    async fn garbage_and_failures_are_clear_errors_without_the_output() {
        let dir = tempfile::tempdir().unwrap();
        for (body, want) in [
            ("echo 's3cret-garbage'", "answered not JSON"),
            (
                r#"echo '{"Username": 5, "Secret": "s3cret-x"}'"#,
                "JSON of the wrong shape",
            ),
            (r#"echo '{"Username": "u"}'"#, "without a Secret"),
            (
                "echo 'no such server' >&2; exit 2",
                "get failed (exit status: 2): no such server",
            ),
            (
                r#"echo '{"Secret":"s3cret-y"}'; exit 1"#,
                "get failed (exit status: 1)",
            ),
            ("head -c 100000 /dev/zero", "more than"),
        ] {
            let p = helper(dir.path(), body);
            let e = ask(&p, TIMEOUT).await.unwrap_err();
            assert!(
                e.contains("docker-credential-t") && e.contains(want),
                "{body}: {e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
        }
        let e = get("berth-test-no-such-helper", "quay.io", TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            e.contains("docker-credential-berth-test-no-such-helper is not in berthd's PATH"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_hanging_helper_is_killed_with_its_children_and_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The helper and a child of its own both hang.
        let p = helper(
            dir.path(),
            &format!("sleep 600 & echo $$ $! > {}; wait", pids.display()),
        );
        let started = std::time::Instant::now();
        let e = ask(&p, Duration::from_millis(500)).await.unwrap_err();
        assert!(
            e.contains("did not answer within 500ms; it was killed"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace() {
            // Gone, not a zombie: reaped (the helper by us, its child by
            // init once killed).
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .next();
                if stat.is_empty()
                    || (state == Some("Z") && pid != text.split_whitespace().next().unwrap())
                {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "pid {pid} still there: {stat}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
