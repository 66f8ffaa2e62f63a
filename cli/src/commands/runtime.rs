//! version, info, runtime-config.

use berth_cli::client::CriClient;
use berth_cli::output::{self, Format};
use k8s_cri::v1::{CgroupDriver, RuntimeConfigRequest, StatusRequest, VersionRequest};
use serde::Serialize;

use super::status_msg;

#[derive(Serialize)]
struct Version {
    version: String,
    runtime_name: String,
    runtime_version: String,
    runtime_api_version: String,
}

pub async fn version(c: &mut CriClient, fmt: Format) -> Result<String, String> {
    let v = c
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(status_msg)?
        .into_inner();
    let v = Version {
        version: v.version,
        runtime_name: v.runtime_name,
        runtime_version: v.runtime_version,
        runtime_api_version: v.runtime_api_version,
    };
    Ok(output::render(fmt, &v, || {
        format!(
            "Version:  {}\nRuntimeName:  {}\nRuntimeVersion:  {}\nRuntimeApiVersion:  {}\n",
            v.version, v.runtime_name, v.runtime_version, v.runtime_api_version
        )
    }))
}

#[derive(Serialize)]
struct Condition {
    r#type: String,
    status: bool,
    reason: String,
    message: String,
}

#[derive(Serialize)]
struct Info {
    conditions: Vec<Condition>,
    #[serde(flatten)]
    info: serde_json::Map<String, serde_json::Value>,
}

pub async fn info(c: &mut CriClient, fmt: Format) -> Result<String, String> {
    let s = c
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .map_err(status_msg)?
        .into_inner();
    let conditions: Vec<Condition> = s
        .status
        .map(|st| st.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| Condition {
            r#type: c.r#type,
            status: c.status,
            reason: c.reason,
            message: c.message,
        })
        .collect();
    let mut keys: Vec<_> = s.info.into_iter().collect();
    keys.sort();
    let info = keys
        .into_iter()
        .map(|(k, v)| {
            let parsed = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            (k, parsed)
        })
        .collect();
    let info = Info { conditions, info };
    Ok(output::render(fmt, &info, || {
        let rows: Vec<Vec<String>> = info
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.r#type.clone(),
                    c.status.to_string(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        let mut text = output::table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &rows);
        if let Some(regs) = info.info.get("registries").and_then(|r| r.as_array())
            && !regs.is_empty()
        {
            text.push('\n');
            text.push_str(&output::table(
                &["REGISTRY", "FILE", "HOSTS (IN ORDER) OR ERROR"],
                &registry_rows(regs),
            ));
        }
        text
    }))
}

/// One row per configured registry: its hosts.toml and its hosts in the
/// order pulls try them, or why the file cannot be used.
fn registry_rows(regs: &[serde_json::Value]) -> Vec<Vec<String>> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    regs.iter()
        .map(|r| {
            let hosts = match r.get("error") {
                Some(e) => format!("error: {}", s(e)),
                None => r
                    .get("hosts")
                    .and_then(|h| h.as_array())
                    .map(|hosts| {
                        hosts
                            .iter()
                            .map(|h| {
                                let caps: Vec<String> = h["capabilities"]
                                    .as_array()
                                    .map(|c| c.iter().map(s).collect())
                                    .unwrap_or_default();
                                format!("{} [{}]", s(&h["url"]), caps.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
            };
            vec![s(&r["registry"]), s(&r["file"]), hosts]
        })
        .collect()
}

pub async fn runtime_config(c: &mut CriClient, fmt: Format) -> Result<String, String> {
    let rc = c
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .map_err(status_msg)?
        .into_inner();
    let driver = rc
        .linux
        .and_then(|l| CgroupDriver::try_from(l.cgroup_driver).ok())
        .map(|d| match d {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        })
        .unwrap_or("unknown");
    #[derive(Serialize)]
    struct RuntimeConfig<'a> {
        cgroup_driver: &'a str,
    }
    Ok(output::render(
        fmt,
        &RuntimeConfig {
            cgroup_driver: driver,
        },
        || format!("CgroupDriver:  {driver}\n"),
    ))
}
