//! The URLs the CRI's Exec, Attach and PortForward calls hand out: each
//! carries an unguessable token (128 random bits) bound to the request
//! that made it, usable once, until it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// What a streaming URL was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// A new process in a running container.
    Exec {
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// The streams of a running container's main process.
    Attach {
        container_id: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// TCP connections to ports inside a pod's network namespace.
    PortForward { pod_id: String, ports: Vec<u16> },
}

impl StreamRequest {
    /// The URL path's first segment for this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        }
    }
}

/// Why a token was not issued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssueError {
    /// Too many URLs are outstanding (issued, neither used nor expired).
    #[error("{0} streaming URLs are outstanding: use or let some expire first")]
    TooMany(usize),
    /// The system's random source failed.
    #[error("no random bytes for a streaming token: {0}")]
    Random(String),
}

struct Entry {
    request: StreamRequest,
    expires: Instant,
}

/// Outstanding tokens.
pub struct Tokens {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: never printed.
        f.debug_struct("Tokens")
            .field("ttl", &self.ttl)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens valid for `ttl`, at most `max` outstanding.
    pub fn new(ttl: Duration, max: usize) -> Tokens {
        Tokens {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves a consistent map.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new token for `request`.
    pub fn issue(&self, request: StreamRequest) -> Result<String, IssueError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| IssueError::Random(e.to_string()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.max {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max {
                return Err(IssueError::TooMany(entries.len()));
            }
        }
        entries.insert(
            token.clone(),
            Entry {
                request,
                expires: now + self.ttl,
            },
        );
        Ok(token)
    }

    /// The request `token` was issued for, if it is known and unexpired;
    /// the token is spent either way.
    pub fn redeem(&self, token: &str) -> Option<StreamRequest> {
        let e = self.lock().remove(token)?;
        (e.expires > Instant::now()).then_some(e.request)
    }

    /// Outstanding tokens (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> StreamRequest {
        StreamRequest::PortForward {
            pod_id: "p".into(),
            ports: vec![80],
        }
    }

    #[test]
    fn a_token_is_used_once() {
        let t = Tokens::new(Duration::from_secs(60), 10);
        let a = t.issue(pf()).unwrap();
        let b = t.issue(pf()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22, "128 bits, base64url");
        assert_eq!(t.redeem(&a), Some(pf()));
        assert_eq!(t.redeem(&a), None, "spent");
        assert_eq!(t.redeem("unknown"), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = Tokens::new(Duration::from_millis(1), 10);
        let a = t.issue(pf()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.redeem(&a), None);
        assert!(t.is_empty());
    }

    #[test]
    fn outstanding_tokens_are_bounded_and_expired_ones_make_room() {
        let t = Tokens::new(Duration::from_millis(20), 2);
        t.issue(pf()).unwrap();
        t.issue(pf()).unwrap();
        assert_eq!(t.issue(pf()), Err(IssueError::TooMany(2)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(t.issue(pf()).is_ok());
        assert_eq!(t.len(), 1);
    }
}
