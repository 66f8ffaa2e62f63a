//! berthd's configuration file: TOML, one section per concern, every key
//! optional with the default documented in `deploy/config.toml` (which is
//! also what `berthd config default` prints, and a test keeps the two equal).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Where berthd looks for its config when `--config` is not given. If the
/// file does not exist the embedded defaults are used.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";
/// Where drop-ins are read from when berthd runs on built-in defaults;
/// otherwise `config.d` beside the config file.
pub const DEFAULT_DROPIN_DIR: &str = "/etc/berth/config.d";

/// The documented default config, as shipped in `deploy/config.toml`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../deploy/config.toml");

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    pub streaming: berth_streaming::Config,
    pub pod: berth_pod::Config,
    pub image: berth_image::Config,
    pub cni: berth_cni::Config,
    pub runtime: berth_containers::Config,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[daemon]`: paths, logging, shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    pub root_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub log_level: String,
    pub log_format: LogFormat,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            root_dir: PathBuf::from("/var/lib/berth"),
            state_dir: PathBuf::from("/run/berth"),
            socket: PathBuf::from("/run/berth/berth.sock"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint and the stats sampling clocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of the HTTP endpoint (`/metrics`, `/healthz`,
    /// `/readyz`); empty disables it. Port 0 takes a free port, written to
    /// `<state_dir>/metrics.addr`.
    pub address: String,
    /// How often every pod's and container's use is read.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// How often writable layers are walked for their size and cgroup
    /// limits re-read (also after UpdateContainerResources); also the age
    /// at which ImageFsInfo's total of them is measured again.
    #[serde(with = "humantime_serde")]
    pub disk_interval: Duration,
}

/// The metrics endpoint's documented default port.
pub const DEFAULT_METRICS_PORT: u16 = 9338;

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: format!("127.0.0.1:{DEFAULT_METRICS_PORT}"),
            stats_interval: Duration::from_secs(10),
            disk_interval: Duration::from_secs(60),
        }
    }
}

impl MetricsConfig {
    /// The endpoint's address, when it is enabled.
    pub fn socket_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        if self.address.is_empty() {
            return Ok(None);
        }
        self.address.parse().map(Some).map_err(|_| {
            format!(
                "{:?} is not host:port (an IP address and a port)",
                self.address
            )
        })
    }

    fn validate(&self) -> Result<(), (String, String)> {
        self.socket_addr().map_err(|m| ("address".to_owned(), m))?;
        for (key, d) in [
            ("stats_interval", self.stats_interval),
            ("disk_interval", self.disk_interval),
        ] {
            if d < Duration::from_secs(1) {
                return Err((key.into(), "must be at least 1s".into()));
            }
        }
        Ok(())
    }
}

/// A config that cannot be used; each variant names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {}{message}", key_prefix(.key))]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A toml error as one line: "line N: message", without toml's snippet.
fn describe(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message().trim_end())
        }
        None => e.message().trim_end().to_owned(),
    }
}

/// `over`'s tables merged into `base`'s; its other values replace them.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The `*.toml` files of `dir`, in name order (none if `dir` is missing).
fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

impl Config {
    /// Parses and validates a config document; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_err = |key: String, message: String| ConfigError::Parse {
            path: path.to_owned(),
            key,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| parse_err(String::new(), describe(text, &e)))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            parse_err(key, describe(text, e.inner()))
        })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Loads `path`, or `/etc/berth/config.toml` if it exists, or the
    /// embedded defaults. Returns the file actually read, if any.
    pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_PATH);
                if !p.exists() {
                    return Ok((Config::default(), None));
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok((Config::parse(&text, &path)?, Some(path)))
    }

    /// The config file (as [`load`](Self::load) finds it) with the drop-ins
    /// of `dropin_dir` applied over it: every `*.toml` file there, in name
    /// order (CRI-O's `crio.conf.d` convention), each a partial config
    /// whose tables merge into what came before and whose values replace
    /// it. `dropin_dir` defaults to `config.d` beside the config file (or
    /// [`DEFAULT_DROPIN_DIR`] without one); a missing directory has no
    /// drop-ins. An error names the drop-in that caused it. Returns the
    /// config, the file read and the drop-ins applied.
    pub fn load_layered(
        path: Option<&Path>,
        dropin_dir: Option<&Path>,
    ) -> Result<(Config, Option<PathBuf>, Vec<PathBuf>), ConfigError> {
        let (mut config, file) = Config::load(path)?;
        let dir = match dropin_dir {
            Some(d) => d.to_owned(),
            None => match file.as_deref().and_then(Path::parent) {
                Some(parent) => parent.join("config.d"),
                None => PathBuf::from(DEFAULT_DROPIN_DIR),
            },
        };
        let dropins = dropins(&dir)?;
        if dropins.is_empty() {
            return Ok((config, file, dropins));
        }
        let invalid = |path: &Path, key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let mut table = toml::Table::try_from(&config)
            .map_err(|e| invalid(&dir, String::new(), e.to_string()))?;
        for d in &dropins {
            let text = std::fs::read_to_string(d).map_err(|source| ConfigError::Read {
                path: d.clone(),
                source,
            })?;
            let over: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: d.clone(),
                key: String::new(),
                message: describe(&text, &e),
            })?;
            merge(&mut table, over);
            // Checked after each one, so an error names its drop-in.
            config = serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(
                |e| ConfigError::Parse {
                    path: d.clone(),
                    key: e.path().to_string(),
                    message: e.inner().message().trim_end().to_owned(),
                },
            )?;
            config
                .validate()
                .map_err(|(key, message)| invalid(d, key, message))?;
        }
        Ok((config, file, dropins))
    }

    /// Checks what serde cannot. Returns the offending key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let d = &self.daemon;
        for (key, p) in [
            ("daemon.root_dir", &d.root_dir),
            ("daemon.state_dir", &d.state_dir),
            ("daemon.socket", &d.socket),
        ] {
            if !p.is_absolute() {
                return Err((key.into(), format!("{p:?} is not an absolute path")));
            }
        }
        if d.socket.file_name().is_none() {
            return Err(("daemon.socket".into(), "must name a file".into()));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if d.socket.as_os_str().len() > 107 {
            return Err((
                "daemon.socket".into(),
                format!(
                    "{:?} is longer than the 107 bytes a unix socket path may have",
                    d.socket
                ),
            ));
        }
        if d.state_dir.as_os_str().len() > berth_containers::shim::MAX_STATE_DIR {
            return Err((
                "daemon.state_dir".into(),
                format!(
                    "{:?} is longer than {} bytes: the shim sockets under it would not fit a unix socket address",
                    d.state_dir,
                    berth_containers::shim::MAX_STATE_DIR
                ),
            ));
        }
        if d.root_dir == d.state_dir {
            return Err((
                "daemon.state_dir".into(),
                "must differ from daemon.root_dir (state is removed at reboot, root is not)".into(),
            ));
        }
        EnvFilter::try_new(&d.log_level).map_err(|e| {
            (
                "daemon.log_level".into(),
                format!("{:?} is not a log filter: {e}", d.log_level),
            )
        })?;
        if d.shutdown_timeout.is_zero() {
            return Err((
                "daemon.shutdown_timeout".into(),
                "must be more than 0s".into(),
            ));
        }
        self.metrics
            .validate()
            .map_err(|(k, m)| (format!("metrics.{k}"), m))?;
        self.streaming
            .validate()
            .map_err(|(k, m)| (format!("streaming.{k}"), m))?;
        self.cni
            .validate()
            .map_err(|(k, m)| (format!("cni.{k}"), m))?;
        self.image
            .validate()
            .map_err(|(k, m)| (format!("image.{k}"), m))?;
        self.pod
            .validate()
            .map_err(|(k, m)| (format!("pod.{k}"), m))?;
        self.runtime
            .validate()
            .map_err(|(k, m)| (format!("runtime.{k}"), m))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/berth/config.toml"))
    }

    #[test]
    fn shipped_default_config_is_the_default() {
        assert_eq!(parse(DEFAULT_CONFIG_TOML).unwrap(), Config::default());
    }

    #[test]
    fn shipped_default_config_documents_every_key() {
        // Every key of the serialized default must appear, uncommented, in
        // the shipped file; and nothing else may.
        fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let key = format!("{prefix}{k}");
                    keys(v, &format!("{key}."), out);
                    out.push(key);
                }
            }
        }
        let shipped: toml::Value = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        let default = toml::Value::try_from(Config::default()).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys(&shipped, "", &mut a);
        keys(&default, "", &mut b);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let c = parse("[daemon]\nroot_dir = \"/srv/berth\"\n[pod]\ncgroup_driver = \"systemd\"\n")
            .unwrap();
        assert_eq!(c.daemon.root_dir, PathBuf::from("/srv/berth"));
        assert_eq!(c.daemon.state_dir, PathBuf::from("/run/berth"));
        assert_eq!(c.pod.cgroup_driver, berth_pod::CgroupDriver::Systemd);
        let c = parse("[daemon]\nshutdown_timeout = \"1m 30s\"\n").unwrap();
        assert_eq!(c.daemon.shutdown_timeout, Duration::from_secs(90));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[daemon]\nroot_dri = \"/x\"\n",
                "key `daemon.root_dri`: line 2",
                "unknown field `root_dri`",
            ),
            (
                "[pod]\ncgroup_driver = \"cgroupsfs\"\n",
                "key `pod.cgroup_driver`",
                "unknown variant `cgroupsfs`",
            ),
            (
                "[daemon]\nshutdown_timeout = \"soon\"\n",
                "key `daemon.shutdown_timeout`: line 2",
                "",
            ),
            (
                "[daemon]\nroot_dir = \"var/lib\"\n",
                "key `daemon.root_dir`",
                "not an absolute path",
            ),
            (
                "[daemon]\nlog_level = \"info,=[\"\n",
                "key `daemon.log_level`",
                "not a log filter",
            ),
            (
                "[cni]\nbin_dirs = []\n",
                "key `cni.bin_dirs`",
                "at least one",
            ),
            ("[netwrok]\n", "", "unknown field `netwrok`"),
            ("[daemon\n", "line 1", ""),
        ];
        for (text, want_key, want_msg) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("config file /etc/berth/config.toml: "),
                "{err}"
            );
            assert!(err.contains(want_key), "{text:?} -> {err}");
            assert!(err.contains(want_msg), "{text:?} -> {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn long_socket_path_is_rejected() {
        let long = format!("[daemon]\nsocket = \"/{}\"\n", "s".repeat(120));
        let err = parse(&long).unwrap_err().to_string();
        assert!(err.contains("107 bytes"), "{err}");
    }

    #[test]
    fn dropins_apply_in_name_order_and_errors_name_their_file() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("config.toml");
        std::fs::write(
            &main,
            "[daemon]\nlog_level = \"debug\"\n[pod]\nshm_size_mib = 100\n",
        )
        .unwrap();
        let dir = d.path().join("config.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("20-later.toml"), "[pod]\nshm_size_mib = 300\n").unwrap();
        std::fs::write(
            dir.join("10-first.toml"),
            "[pod]\nshm_size_mib = 200\n[metrics]\naddress = \"\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("ignored.conf"), "not toml at all [").unwrap();
        let (c, file, applied) = Config::load_layered(Some(&main), None).unwrap();
        assert_eq!(file.as_deref(), Some(main.as_path()));
        let names: Vec<_> = applied
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["10-first.toml", "20-later.toml"]);
        assert_eq!(c.pod.shm_size_mib, 300, "the last drop-in wins");
        assert_eq!(c.daemon.log_level, "debug", "untouched keys stay");
        assert_eq!(c.metrics.address, "", "tables merge");
        // Without drop-ins: the file alone.
        let (c, _, applied) =
            Config::load_layered(Some(&main), Some(&d.path().join("none"))).unwrap();
        assert!(applied.is_empty());
        assert_eq!(c.pod.shm_size_mib, 100);

        for (name, text, want) in [
            ("30-typo.toml", "[pood]\nx = 1\n", "unknown field `pood`"),
            ("30-syntax.toml", "[pod]\nshm_size_mib = \n", "line 2"),
            (
                "30-invalid.toml",
                "[daemon]\nroot_dir = \"relative\"\n",
                "not an absolute path",
            ),
        ] {
            let bad = dir.join(name);
            std::fs::write(&bad, text).unwrap();
            let err = Config::load_layered(Some(&main), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
            assert!(err.contains(want), "{err}");
            std::fs::remove_file(&bad).unwrap();
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/berth.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
