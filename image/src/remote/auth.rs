//! Registry authentication (the distribution token spec and Basic):
//! a request answered 401 names its scheme in `WWW-Authenticate`.
//!
//! - `Bearer realm=…,service=…,scope=…`: a token is fetched from the
//!   realm, with the credentials (basic auth on a GET; an identity token
//!   is traded with an OAuth2 `refresh_token` POST first, as containerd
//!   does, and a GET with it as the password where the realm refuses
//!   POSTs), or anonymously; it is then sent as `Bearer`.
//! - `Basic`: the credentials are sent as they are.
//!
//! What a host accepted is cached per (API root, credentials, scope) until
//! the token expires, so the next request of a pull sends it at once.
//! Credentials are keyed by their SHA-256, never stored twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;

use crate::creds::Credentials;

/// How long a token is used when its response does not say (the token
/// spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// How long a Basic authorization is reused without asking again.
const BASIC_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Cached authorizations at most (a node pulls from a handful of hosts).
const MAX_CACHED: usize = 256;
/// The most of a token response read.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;
/// OAuth2 client id sent with refresh-token grants.
const CLIENT_ID: &str = "berth";

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// A scheme berth does not speak.
    Other(String),
}

/// The challenges of every `WWW-Authenticate` header of a response.
pub fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// RFC 7235 challenges: `scheme [token68 | name=value *(, name=value)]`,
/// several separated by commas; values are tokens or quoted strings.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        &header[start..*i]
    };
    loop {
        skip(&mut i, b" \t,");
        if i >= b.len() {
            break;
        }
        let scheme = token(&mut i);
        if scheme.is_empty() {
            // Not a token (a token68's padding, garbage): skip a character.
            i += header[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let mut params: HashMap<String, String> = HashMap::new();
        loop {
            skip(&mut i, b" \t");
            // A parameter is `name=`; anything else starts the next
            // challenge (or is a token68, ignored).
            let save = i;
            let name = token(&mut i);
            let mut j = i;
            skip(&mut j, b" \t");
            if name.is_empty() || j >= b.len() || b[j] != b'=' {
                i = save;
                if !name.is_empty() && (j >= b.len() || b[j] == b',') {
                    // token68 or a bare word: skip it
                    i = j;
                }
                break;
            }
            i = j + 1;
            skip(&mut i, b" \t");
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                let mut chars = header[i..].char_indices();
                let mut end = header.len();
                while let Some((k, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = i + k + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                i = end;
                v
            } else {
                // A token by the RFC; leniently anything up to a comma or
                // a space (scopes hold ':').
                let start = i;
                while i < b.len() && !b" \t,".contains(&b[i]) {
                    i += 1;
                }
                header[start..i].to_owned()
            };
            params.insert(name.to_ascii_lowercase(), value);
            skip(&mut i, b" \t");
            if i < b.len() && b[i] == b',' {
                i += 1;
            } else {
                break;
            }
        }
        out.push(match scheme.to_ascii_lowercase().as_str() {
            "basic" => Challenge::Basic,
            "bearer" => match params.remove("realm") {
                Some(realm) => Challenge::Bearer {
                    realm,
                    service: params.remove("service"),
                    scope: params.remove("scope"),
                },
                None => Challenge::Other("Bearer without a realm".into()),
            },
            _ => Challenge::Other(scheme.to_owned()),
        });
    }
    out
}

/// `Basic base64(user:password)`, marked sensitive.
pub fn basic(username: &str, password: &str) -> HeaderValue {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(&format!("Basic {b64}"))
}

/// `Bearer <token>`, marked sensitive; a token HTTP cannot carry yields
/// an empty (refused) header.
pub fn bearer(token: &str) -> HeaderValue {
    sensitive(&format!("Bearer {token}"))
}

fn sensitive(s: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Why a host could not be authenticated to.
#[derive(Debug)]
pub enum AuthError {
    /// Wrong, missing or unusable credentials.
    Refused(String),
    /// The token endpoint could not be reached or answered nonsense.
    Unreachable(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

/// Gets the `Authorization` for `challenge` with `creds`, and how long it
/// may be reused.
pub async fn authorize(
    http: &reqwest::Client,
    challenge: &Challenge,
    creds: Option<&Credentials>,
    default_scope: &str,
) -> Result<(HeaderValue, Duration), AuthError> {
    match (challenge, creds) {
        (Challenge::Basic, Some(Credentials::Basic { username, password })) => {
            Ok((basic(username, password), BASIC_LIFETIME))
        }
        (Challenge::Basic, Some(Credentials::IdentityToken(t))) => {
            Ok((basic("<token>", t), BASIC_LIFETIME))
        }
        (Challenge::Basic, Some(Credentials::Bearer(_))) => Err(AuthError::Refused(
            "the registry asks for basic authentication and only a registry token was given".into(),
        )),
        (Challenge::Basic, None) => Err(AuthError::Refused(
            "the registry asks for basic authentication and no credentials were given".into(),
        )),
        (
            Challenge::Bearer {
                realm,
                service,
                scope,
            },
            creds,
        ) => {
            let scope = scope.as_deref().unwrap_or(default_scope);
            token(http, realm, service.as_deref(), scope, creds).await
        }
        (Challenge::Other(s), _) => Err(AuthError::Refused(format!(
            "the registry asks for authentication scheme {s:?}, which berth does not speak"
        ))),
    }
}

/// Fetches a bearer token from `realm`.
async fn token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<(HeaderValue, Duration), AuthError> {
    let url = reqwest::Url::parse(realm)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            AuthError::Unreachable(format!("token realm {realm:?} is not an http(s) URL"))
        })?;
    let mut params: Vec<(&str, &str)> = vec![("scope", scope)];
    if let Some(s) = service {
        params.push(("service", s));
    }
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.map_err(|e| {
            AuthError::Unreachable(format!(
                "token endpoint {realm}: {}",
                super::error_chain(&e)
            ))
        })?;
        let status = resp.status();
        let body = super::read_limited(resp, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| AuthError::Unreachable(format!("token endpoint {realm}: {e}")))?;
        Ok::<_, AuthError>((status, body))
    };
    let (status, body) = match creds {
        Some(Credentials::IdentityToken(t)) => {
            let mut form = params.clone();
            form.extend([
                ("grant_type", "refresh_token"),
                ("refresh_token", t.as_str()),
                ("client_id", CLIENT_ID),
            ]);
            let (status, body) = send(http.post(url.clone()).form(&form)).await?;
            // Registries without the POST endpoint (containerd's list).
            if matches!(status.as_u16(), 400 | 401 | 404 | 405) {
                let req = http
                    .get(url.clone())
                    .query(&params)
                    .header(reqwest::header::AUTHORIZATION, basic("<token>", t));
                send(req).await?
            } else {
                (status, body)
            }
        }
        Some(Credentials::Basic { username, password }) => {
            let req = http
                .get(url.clone())
                .query(&params)
                .header(reqwest::header::AUTHORIZATION, basic(username, password));
            send(req).await?
        }
        Some(Credentials::Bearer(_)) => {
            return Err(AuthError::Refused("the registry token was refused".into()));
        }
        None => send(http.get(url.clone()).query(&params)).await?,
    };
    match status.as_u16() {
        200..=299 => {}
        401 | 403 => {
            let who = if creds.is_some() {
                "refused the credentials"
            } else {
                "requires credentials"
            };
            return Err(AuthError::Refused(format!(
                "token endpoint {realm} {who} for {scope} (HTTP {status})"
            )));
        }
        _ => {
            return Err(AuthError::Unreachable(format!(
                "token endpoint {realm}: HTTP {status}"
            )));
        }
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        AuthError::Unreachable(format!(
            "token endpoint {realm}: the answer is not a token (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let token = if parsed.token.is_empty() {
        parsed.access_token
    } else {
        parsed.token
    };
    let header = bearer(&token);
    if token.is_empty() || header.is_empty() {
        return Err(AuthError::Unreachable(format!(
            "token endpoint {realm}: no usable token in the answer"
        )));
    }
    let lifetime = match parsed.expires_in {
        0 => DEFAULT_TOKEN_LIFETIME,
        s => Duration::from_secs(s.min(86_400)),
    };
    Ok((header, lifetime))
}

/// Which authorization a host took for which credentials and scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The API root URL.
    pub base: String,
    pub creds: Option<[u8; 32]>,
    pub scope: String,
}

/// Authorizations hosts accepted, until they expire.
#[derive(Default)]
pub struct Tokens {
    map: Mutex<HashMap<TokenKey, (HeaderValue, Instant)>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

impl Tokens {
    pub fn get(&self, key: &TokenKey) -> Option<HeaderValue> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(h, _)| h.clone())
    }

    pub fn put(&self, key: TokenKey, header: HeaderValue, lifetime: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_CACHED {
            map.retain(|_, (_, until)| now < *until);
            if map.len() >= MAX_CACHED {
                map.clear();
            }
        }
        let until = now
            + lifetime
                .saturating_sub(EXPIRY_MARGIN)
                .max(Duration::from_secs(1));
        map.insert(key, (header, until));
    }

    /// Forgets what a host refused.
    pub fn remove(&self, key: &TokenKey) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_as_registries_send_them() {
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="berth-e2e""#),
            vec![Challenge::Basic]
        );
        // Several challenges in one header, odd spacing, case, escapes,
        // unquoted values and a scheme berth does not know.
        assert_eq!(
            parse_challenges(
                r#"Negotiate abc==, bearer  Realm = "https://t/x\"y" , scope=repo:a:pull,Basic realm=x"#
            ),
            vec![
                Challenge::Other("Negotiate".into()),
                Challenge::Bearer {
                    realm: "https://t/x\"y".into(),
                    service: None,
                    scope: Some("repo:a:pull".into()),
                },
                Challenge::Basic,
            ]
        );
        assert_eq!(
            parse_challenges("Bearer service=x"),
            vec![Challenge::Other("Bearer without a realm".into())]
        );
        assert_eq!(parse_challenges(""), vec![]);
        assert_eq!(parse_challenges(r#"Bearer realm="unterminated"#).len(), 1);
        assert_eq!(parse_challenges("@@@"), vec![]);
    }

    #[test]
    fn cached_authorizations_expire() {
        let t = Tokens::default();
        let key = |scope: &str| TokenKey {
            base: "https://r/v2".into(),
            creds: None,
            scope: scope.into(),
        };
        t.put(key("a"), bearer("tok"), Duration::from_secs(300));
        assert_eq!(t.get(&key("a")).unwrap(), "Bearer tok");
        assert!(t.get(&key("a")).unwrap().is_sensitive());
        assert!(t.get(&key("b")).is_none());
        t.put(key("b"), bearer("old"), Duration::from_secs(0));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(t.get(&key("b")).is_none(), "expired");
        t.remove(&key("a"));
        assert!(t.get(&key("a")).is_none());
        assert_eq!(format!("{t:?}"), "Tokens(<redacted>)");
    }
}
