//! A berthd with its own pod network for e2e tests: a bridge, subnet and
//! nft table leased from [`crate::netns::NetLease`], configured with Debian's
//! CNI plugins (bridge + host-local + portmap) or berth's own berth-bridge.

use std::fs;
use std::path::{Path, PathBuf};

use crate::netns::NetLease;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata,
};

use crate::{Berthd, BerthdBuilder};

/// Which plugins make the test network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plugins {
    Debian,
    Berth,
}

#[derive(Debug)]
pub struct Net {
    pub lease: NetLease,
    pub ipam: PathBuf,
    pub plugins: Plugins,
}

impl Net {
    pub fn conflist(&self) -> String {
        let l = &self.lease;
        match self.plugins {
            Plugins::Debian => format!(
                r#"{{"cniVersion":"1.0.0","name":"{br}","plugins":[
                {{"type":"bridge","bridge":"{br}","isGateway":true,"ipMasq":false,"hairpinMode":true,
                  "ipam":{{"type":"host-local","dataDir":"{ipam}","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
                {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
                br = l.bridge,
                ipam = self.ipam.display(),
                subnet = l.subnet
            ),
            Plugins::Berth => format!(
                r#"{{"cniVersion":"1.0.0","name":"{br}","plugins":[
                {{"type":"berth-bridge","bridge":"{br}","subnets":["{subnet}"],"gateway":true,"ipMasq":false,
                  "dataDir":"{ipam}","nftTable":"{table}","capabilities":{{"portMappings":true,"ipRanges":true,"bandwidth":true}}}}]}}"#,
                br = l.bridge,
                ipam = self.ipam.display(),
                subnet = l.subnet,
                table = l.nft_table
            ),
        }
    }
}

/// A berthd with its own network (bridge, nft table and forwarding
/// setting undone when the lease drops, after the daemon stopped).
#[derive(Debug)]
pub struct Env {
    pub d: Berthd,
    pub net: Net,
}

pub fn env(tag: &str, plugins: Plugins) -> Env {
    env_with(tag, plugins, None)
}

/// `extra_bin`: a directory of test plugins searched first.
pub fn env_with(tag: &str, plugins: Plugins, extra_bin: Option<&Path>) -> Env {
    env_built(tag, plugins, extra_bin, |b| b)
}

/// As [`env_with`], with more daemon config set by `more`.
pub fn env_built(
    tag: &str,
    plugins: Plugins,
    extra_bin: Option<&Path>,
    more: impl FnOnce(BerthdBuilder) -> BerthdBuilder,
) -> Env {
    let lease = NetLease::take();
    let bin_dir = crate::bin_path("berth-bridge").parent().unwrap().to_owned();
    let mut dirs = vec![bin_dir, PathBuf::from("/usr/lib/cni")];
    if let Some(x) = extra_bin {
        dirs.insert(0, x.to_owned());
    }
    let mut d =
        more(Berthd::builder(tag).config("cni", "bin_dirs", &format!("{dirs:?}"))).prepare();
    let net = Net {
        ipam: d.dir.join("ipam"),
        lease,
        plugins,
    };
    fs::write(d.cni_conf_dir.join("10-test.conflist"), net.conflist()).unwrap();
    d.spawn_and_wait_ready();
    Env { d, net }
}

/// A pod config for tests: metadata from `name` (namespace `e2e`), its
/// hostname, and a PID namespace per container.
/// A container of `image` running `cmd`, logging to `<name>.log` in the
/// pod's log directory.
pub fn container_config(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

pub fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
