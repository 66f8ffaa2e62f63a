//! berthd: the berth CRI daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_cri::config::{Config, DEFAULT_CONFIG_TOML, LogFormat};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "berth: a Kubernetes container runtime (CRI daemon)"
)]
struct Cli {
    /// Config file [default: /etc/berth/config.toml if it exists, else built-in defaults]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Overrides daemon.root_dir.
    #[arg(long, value_name = "DIR")]
    root_dir: Option<PathBuf>,
    /// Overrides daemon.state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Overrides daemon.socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log filter; overrides RUST_LOG and daemon.log_level.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Overrides daemon.log_format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the complete default configuration, documented.
    Default,
    /// Validate a config file (the one berthd would load) and print it resolved.
    Check,
}

fn load(cli: &Cli) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let (mut config, file) = Config::load(cli.config.as_deref())?;
    let d = &mut config.daemon;
    if let Some(p) = &cli.root_dir {
        d.root_dir = p.clone();
    }
    if let Some(p) = &cli.state_dir {
        d.state_dir = p.clone();
    }
    if let Some(p) = &cli.socket {
        d.socket = p.clone();
    }
    if let Some(f) = cli.log_format {
        d.log_format = f;
    }
    config
        .validate()
        .map_err(|(key, msg)| anyhow::anyhow!("option for `{key}`: {msg}"))?;
    Ok((config, file))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Config(ConfigCommand::Default)) => {
            print!("{DEFAULT_CONFIG_TOML}");
            return Ok(());
        }
        Some(Command::Config(ConfigCommand::Check)) => {
            let (config, file) = load(&cli)?;
            let source = file
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            println!("# {source}: valid");
            print!("{}", toml::to_string(&config).context("printing config")?);
            return Ok(());
        }
        None => {}
    }
    let (config, file) = load(&cli)?;
    berth_cri::logging::init(
        config.daemon.log_format,
        cli.log_level.as_deref(),
        &config.daemon.log_level,
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(f) = &file {
        tracing::info!(config = %f.display(), "configuration loaded");
    } else {
        tracing::info!("no config file; using built-in defaults");
    }
    // Two workers serve a node's CRI traffic; blocking work (store commits,
    // file I/O) goes to the blocking pool.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(2))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(64)
        .thread_name("berthd")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(berth_cri::daemon::run(config, file))?;
    Ok(())
}

fn main() -> ExitCode {
    berth_cri::memory::limit_arenas();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "berthd failed");
            eprintln!("berthd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
