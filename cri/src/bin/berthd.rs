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
    /// Drop-in directory: its *.toml files apply over the config, in name order [default: config.d beside the config file, else /etc/berth/config.d]
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
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
    /// Validate the config berthd would load (file, drop-ins, flags) and say where it came from.
    Check,
    /// Print the effective config: the file, then its drop-ins, then the flags.
    Dump,
}

/// Where a config came from, for people: the file (or the built-in
/// defaults), then each drop-in.
fn sources(file: &Option<PathBuf>, dropins: &[PathBuf]) -> String {
    let mut s = file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    for d in dropins {
        s += &format!(" + {}", d.display());
    }
    s
}

fn load(cli: &Cli) -> anyhow::Result<(Config, Option<PathBuf>, Vec<PathBuf>)> {
    let (mut config, file, dropins) =
        Config::load_layered(cli.config.as_deref(), cli.config_dir.as_deref())?;
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
    Ok((config, file, dropins))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Config(ConfigCommand::Default)) => {
            print!("{DEFAULT_CONFIG_TOML}");
            return Ok(());
        }
        Some(Command::Config(ConfigCommand::Check)) => {
            let (_, file, dropins) = load(&cli)?;
            println!("{}: valid", sources(&file, &dropins));
            return Ok(());
        }
        Some(Command::Config(ConfigCommand::Dump)) => {
            let (config, file, dropins) = load(&cli)?;
            println!(
                "# effective config: {}, then flags",
                sources(&file, &dropins)
            );
            print!("{}", toml::to_string(&config).context("printing config")?);
            return Ok(());
        }
        None => {}
    }
    let (config, file, dropins) = load(&cli)?;
    berth_cri::logging::init(
        config.daemon.log_format,
        cli.log_level.as_deref(),
        &config.daemon.log_level,
    )
    .map_err(anyhow::Error::msg)?;
    tracing::info!(sources = %sources(&file, &dropins), "configuration loaded");
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
