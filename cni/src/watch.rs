//! The node's network status, cached until the conf dir changes.
//!
//! kubelet polls `Status` every few seconds; re-reading and re-parsing the
//! conf dir each time is wasted work. An inotify watch on the conf dir
//! invalidates the cache on any change (create, write, rename, delete), so a
//! config written after start is still seen at the next call. Plugin
//! binaries are stat'ed on every call: a plugin removed from a bin dir makes
//! the network not ready at once.

use std::sync::Mutex;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::netconf::{NetConfError, NetworkConfigList, NetworkStatus, load_network};

#[derive(Debug)]
struct State {
    /// Set while a watch on the conf dir is active.
    inotify: Option<Inotify>,
    /// The last load, valid while the watch reports no change.
    cached: Option<Result<NetworkConfigList, String>>,
}

/// Loads the network config on demand and keeps it until the dir changes.
#[derive(Debug)]
pub struct NetworkWatch {
    config: crate::Config,
    state: Mutex<State>,
}

impl NetworkWatch {
    pub fn new(config: crate::Config) -> NetworkWatch {
        NetworkWatch {
            config,
            state: Mutex::new(State {
                inotify: None,
                cached: None,
            }),
        }
    }

    fn watch(&self) -> Option<Inotify> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        inotify.add_watch(&self.config.conf_dir, flags).ok()?;
        Some(inotify)
    }

    /// The network list (reloaded only after a change in the conf dir).
    pub fn network(&self) -> Result<NetworkConfigList, String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match &st.inotify {
            // Any event (or an overflow, or a read error) means reload.
            Some(i) => !matches!(i.read_events(), Err(nix::errno::Errno::EAGAIN)),
            None => true,
        };
        if changed || st.cached.is_none() {
            if st.inotify.is_none() {
                // Watch first, then load: a change in between is not lost.
                st.inotify = self.watch();
            }
            let loaded = load_network(&self.config.conf_dir).map_err(|e| e.to_string());
            st.cached = Some(loaded);
            if st.inotify.is_none() {
                // No watch (the dir is missing): never trust the cache.
                return st.cached.take().unwrap_or_else(|| Err(String::new()));
            }
        }
        st.cached.clone().unwrap_or_else(|| Err(String::new()))
    }

    /// Whether the pod network is usable, as `Status` reports it.
    pub fn status(&self) -> NetworkStatus {
        let checked = self.network().and_then(|list| {
            list.find_plugins(&self.config.bin_dirs)
                .map(|_| list)
                .map_err(|e: NetConfError| e.to_string())
        });
        match checked {
            Ok(list) => NetworkStatus {
                network: Some(list),
                reason: "",
                message: String::new(),
            },
            Err(message) => NetworkStatus {
                network: None,
                reason: "NetworkPluginNotReady",
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"one","plugins":[{"type":"p"}]}"#;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, NetworkWatch) {
        let conf = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let p = bin.path().join("p");
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let w = NetworkWatch::new(crate::Config {
            conf_dir: conf.path().to_owned(),
            bin_dirs: vec![bin.path().to_owned()],
        });
        (conf, bin, w)
    }

    #[test]
    fn sees_files_written_renamed_edited_and_removed() {
        let (conf, bin, w) = setup();
        assert!(!w.status().ready());
        fs::write(conf.path().join("10.conflist"), LIST).unwrap();
        assert_eq!(w.status().network.unwrap().name, "one");
        // In-place edit (no rename).
        fs::write(conf.path().join("10.conflist"), LIST.replace("one", "two")).unwrap();
        assert_eq!(w.status().network.unwrap().name, "two");
        // Atomic replace by rename.
        fs::write(conf.path().join(".tmp"), LIST.replace("one", "three")).unwrap();
        fs::rename(conf.path().join(".tmp"), conf.path().join("10.conflist")).unwrap();
        assert_eq!(w.status().network.unwrap().name, "three");
        // Plugin binary removed: not ready at once.
        fs::remove_file(bin.path().join("p")).unwrap();
        assert!(w.status().message.contains("\"p\""));
        fs::remove_file(conf.path().join("10.conflist")).unwrap();
        assert!(w.status().message.contains("no CNI network config"));
    }

    #[test]
    fn a_conf_dir_created_later_is_picked_up() {
        let (conf, _bin, _) = setup();
        let dir = conf.path().join("later");
        let w = NetworkWatch::new(crate::Config {
            conf_dir: dir.clone(),
            bin_dirs: vec![_bin.path().to_owned()],
        });
        assert!(w.status().message.contains("cannot read CNI config dir"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("a.conflist"), LIST).unwrap();
        assert!(w.status().ready());
    }
}
