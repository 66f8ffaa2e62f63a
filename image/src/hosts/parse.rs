//! hosts.toml as written: its keys checked one by one (an unknown key is an
//! error naming it), paths made absolute against the file's directory.
//! Nothing is read from disk here but the file itself; certificates are
//! loaded by `certs.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The keys one host (the `server`, or a `[host."…"]` entry) may carry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    /// `capabilities`; None when not written (containerd: all of them).
    pub capabilities: Option<Vec<String>>,
    pub skip_verify: bool,
    /// `ca`: CA certificate files, absolute.
    pub ca: Vec<PathBuf>,
    /// `client`: (certificate, key) files; no key means the certificate
    /// file holds the key too.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    /// `header`: name, value; a name with a list of values repeats.
    pub header: Vec<(String, String)>,
    pub override_path: bool,
    pub dial_timeout: Option<Duration>,
    pub proxy: Option<String>,
}

/// A parsed hosts.toml.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct HostsFile {
    pub server: Option<String>,
    /// The top-level keys: they apply to `server`.
    pub server_keys: Keys,
    /// `[host."url"]` entries in file order.
    pub hosts: Vec<(String, Keys)>,
}

/// The capabilities containerd knows.
const CAPABILITIES: &[&str] = &["pull", "resolve", "push"];

/// Parses the text of the hosts.toml in `dir`.
pub(super) fn parse(text: &str, dir: &Path) -> Result<HostsFile, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut out = HostsFile::default();
    let mut top = toml::Table::new();
    for (key, value) in table {
        match key.as_str() {
            "server" => {
                out.server = Some(
                    value
                        .as_str()
                        .ok_or("key `server`: expected a URL string")?
                        .to_owned(),
                )
            }
            "host" => {
                let hosts = value
                    .as_table()
                    .ok_or("key `host`: expected tables [host.\"<url>\"]")?;
                for (url, entry) in hosts {
                    let entry = entry.as_table().ok_or_else(|| {
                        format!("host {url:?}: expected a table of keys, not a value")
                    })?;
                    let keys = keys(entry, dir).map_err(|e| format!("host {url:?}: {e}"))?;
                    out.hosts.push((url.clone(), keys));
                }
            }
            _ => {
                top.insert(key, value);
            }
        }
    }
    out.server_keys = keys(&top, dir)?;
    Ok(out)
}

/// The keys of one host; anything else is refused by name.
fn keys(table: &toml::Table, dir: &Path) -> Result<Keys, String> {
    let mut k = Keys::default();
    for (key, value) in table {
        let bad = |what: &str| format!("key `{key}`: expected {what}");
        match key.as_str() {
            "capabilities" => {
                let caps = strings(value).ok_or_else(|| bad("a list of strings"))?;
                if let Some(c) = caps.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
                    return Err(format!(
                        "key `capabilities`: unknown capability {c:?} (known: pull, resolve, push)"
                    ));
                }
                k.capabilities = Some(caps);
            }
            "skip_verify" => k.skip_verify = value.as_bool().ok_or_else(|| bad("true or false"))?,
            "override_path" => {
                k.override_path = value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "ca" => {
                let paths = match value {
                    toml::Value::String(s) => vec![s.clone()],
                    v => strings(v).ok_or_else(|| bad("a path or a list of paths"))?,
                };
                k.ca = paths
                    .iter()
                    .map(|p| absolute(p, dir, key))
                    .collect::<Result<_, _>>()?;
            }
            "client" => k.client = client(value, dir)?,
            "header" => k.header = header(value)?,
            "dial_timeout" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad("a duration string such as \"5s\""))?;
                let d = go_duration(text)
                    .ok_or_else(|| bad(&format!("a duration such as \"1s\", not {text:?}")))?;
                if d.is_zero() {
                    return Err("key `dial_timeout`: must be more than zero".into());
                }
                k.dial_timeout = Some(d);
            }
            "proxy" => k.proxy = Some(proxy(value.as_str().ok_or_else(|| bad("a URL string"))?)?),
            other => return Err(format!("unknown key `{other}`")),
        }
    }
    Ok(k)
}

fn strings(value: &toml::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// A path of the file, relative ones against its directory.
fn absolute(p: &str, dir: &Path, key: &str) -> Result<PathBuf, String> {
    if p.is_empty() {
        return Err(format!("key `{key}`: an empty path"));
    }
    let p = Path::new(p);
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    })
}

/// `client`: a path, a list of paths, or a list of [cert, key] pairs (an
/// empty key: the key is in the certificate file).
fn client(value: &toml::Value, dir: &Path) -> Result<Vec<(PathBuf, Option<PathBuf>)>, String> {
    const WANT: &str =
        "key `client`: expected a path, a list of paths, or a list of [certificate, key] pairs";
    let one = |s: &str| absolute(s, dir, "client").map(|p| (p, None));
    match value {
        toml::Value::String(s) => Ok(vec![one(s)?]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => one(s),
                toml::Value::Array(pair) => {
                    let pair: Vec<&str> = pair
                        .iter()
                        .map(|v| v.as_str().ok_or(WANT))
                        .collect::<Result<_, _>>()?;
                    match pair.as_slice() {
                        [cert] | [cert, ""] => one(cert),
                        [cert, key] => Ok((
                            absolute(cert, dir, "client")?,
                            Some(absolute(key, dir, "client")?),
                        )),
                        _ => Err(format!("{WANT}; got a list of {} paths", pair.len())),
                    }
                }
                _ => Err(WANT.to_owned()),
            })
            .collect(),
        _ => Err(WANT.to_owned()),
    }
}

/// `header`: a table of name = "value" or name = ["value", ...], each
/// checked as HTTP allows.
fn header(value: &toml::Value) -> Result<Vec<(String, String)>, String> {
    let table = value
        .as_table()
        .ok_or("key `header`: expected a table of header names")?;
    let mut out = Vec::new();
    for (name, v) in table {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("key `header`: {name:?} is not a valid header name"))?;
        let values = match v {
            toml::Value::String(s) => vec![s.clone()],
            other => strings(other).ok_or_else(|| {
                format!("key `header`: {name}: expected a string or a list of strings")
            })?,
        };
        for value in values {
            reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                format!("key `header`: {name}: a value with characters HTTP does not allow")
            })?;
            out.push((name.clone(), value));
        }
    }
    Ok(out)
}

/// `proxy`: an http or https URL without path, query or fragment (what
/// containerd accepts, less SOCKS, which berth's client lacks).
fn proxy(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("key `proxy`: {text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        "socks5" | "socks5h" => {
            return Err(format!(
                "key `proxy`: {text:?}: SOCKS proxies are not supported by berth (use an http or https proxy)"
            ));
        }
        s => return Err(format!("key `proxy`: {text:?}: unknown scheme {s:?}")),
    }
    if url.host_str().unwrap_or_default().is_empty()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "key `proxy`: {text:?}: a proxy URL is scheme://host[:port], without a path, query or fragment"
        ));
    }
    Ok(text.to_owned())
}

/// A Go duration (`1s`, `1.5s`, `300ms`, `1m30s`, `2h`), as containerd
/// reads `dial_timeout`.
pub(super) fn go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total < 1e9).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<HostsFile, String> {
        parse(text, Path::new("/etc/berth/certs.d/quay.io"))
    }

    #[test]
    fn every_key_at_the_top_and_in_a_host() {
        let f = p(r#"
server = "https://quay.io"
capabilities = ["pull", "resolve"]
skip_verify = false
ca = "ca.pem"
client = "/abs/client.pem"
override_path = false
dial_timeout = "1.5s"
proxy = "http://proxy.example:3128"
[header]
  x-one = "1"

[host."https://m.example/prefix"]
  capabilities = ["pull"]
  skip_verify = true
  ca = ["/etc/a.pem", "rel/b.pem"]
  client = [["c.pem", "k.pem"], ["both.pem", ""], "single.pem"]
  override_path = true
  dial_timeout = "300ms"
  [host."https://m.example/prefix".header]
    x-two = ["a", "b"]
"#)
        .unwrap();
        assert_eq!(f.server.as_deref(), Some("https://quay.io"));
        let top = &f.server_keys;
        assert_eq!(
            top.capabilities.as_deref(),
            Some(&["pull".to_owned(), "resolve".to_owned()][..])
        );
        assert_eq!(
            top.ca,
            vec![PathBuf::from("/etc/berth/certs.d/quay.io/ca.pem")]
        );
        assert_eq!(top.client, vec![(PathBuf::from("/abs/client.pem"), None)]);
        assert_eq!(top.header, vec![("x-one".to_owned(), "1".to_owned())]);
        assert_eq!(top.dial_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(top.proxy.as_deref(), Some("http://proxy.example:3128"));
        let (url, h) = &f.hosts[0];
        assert_eq!(url, "https://m.example/prefix");
        assert!(h.skip_verify && h.override_path);
        assert_eq!(
            h.ca,
            vec![
                PathBuf::from("/etc/a.pem"),
                PathBuf::from("/etc/berth/certs.d/quay.io/rel/b.pem")
            ]
        );
        let d = Path::new("/etc/berth/certs.d/quay.io");
        assert_eq!(
            h.client,
            vec![
                (d.join("c.pem"), Some(d.join("k.pem"))),
                (d.join("both.pem"), None),
                (d.join("single.pem"), None),
            ]
        );
        assert_eq!(
            h.header,
            vec![
                ("x-two".to_owned(), "a".to_owned()),
                ("x-two".to_owned(), "b".to_owned())
            ]
        );
        assert_eq!(h.dial_timeout, Some(Duration::from_millis(300)));
    }

    #[test]
    fn hosts_keep_file_order() {
        let f = p("[host.\"https://z\"]\n[host.\"https://a\"]\n[host.\"https://m\"]\n").unwrap();
        let urls: Vec<_> = f.hosts.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(urls, ["https://z", "https://a", "https://m"]);
    }

    #[test]
    fn bad_inputs_name_the_key() {
        for (text, want) in [
            ("servr = \"x\"", "unknown key `servr`"),
            ("server = 1", "key `server`"),
            ("host = 1", "key `host`"),
            (
                "[host.\"https://m\"]\nskip_verfy = true",
                "host \"https://m\": unknown key `skip_verfy`",
            ),
            (
                "[host.\"https://m\"]\nserver = \"x\"",
                "unknown key `server`",
            ),
            (
                "[host.\"https://m\"]\n[host.\"https://m\".host.\"https://n\"]",
                "unknown key `host`",
            ),
            (
                "capabilities = [\"pull\", \"fly\"]",
                "unknown capability \"fly\"",
            ),
            ("capabilities = \"pull\"", "key `capabilities`"),
            ("skip_verify = \"yes\"", "key `skip_verify`"),
            ("override_path = 1", "key `override_path`"),
            ("ca = 1", "key `ca`"),
            ("ca = [1]", "key `ca`"),
            ("ca = \"\"", "key `ca`: an empty path"),
            ("client = 1", "key `client`"),
            ("client = [[\"a\", \"b\", \"c\"]]", "key `client`"),
            ("client = [[1]]", "key `client`"),
            ("header = \"x\"", "key `header`"),
            ("[header]\n\"bad name\" = \"x\"", "not a valid header name"),
            ("[header]\nx = \"a\\nb\"", "characters HTTP does not allow"),
            ("[header]\nx = 1", "key `header`: x"),
            ("dial_timeout = \"soon\"", "key `dial_timeout`"),
            ("dial_timeout = 5", "key `dial_timeout`"),
            ("dial_timeout = \"0s\"", "more than zero"),
            (
                "proxy = \"socks5://p:1080\"",
                "SOCKS proxies are not supported",
            ),
            ("proxy = \"ftp://p\"", "unknown scheme"),
            ("proxy = \"http://p:3128/path\"", "without a path"),
            ("proxy = \"not a url\"", "is not a URL"),
            ("server = [", ""),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn go_durations() {
        for (s, ms) in [
            ("1s", 1000),
            ("1.5s", 1500),
            ("300ms", 300),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("0", 0),
            ("1500us", 1),
        ] {
            assert_eq!(go_duration(s).map(|d| d.as_millis()), Some(ms), "{s}");
        }
        for s in ["", "1", "s", "1x", "1.2.3s", "-1s"] {
            assert_eq!(go_duration(s), None, "{s}");
        }
    }
}
