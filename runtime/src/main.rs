//! berth-runtime: berth's OCI runtime, speaking the runc command line (the
//! subset berth's shim and berthd use) on youki's libcontainer.
//!
//! One short-lived, single-threaded process per call: libcontainer 0.7
//! chdirs and forks during create/start/exec and is not thread-safe. Never
//! spawn threads here.

mod bundle;
mod cgroup_dirs;
mod commands;
mod console;
mod direct_create;
mod exec;
mod log;
mod payload;
mod rootfs;
mod seccomp;
mod setns_exec;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc command line, on youki's libcontainer)"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags given before the command, as with runc.
#[derive(Debug, Args)]
pub struct Global {
    /// Directory for container state.
    #[arg(long, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Write diagnostics to this file (appended) instead of stderr.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Format of diagnostics.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: log::Format,
    /// cgroupsPath is `slice:prefix:name`, placed where systemd would put it.
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Debug diagnostics.
    #[arg(long)]
    pub debug: bool,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, hide = true)]
    pub rootless: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a container, stopped before its process runs.
    Create(commands::CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Print a container's OCI state as JSON.
    State { id: String },
    /// Send a signal to a container's init (or, with --all, all its processes).
    Kill(commands::KillArgs),
    /// Delete a container (its state, cgroup and, with --force, processes).
    Delete(commands::DeleteArgs),
    /// Run a process in a running container.
    Exec(exec::ExecArgs),
    /// Apply OCI LinuxResources to a container's cgroup.
    Update(commands::UpdateArgs),
    /// List containers.
    List(commands::ListArgs),
    /// Print the runtime's features as JSON.
    Features,
}

fn main() -> ExitCode {
    // Before anything else: create and exec run this binary's code inside
    // the container's namespaces, where its /proc entries must not lead a
    // container to the host's file (berth_process::sealed). Forked
    // children inherit this; the execve of the container's program ends it.
    // libcontainer's paths (terminals, user namespaces, ...) fork from this
    // process too, so they run from the same sealed copy; its intermediate
    // process turns dumpable only while a new user namespace's id maps are
    // written, in berthd's PID namespace, where no container sees it.
    let non_dumpable = berth_process::sealed::make_non_dumpable();
    // What the container's init or an exec'd process inherits: Rust
    // ignored SIGPIPE before main (berth_process::signals).
    let _ = berth_process::signals::reset_signals();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // berthd and its shims run this binary from one sealed copy made at
    // berthd's start; run any other way, it makes its own copy first.
    // Before the log is opened: the re-exec keeps inherited descriptors.
    let sealed = match cli.cmd {
        Cmd::Create(_) | Cmd::Exec(_) => {
            non_dumpable.and_then(|()| berth_process::sealed::reexec_sealed())
        }
        _ => Ok(()),
    };
    log::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    );
    if let Err(e) = sealed {
        log::error(&format!(
            "refusing to enter a container's namespaces unprotected: {e}"
        ));
        return ExitCode::FAILURE;
    }
    let g = &cli.global;
    let result = match cli.cmd {
        Cmd::Create(a) => commands::create(g, a).map(|()| 0),
        Cmd::Start { id } => commands::start(g, &id).map(|()| 0),
        Cmd::State { id } => commands::state(g, &id).map(|()| 0),
        Cmd::Kill(a) => commands::kill(g, a).map(|()| 0),
        Cmd::Delete(a) => commands::delete(g, a).map(|()| 0),
        Cmd::Exec(a) => exec::exec(g, a),
        Cmd::Update(a) => commands::update(g, a).map(|()| 0),
        Cmd::List(a) => commands::list(g, a).map(|()| 0),
        Cmd::Features => commands::features().map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            log::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Bad command line: help and version go to stdout (exit 0); errors go to the
/// log named on the command line if any (exit 1), like every other failure.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        let eq = format!("{flag}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&eq).map(str::to_string)
            }
        })
    };
    let format = match value_of("--log-format").as_deref() {
        Some("json") => log::Format::Json,
        _ => log::Format::Text,
    };
    log::init(
        value_of("--log").map(PathBuf::from).as_deref(),
        format,
        false,
    );
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line");
    log::error(first.trim_start_matches("error: "));
    ExitCode::FAILURE
}
