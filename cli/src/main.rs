//! berth: command-line client for berthd (or any CRI runtime).

mod commands;

use std::process::ExitCode;
use std::time::Duration;

use berth_cli::client;
use berth_cli::endpoint::{self, CRICTL_CONFIG, ENV_ENDPOINT};
use berth_cli::output::Format;
use clap::{Parser, Subcommand};

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
    /// Pull an image from a registry.
    Pull {
        image: String,
        /// Registry credentials USERNAME:PASSWORD.
        #[arg(long)]
        creds: Option<String>,
        /// Registry credentials as base64(USERNAME:PASSWORD).
        #[arg(long)]
        auth: Option<String>,
    },
    /// List images.
    Images {
        /// Only images matching this reference.
        image: Option<String>,
        /// Only image ids.
        #[arg(long, short)]
        quiet: bool,
        /// Show repo digests.
        #[arg(long)]
        digests: bool,
    },
    /// Image details (JSON), including its config.
    Inspecti {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images (by reference, id or id prefix).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Bytes and inodes the image filesystem uses.
    Imagefsinfo,
    /// Run a pod sandbox from a crictl-style config (JSON or YAML); prints its id.
    Runp {
        config: std::path::PathBuf,
        /// Runtime handler (RuntimeClass).
        #[arg(long, default_value = "")]
        runtime: String,
    },
    /// Stop pod sandboxes (network down; idempotent).
    Stopp {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pod sandboxes (stopping them first).
    Rmp {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// List pod sandboxes.
    Pods {
        /// Only ids.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Pod sandbox details (JSON).
    Inspectp {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Image management beyond the CRI.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import an OCI image layout archive or a `docker save` archive (.tar or .tar.gz).
    Import { file: std::path::PathBuf },
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
    let mut c = client::connect(&resolved.socket, timeout)
        .await
        .map_err(|e| format!("{e}; is berthd running?"))?;
    let fmt = cli.output;
    use commands::{image, pod, runtime};
    match cli.command {
        Command::Version => runtime::version(&mut c, fmt).await,
        Command::Info => runtime::info(&mut c, fmt).await,
        Command::RuntimeConfig => runtime::runtime_config(&mut c, fmt).await,
        Command::Pull {
            image: name,
            creds,
            auth,
        } => {
            let auth = image::auth_config(creds.as_deref(), auth.as_deref())?;
            image::pull(&mut c, &name, auth).await
        }
        Command::Images {
            image: filter,
            quiet,
            digests,
        } => image::images(&mut c, filter.as_deref(), quiet, digests, fmt).await,
        Command::Inspecti { images } => image::inspecti(&mut c, &images, fmt).await,
        Command::Rmi { images } => image::rmi(&mut c, &images).await,
        Command::Imagefsinfo => image::imagefsinfo(&mut c, fmt).await,
        Command::Image(ImageCommand::Import { file }) => image::import(&mut c, &file).await,
        Command::Runp { config, runtime } => pod::runp(&mut c, &config, &runtime).await,
        Command::Stopp { pods } => pod::stopp(&mut c, &pods).await,
        Command::Rmp { pods } => pod::rmp(&mut c, &pods).await,
        Command::Pods { quiet } => pod::pods(&mut c, quiet, fmt).await,
        Command::Inspectp { pods } => pod::inspectp(&mut c, &pods, fmt).await,
    }
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
