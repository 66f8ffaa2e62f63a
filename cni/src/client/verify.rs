//! The commands that look after attachments rather than make them: CHECK
//! (is a pod still attached as cached), STATUS (can the network take new
//! pods) and GC (drop what no valid attachment owns), the last two CNI
//! 1.1's.

use super::*;

impl Cni {
    /// Checks the pod's attachment: CHECK on each plugin in order, with the
    /// cached list and result.
    pub async fn check(&self, a: &Attachment) -> Result<(), CniError> {
        a.validate(false)?;
        let _lock = self.lock(a).await;
        let dir = self.config.cache_dir.clone();
        let (cid, ifname) = (a.container_id.clone(), a.ifname.clone());
        let found = blocking(move || cache::find(&dir, &cid, &ifname)).await?;
        let current = self.watch.network().ok().map(|l| l.name);
        let mut entries: Vec<(PathBuf, cache::Entry)> = found
            .into_iter()
            .filter_map(|(p, e)| e.ok().map(|e| (p, e)))
            .collect();
        // The current network's attachment first, if there are several.
        entries.sort_by_key(|(_, e)| Some(&e.network_name) != current.as_ref());
        let Some((path, entry)) = entries.into_iter().next() else {
            return Err(CniError::NotAttached {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            });
        };
        let list = cached_list(&path, &entry)?;
        if !conf::at_least(&list.cni_version, V0_4_0) {
            return Err(CniError::Unsupported {
                network: list.name.clone(),
                version: list.cni_version.clone(),
                command: "CHECK",
            });
        }
        if list.disable_check {
            return Ok(());
        }
        let plugins = self.plugins(&list)?;
        let args = conf::cni_args_string(&entry.cni_args);
        let netns = match a.netns.to_str() {
            Some("") | None => entry.netns.as_str(),
            Some(n) => n,
        };
        let target = Target {
            container_id: &a.container_id,
            netns,
            ifname: &a.ifname,
            args: &args,
        };
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries) {
            let stdin = conf::plugin_config(
                &list,
                plugin,
                Some(&entry.result),
                &entry.capability_args,
                &[],
            );
            exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Check,
                target: Some(target),
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.check_timeout,
            })
            .await?;
        }
        Ok(())
    }

    /// The network's readiness: STATUS (CNI 1.1) on each plugin whose
    /// VERSION lists 1.1.0 or later, in order; the first error is returned
    /// (codes 50/51 mean "not available"). Lists older than 1.1.0 and
    /// plugins that do not speak 1.1.0 count as ready once found.
    pub async fn status(&self) -> Result<(), CniError> {
        let list = self.network()?;
        let plugins = self.plugins(&list)?;
        if !conf::at_least(&list.cni_version, V1_1_0) {
            return Ok(());
        }
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries) {
            if !self
                .supports_1_1(&list, &plugin.plugin_type, binary)
                .await?
            {
                tracing::debug!(plugin = %plugin.plugin_type, "plugin predates CNI 1.1; no STATUS");
                continue;
            }
            let stdin = conf::plugin_config(&list, plugin, None, &Map::new(), &[]);
            exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Status,
                target: None,
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.status_timeout,
            })
            .await?;
        }
        Ok(())
    }

    /// Garbage collection: DELs every cached attachment not in `valid`
    /// (with its cached config, whatever network it was for), then runs GC
    /// (CNI 1.1, unless the list sets `disableGC`) with
    /// `cni.dev/valid-attachments` on each plugin of the current network
    /// that speaks 1.1.0. `valid` must include every pod being set up.
    pub async fn gc(&self, valid: &[GcAttachment]) -> Result<(), CniError> {
        let keep: HashSet<(&str, &str)> = valid
            .iter()
            .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
            .collect();
        let dir = self.config.cache_dir.clone();
        let cached = blocking(move || cache::list(&dir)).await?;
        let mut errors = Vec::new();
        for (path, entry) in cached {
            let Ok(entry) = entry else { continue };
            if keep.contains(&(entry.container_id.as_str(), entry.if_name.as_str())) {
                continue;
            }
            tracing::info!(
                pod_id = %entry.container_id,
                network = %entry.network_name,
                "CNI GC: releasing a stale attachment"
            );
            let a = Attachment {
                container_id: entry.container_id.clone(),
                ifname: entry.if_name.clone(),
                ..Attachment::default()
            };
            let _lock = self.lock(&a).await;
            match self.del_cached(&a, &path, &entry).await {
                Ok(()) => {
                    if let Err(e) = blocking(move || cache::remove(&path)).await {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if let Ok(list) = self.watch.network()
            && conf::at_least(&list.cni_version, V1_1_0)
            && !list.disable_gc
        {
            self.gc_plugins(&list, valid, &mut errors).await;
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CniError::Multiple(errors)),
        }
    }

    /// GC on each plugin of `list` that speaks 1.1.0; errors are collected.
    async fn gc_plugins(
        &self,
        list: &NetworkConfigList,
        valid: &[GcAttachment],
        errors: &mut Vec<CniError>,
    ) {
        let plugins = match self.plugins(list) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        let attachments = serde_json::to_value(valid).unwrap_or(json!([]));
        // libcni also sends the key under the name an early draft of the
        // spec used.
        let extra = [
            ("cni.dev/valid-attachments", attachments.clone()),
            ("cni.dev/attachments", attachments),
        ];
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries) {
            match self.supports_1_1(list, &plugin.plugin_type, binary).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
            let stdin = conf::plugin_config(list, plugin, None, &Map::new(), &extra);
            let res = exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Gc,
                target: None,
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.del_timeout,
            })
            .await;
            if let Err(e) = res {
                errors.push(e);
            }
        }
    }

    /// Whether the plugin's VERSION lists 1.1.0 or later (cached per binary
    /// until it changes on disk).
    pub(super) async fn supports_1_1(
        &self,
        list: &NetworkConfigList,
        plugin: &str,
        binary: &Path,
    ) -> Result<bool, CniError> {
        let key = std::fs::metadata(binary).ok().map(|m| VersionKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        });
        if let Some(key) = key {
            let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((k, supports)) = versions.get(binary)
                && *k == key
            {
                return Ok(*supports);
            }
        }
        let stdin =
            serde_json::to_vec(&json!({ "cniVersion": list.cni_version })).unwrap_or_default();
        let out = exec::run(&Invocation {
            plugin,
            binary,
            command: Cmd::Version,
            target: None,
            cni_path: &self.cni_path,
            stdin: &stdin,
            timeout: self.config.status_timeout,
        })
        .await?;
        let info: Value = serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
            plugin: plugin.to_owned(),
            command: "VERSION",
            reason: format!("not JSON: {e}"),
        })?;
        let supports = info
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter()
                    .filter_map(Value::as_str)
                    .any(|v| conf::at_least(v, V1_1_0))
            });
        if let Some(key) = key {
            let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            versions.insert(binary.to_owned(), (key, supports));
        }
        Ok(supports)
    }
}
