//! Network configuration lists as the CNI spec defines them, loaded the way
//! libcni does: files in the conf dir with `.conflist`, `.conf` or `.json`
//! extensions, in lexical order; the first valid one wins. A single-plugin
//! `.conf` file is lifted into a one-plugin list.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// CNI spec versions berth speaks with plugins.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

const EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// Why no usable network configuration could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NetConfError {
    /// The conf dir is missing or unreadable.
    #[error("cannot read CNI config dir {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No file in the conf dir has a config extension.
    #[error("no CNI network config found in {dir}")]
    NoConfig { dir: PathBuf },
    /// Config files exist but none is valid; each file's problem is listed.
    #[error("no valid CNI network config in {dir}: {}", .rejected.iter().map(|(p, r)| format!("{}: {r}", p.display())).collect::<Vec<_>>().join("; "))]
    NoneValid {
        dir: PathBuf,
        rejected: Vec<(PathBuf, String)>,
    },
    /// The chosen network names a plugin no bin dir holds.
    #[error("CNI plugin {plugin:?} of network {network:?} not found in {}", .dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))]
    PluginNotFound {
        network: String,
        plugin: String,
        dirs: Vec<PathBuf>,
    },
}

/// One plugin entry of a list: its `type` and its whole configuration object.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    pub plugin_type: String,
    pub conf: Map<String, Value>,
}

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConf>,
    /// The file it came from.
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// Parses a `.conflist` (or, with `single_plugin`, a `.conf`) document.
    pub fn parse(bytes: &[u8], single_plugin: bool, source: PathBuf) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(mut obj) = value else {
            return Err("not a JSON object".into());
        };
        let name = take_string(&obj, "name")?;
        validate_name(&name)?;
        let cni_version = take_string(&obj, "cniVersion")?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(format!(
                "cniVersion {cni_version:?} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ));
        }
        let flag = |obj: &Map<String, Value>, key: &str| -> Result<bool, String> {
            match obj.get(key) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(format!("{key:?} must be a boolean")),
            }
        };
        let disable_check = flag(&obj, "disableCheck")?;
        let disable_gc = flag(&obj, "disableGC")?;
        let raw_plugins = if single_plugin {
            vec![Value::Object(obj)]
        } else {
            match obj.remove("plugins") {
                Some(Value::Array(list)) => list,
                Some(_) => return Err("\"plugins\" must be an array".into()),
                None => return Err("missing \"plugins\"".into()),
            }
        };
        if raw_plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        let mut plugins = Vec::with_capacity(raw_plugins.len());
        for (i, p) in raw_plugins.into_iter().enumerate() {
            let Value::Object(conf) = p else {
                return Err(format!("plugin {i} is not a JSON object"));
            };
            let plugin_type = take_string(&conf, "type").map_err(|e| format!("plugin {i}: {e}"))?;
            if plugin_type.contains('/') || plugin_type.starts_with('.') {
                return Err(format!(
                    "plugin {i}: type {plugin_type:?} is not a plain file name"
                ));
            }
            plugins.push(PluginConf { plugin_type, conf });
        }
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            disable_gc,
            plugins,
            source,
        })
    }

    /// Finds each plugin binary in `bin_dirs` (first match wins).
    pub fn find_plugins(&self, bin_dirs: &[PathBuf]) -> Result<Vec<PathBuf>, NetConfError> {
        self.plugins
            .iter()
            .map(|p| {
                find_plugin(&p.plugin_type, bin_dirs).ok_or_else(|| NetConfError::PluginNotFound {
                    network: self.name.clone(),
                    plugin: p.plugin_type.clone(),
                    dirs: bin_dirs.to_vec(),
                })
            })
            .collect()
    }
}

/// The executable file `name` in the first of `dirs` that has one.
pub fn find_plugin(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|d| d.join(name)).find(|p| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

fn take_string(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{key:?} is empty")),
        Some(_) => Err(format!("{key:?} must be a string")),
        None => Err(format!("missing {key:?}")),
    }
}

/// CNI network names: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} is not valid (letters, digits, '_', '.', '-', starting with a letter or digit)"
        ))
    }
}

/// Loads the first valid network configuration list from `dir`.
pub fn load_network(dir: &Path) -> Result<NetworkConfigList, NetConfError> {
    let entries = fs::read_dir(dir).map_err(|source| NetConfError::ReadDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(NetConfError::NoConfig {
            dir: dir.to_owned(),
        });
    }
    let mut rejected = Vec::new();
    for path in files {
        let single = path.extension().is_some_and(|e| e != "conflist");
        let parsed = fs::read(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| NetworkConfigList::parse(&bytes, single, path.clone()));
        match parsed {
            Ok(list) => return Ok(list),
            Err(reason) => rejected.push((path, reason)),
        }
    }
    Err(NetConfError::NoneValid {
        dir: dir.to_owned(),
        rejected,
    })
}

/// Whether the node's pod network is usable, as `Status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkStatus {
    pub network: Option<NetworkConfigList>,
    /// Empty when ready.
    pub reason: &'static str,
    pub message: String,
}

impl NetworkStatus {
    pub fn ready(&self) -> bool {
        self.network.is_some()
    }
}

impl fmt::Display for NetworkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.network {
            Some(n) => write!(f, "network {} from {}", n.name, n.source.display()),
            None => write!(f, "{}: {}", self.reason, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"berth","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    fn write(dir: &Path, name: &str, body: &str) {
        fs::write(dir.join(name), body).unwrap();
    }

    fn exe(dir: &Path, name: &str) {
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn parses_a_conflist() {
        let l = NetworkConfigList::parse(LIST.as_bytes(), false, "x".into()).unwrap();
        assert_eq!(l.name, "berth");
        assert_eq!(l.cni_version, "1.0.0");
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[1].plugin_type, "portmap");
        assert_eq!(l.plugins[0].conf["bridge"], "cni0");
    }

    #[test]
    fn lifts_a_single_plugin_conf() {
        let l = NetworkConfigList::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#,
            true,
            "x".into(),
        )
        .unwrap();
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0].plugin_type, "bridge");
    }

    #[test]
    fn rejects_bad_lists_with_a_reason() {
        let cases = [
            (r#"[]"#, "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"a"}]}"#,
                "missing \"name\"",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"a"}]}"#,
                "not supported",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "is empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"x":1}]}"#,
                "plugin 0: missing \"type\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"-n","plugins":[{"type":"a"}]}"#,
                "not valid",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "plain file name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":"yes","plugins":[{"type":"a"}]}"#,
                "boolean",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n""#, "not JSON"),
        ];
        for (doc, want) in cases {
            let err = NetworkConfigList::parse(doc.as_bytes(), false, "x".into()).unwrap_err();
            assert!(err.contains(want), "{doc}: {err}");
        }
    }

    #[test]
    fn first_valid_file_in_lexical_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "05-broken.conflist", "{");
        write(
            dir.path(),
            "10-b.conflist",
            &LIST.replace("berth", "second"),
        );
        write(dir.path(), "07-a.conflist", LIST);
        write(dir.path(), "01-ignored.txt", LIST);
        let l = load_network(dir.path()).unwrap();
        assert_eq!(l.name, "berth");
        assert!(l.source.ends_with("07-a.conflist"));
    }

    #[test]
    fn empty_and_invalid_dirs_explain_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_network(dir.path()).unwrap_err();
        assert!(matches!(e, NetConfError::NoConfig { .. }), "{e}");
        write(dir.path(), "10-bad.conflist", r#"{"name":"n"}"#);
        let e = load_network(dir.path()).unwrap_err().to_string();
        assert!(e.contains("10-bad.conflist: missing \"cniVersion\""), "{e}");
        let e = load_network(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, NetConfError::ReadDir { .. }), "{e}");
    }

    #[test]
    fn status_needs_every_plugin_binary() {
        let conf = tempfile::tempdir().unwrap();
        let bin1 = tempfile::tempdir().unwrap();
        let bin2 = tempfile::tempdir().unwrap();
        write(conf.path(), "10.conflist", LIST);
        let config = crate::Config {
            conf_dir: conf.path().to_owned(),
            bin_dirs: vec![bin1.path().to_owned(), bin2.path().to_owned()],
        };
        exe(bin1.path(), "bridge");
        fs::write(bin2.path().join("portmap"), "not executable").unwrap();
        let w = crate::NetworkWatch::new(config.clone());
        let s = w.status();
        assert!(!s.ready());
        assert_eq!(s.reason, "NetworkPluginNotReady");
        assert!(s.message.contains("\"portmap\""), "{}", s.message);
        exe(bin2.path(), "portmap");
        let s = w.status();
        assert!(s.ready(), "{s}");
        assert_eq!(
            s.network.unwrap().find_plugins(&config.bin_dirs).unwrap()[1],
            bin2.path().join("portmap")
        );
    }
}
