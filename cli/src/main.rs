//! berth: command-line client for berthd (or any CRI runtime).

use std::process::ExitCode;
use std::time::Duration;

use berth_cli::client::{self, CriClient};
use berth_cli::endpoint::{self, CRICTL_CONFIG, ENV_ENDPOINT};
use berth_cli::output::{self, Format};
use clap::{Parser, Subcommand};
use k8s_cri::v1::{RuntimeConfigRequest, StatusRequest, VersionRequest};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Command-line client for berth and other CRI runtimes"
)]
struct Cli {
    /// CRI endpoint [default: $BERTH_RUNTIME_ENDPOINT, else runtime-endpoint in the crictl config, else unix:///run/berth/berth.sock]
    #[arg(long, short = 'r', global = true, value_name = "ENDPOINT")]
    runtime_endpoint: Option<String>,
    /// crictl-style config file read for runtime-endpoint and timeout.
    #[arg(long, global = true, value_name = "PATH", default_value = CRICTL_CONFIG)]
    config: std::path::PathBuf,
    /// Seconds to wait for the connection [default: crictl config timeout, else 2].
    #[arg(long, short = 't', global = true, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Output format for data.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runtime name, version and CRI API version.
    Version,
    /// Runtime and network readiness, with the daemon's configuration.
    Info,
    /// Runtime-wide configuration (cgroup driver).
    RuntimeConfig,
}

#[derive(Serialize)]
struct Version {
    version: String,
    runtime_name: String,
    runtime_version: String,
    runtime_api_version: String,
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

async fn run(cli: Cli) -> Result<String, String> {
    let env = std::env::var(ENV_ENDPOINT).ok();
    let resolved = endpoint::resolve(cli.runtime_endpoint.as_deref(), env.as_deref(), &cli.config)
        .map_err(|e| e.to_string())?;
    let timeout = cli
        .timeout
        .map(Duration::from_secs)
        .or(resolved.timeout)
        .unwrap_or(Duration::from_secs(2));
    let CriClient { mut runtime, .. } = client::connect(&resolved.socket, timeout)
        .await
        .map_err(|e| format!("{e}; is berthd running?"))?;
    let fmt = cli.output;
    match cli.command {
        Command::Version => {
            let v = runtime
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
        Command::Info => {
            let s = runtime
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
                output::table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &rows)
            }))
        }
        Command::RuntimeConfig => {
            let c = runtime
                .runtime_config(RuntimeConfigRequest {})
                .await
                .map_err(status_msg)?
                .into_inner();
            let driver = c
                .linux
                .and_then(|l| k8s_cri::v1::CgroupDriver::try_from(l.cgroup_driver).ok())
                .map(|d| match d {
                    k8s_cri::v1::CgroupDriver::Systemd => "systemd",
                    k8s_cri::v1::CgroupDriver::Cgroupfs => "cgroupfs",
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
    }
}

fn status_msg(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}
