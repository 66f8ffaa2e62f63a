//! berth: command-line client for berthd (or any CRI runtime).

mod commands;

use commands::Outcome;

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
    /// Seconds to wait for the connection [default: crictl config timeout, else 2]; for stop, exec-sync and exec --sync, their own timeout (-t is --tty for exec and attach).
    #[arg(long, short = 't', global = true, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Output format for data.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    /// PEM certificate(s) to trust for an https streaming server (berthd's
    /// `[streaming] tls_cert`, or its CA) [default: $BERTH_STREAMING_CA].
    #[arg(long, global = true, value_name = "PATH", env = "BERTH_STREAMING_CA")]
    streaming_ca: Option<std::path::PathBuf>,
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
    /// Create a container in a pod from a crictl-style config (JSON or YAML); prints its id.
    Create {
        /// The pod sandbox (from `runp`).
        pod: String,
        /// Container config.
        config: std::path::PathBuf,
        /// The pod's config, as given to `runp` (the CRI wants it again).
        pod_config: std::path::PathBuf,
    },
    /// Start created containers.
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM (or the image's stop signal), SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before killing (here not the connection timeout).
        #[arg(long, short, default_value_t = 10)]
        timeout: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers (running ones are stopped first).
    Rm {
        /// Accepted for crictl compatibility: running containers are removed anyway.
        #[arg(long, short)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers (running ones unless --all or --state).
    Ps {
        /// Containers in any state.
        #[arg(long, short)]
        all: bool,
        /// Only ids.
        #[arg(long, short)]
        quiet: bool,
        /// Only containers of this pod sandbox.
        #[arg(long, short, value_name = "POD-ID")]
        pod: Option<String>,
        /// Only containers in this state.
        #[arg(long, value_enum, ignore_case = true)]
        state: Option<commands::container::State>,
        /// Only containers with this label (repeatable; all must match).
        #[arg(long, short, value_name = "KEY=VALUE", value_parser = commands::container::parse_label)]
        label: Vec<(String, String)>,
    },
    /// Container details (JSON): the CRI status and the runtime's info.
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print a container's logs (its CRI log file; stderr lines to stderr).
    Logs {
        container: String,
        /// Keep printing new lines until the container stops.
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only lines since a time (RFC 3339) or for a duration (10s, 5m, 1h).
        #[arg(long, value_name = "DURATION|TIME")]
        since: Option<String>,
        /// Prefix each line with its timestamp.
        #[arg(long)]
        timestamps: bool,
    },
    /// Run a command in a running container and wait; exits with its exit code.
    ExecSync {
        /// Seconds before the command is killed, 0 for no limit (here not the connection timeout).
        #[arg(long, short, default_value_t = 0)]
        timeout: u64,
        container: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Run a command in a running container with its input and output streamed (crictl exec); exits with its exit code.
    Exec {
        /// Pass stdin to the command.
        #[arg(long, short)]
        interactive: bool,
        /// Allocate a terminal (stderr then comes on stdout); with -i and a local terminal, it is put in raw mode.
        #[arg(long, short = 't')]
        tty: bool,
        /// Run the command with ExecSync (as `exec-sync`) instead of streaming.
        #[arg(long, short, conflicts_with_all = ["interactive", "tty", "transport"])]
        sync: bool,
        /// With --sync: seconds before the command is killed, 0 for no limit (here not the connection timeout).
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        timeout: u64,
        /// Protocol to the streaming server.
        #[arg(long, value_enum, default_value = "spdy")]
        transport: commands::stream::TransportArg,
        /// The container (id or unique id prefix).
        container: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Attach to a running container's stdout and stderr (and stdin with -i) until they end or Ctrl-C.
    Attach {
        /// Pass stdin to the container (it must have been created with stdin).
        #[arg(long, short)]
        interactive: bool,
        /// The container has a terminal; with -i and a local terminal, it is put in raw mode.
        #[arg(long, short = 't')]
        tty: bool,
        /// Seconds to wait for the connection (the global --timeout; -t is --tty here).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Protocol to the streaming server.
        #[arg(long, value_enum, default_value = "spdy")]
        transport: commands::stream::TransportArg,
        /// The container (id or unique id prefix).
        container: String,
    },
    /// Forward local ports to a pod's ports until Ctrl-C (LOCAL:REMOTE, PORT for the same port, :REMOTE for a free one).
    PortForward {
        /// Local addresses to listen on (repeatable or comma-separated; IPs or localhost).
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1", value_parser = commands::stream::parse_address)]
        address: Vec<std::net::IpAddr>,
        /// Protocol to the streaming server.
        #[arg(long, value_enum, default_value = "spdy")]
        transport: commands::stream::TransportArg,
        /// The pod sandbox (id or unique id prefix).
        pod: String,
        /// Ports: LOCAL:REMOTE, PORT (the same locally), :REMOTE (a free local port).
        #[arg(required = true, value_name = "[LOCAL:]REMOTE", value_parser = commands::stream::parse_port_spec)]
        ports: Vec<commands::stream::PortSpec>,
    },
    /// Run a pod sandbox and a container in it (runp, create, start); prints the container id.
    Run {
        /// Container config.
        config: std::path::PathBuf,
        /// Pod config.
        pod_config: std::path::PathBuf,
        /// Runtime handler (RuntimeClass).
        #[arg(long, default_value = "")]
        runtime: String,
    },
    /// CPU, memory and writable-layer use of running containers (crictl's columns).
    Stats {
        /// Containers in any state (created ones too), not only running ones.
        #[arg(long, short)]
        all: bool,
        /// Only this container (id or id prefix).
        #[arg(long)]
        id: Option<String>,
        /// Only containers of this pod sandbox.
        #[arg(long, short, value_name = "POD-ID")]
        pod: Option<String>,
        /// Only containers with this label (repeatable; all must match).
        #[arg(long, short, value_name = "KEY=VALUE", value_parser = commands::container::parse_label)]
        label: Vec<(String, String)>,
        /// Redraw every --seconds until interrupted.
        #[arg(long, short)]
        watch: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, short, default_value_t = 1)]
        seconds: u64,
    },
    /// CPU and memory use of pod sandboxes (crictl's columns).
    Statsp {
        /// Only this pod sandbox (id or id prefix).
        #[arg(long)]
        id: Option<String>,
        /// Redraw every --seconds until interrupted.
        #[arg(long, short)]
        watch: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, short, default_value_t = 1)]
        seconds: u64,
    },
    /// Pods by CPU or memory, with what they requested and are limited to beside what they use.
    Top {
        /// What to sort by, highest first.
        #[arg(long, value_enum, default_value = "cpu")]
        sort: commands::stats::SortBy,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// Image management beyond the CRI.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import an OCI image layout archive or a `docker save` archive (.tar or .tar.gz).
    Import { file: std::path::PathBuf },
}

async fn run(cli: Cli) -> Result<Outcome, String> {
    if let Some(ca) = &cli.streaming_ca {
        berth_streaming::client::trust(ca).map_err(|e| e.to_string())?;
    }
    let env = std::env::var(ENV_ENDPOINT).ok();
    let resolved = endpoint::resolve(cli.runtime_endpoint.as_deref(), env.as_deref(), &cli.config)
        .map_err(|e| e.to_string())?;
    let timeout = connect_timeout(&cli)
        .map(Duration::from_secs)
        .or(resolved.timeout)
        .unwrap_or(Duration::from_secs(2));
    let mut c = client::connect(&resolved.socket, timeout)
        .await
        .map_err(|e| format!("{e}; is berthd running?"))?;
    let fmt = cli.output;
    use commands::{container, image, pod, runtime, stats, stream};
    let out = match cli.command {
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
        Command::Create {
            pod,
            config,
            pod_config,
        } => container::create(&mut c, &pod, &config, &pod_config).await,
        Command::Start { containers } => container::start(&mut c, &containers).await,
        Command::Stop {
            timeout,
            containers,
        } => container::stop(&mut c, &containers, secs(timeout)).await,
        Command::Rm {
            force: _,
            containers,
        } => container::rm(&mut c, &containers).await,
        Command::Ps {
            all,
            quiet,
            pod,
            state,
            label,
        } => {
            let o = container::PsOptions {
                all,
                quiet,
                pod,
                state,
                labels: label,
            };
            container::ps(&mut c, &o, fmt).await
        }
        Command::Inspect { containers } => container::inspect(&mut c, &containers, fmt).await,
        Command::Logs {
            container: id,
            follow,
            tail,
            since,
            timestamps,
        } => {
            let o = container::LogsOptions {
                follow,
                tail,
                since,
                timestamps,
            };
            container::logs(&mut c, &id, &o).await
        }
        Command::ExecSync {
            timeout,
            container: id,
            cmd,
        } => return container::exec_sync(&mut c, &id, &cmd, secs(timeout)).await,
        Command::Exec {
            sync: true,
            timeout,
            container: id,
            cmd,
            ..
        } => return container::exec_sync(&mut c, &id, &cmd, secs(timeout)).await,
        Command::Exec {
            interactive,
            tty,
            transport,
            container: id,
            cmd,
            ..
        } => {
            let o = stream::StreamOptions {
                stdin: interactive,
                tty,
                transport: transport.into(),
            };
            return stream::exec(&mut c, &id, &cmd, o).await;
        }
        Command::Attach {
            interactive,
            tty,
            transport,
            container: id,
            ..
        } => {
            let o = stream::StreamOptions {
                stdin: interactive,
                tty,
                transport: transport.into(),
            };
            return stream::attach(&mut c, &id, o).await;
        }
        Command::PortForward {
            address,
            transport,
            pod,
            ports,
        } => return stream::port_forward(&c, &pod, &address, &ports, transport.into()).await,
        Command::Run {
            config,
            pod_config,
            runtime,
        } => container::run(&mut c, &config, &pod_config, &runtime).await,
        Command::Stats {
            all,
            id,
            pod,
            label,
            watch,
            seconds,
        } => {
            let o = stats::StatsOptions {
                all,
                id,
                pod,
                labels: label,
                watch: watch.then(|| Duration::from_secs(seconds.max(1))),
            };
            stats::stats(&mut c, &o, fmt).await
        }
        Command::Statsp { id, watch, seconds } => {
            let every = watch.then(|| Duration::from_secs(seconds.max(1)));
            stats::statsp(&mut c, id.as_deref(), every, fmt).await
        }
        Command::Top { sort } => stats::top(&mut c, sort, fmt).await,
        Command::Completion { shell } => Ok(completion(shell)),
    };
    out.map(|out| Outcome { out, code: 0 })
}

/// The completion script for `shell`.
fn completion(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "berth", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `--timeout`, unless it is the command's own (clap gives a subcommand's
/// `--timeout` to the global one of the same name, and back).
fn connect_timeout(cli: &Cli) -> Option<u64> {
    match cli.command {
        Command::Stop { .. } | Command::ExecSync { .. } | Command::Exec { .. } => None,
        _ => cli.timeout,
    }
}

/// Seconds as the CRI's int64.
fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no daemon.
    if let Command::Completion { shell } = cli.command {
        print!("{}", completion(shell));
        return ExitCode::SUCCESS;
    }
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
    let res = rt.block_on(run(cli));
    // A read of stdin (`exec -i`) may still hold a blocking thread: the
    // runtime must not wait for it.
    rt.shutdown_background();
    match res {
        Ok(Outcome { out, code }) => {
            print!("{out}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// crictl's `stop --timeout` and `exec --timeout` share the name of the
    /// global connection timeout; clap then shares the value: for these
    /// two commands `--timeout`/`-t` is the command's, wherever it stands.
    #[test]
    fn stop_and_exec_sync_timeouts_are_theirs() {
        let cli = parse(&["stop", "c1", "c2"]);
        assert!(
            matches!(cli.command, Command::Stop { timeout: 10, ref containers } if containers.len() == 2)
        );
        assert_eq!(connect_timeout(&cli), None);
        let cli = parse(&["stop", "--timeout", "3", "c1"]);
        assert!(matches!(cli.command, Command::Stop { timeout: 3, .. }));
        assert_eq!(connect_timeout(&cli), None);
        let cli = parse(&["stop", "-t", "4", "c1"]);
        assert!(matches!(cli.command, Command::Stop { timeout: 4, .. }));
        let cli = parse(&["-t", "5", "stop", "c1"]);
        assert!(matches!(cli.command, Command::Stop { timeout: 5, .. }));
        let cli = parse(&["exec-sync", "c1", "ls", "-l", "/"]);
        assert_eq!(connect_timeout(&cli), None);
        let Command::ExecSync {
            timeout,
            container,
            cmd,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!((timeout, container.as_str()), (0, "c1"));
        assert_eq!(cmd, ["ls", "-l", "/"]);
        let cli = parse(&["exec-sync", "--timeout", "7", "c1", "sh", "-c", "exit 3"]);
        assert!(
            matches!(cli.command, Command::ExecSync { timeout: 7, ref cmd, .. } if cmd.len() == 3)
        );
        // The command's arguments are its own, flags included.
        let cli = parse(&["exec-sync", "c1", "date", "-t", "9"]);
        assert!(
            matches!(cli.command, Command::ExecSync { timeout: 0, ref cmd, .. } if cmd.len() == 3)
        );
        // Elsewhere -t is the connection timeout.
        assert_eq!(connect_timeout(&parse(&["-t", "5", "ps"])), Some(5));
        assert_eq!(connect_timeout(&parse(&["ps", "-t", "6"])), Some(6));
    }

    #[test]
    fn completions_name_the_commands() {
        let bash = completion(clap_complete::Shell::Bash);
        assert!(bash.contains("_berth()"), "{bash}");
        for cmd in [
            "runp",
            "exec-sync",
            "exec",
            "attach",
            "port-forward",
            "stats",
            "top",
        ] {
            assert!(bash.contains(cmd), "{cmd} missing");
        }
        assert!(completion(clap_complete::Shell::Zsh).starts_with("#compdef berth"));
    }

    /// crictl's exec and attach flags: there `-t` is --tty, not the
    /// connection timeout; `-s`/`--sync` is exec-sync, with its --timeout.
    #[test]
    fn exec_attach_and_port_forward_flags_parse() {
        use commands::stream::{PortSpec, TransportArg};
        let cli = parse(&["exec", "-it", "c1", "--", "sh", "-c", "exit 3"]);
        let Command::Exec {
            interactive,
            tty,
            sync,
            transport,
            ref container,
            ref cmd,
            ..
        } = cli.command
        else {
            panic!()
        };
        assert!(interactive && tty && !sync);
        assert_eq!(transport, TransportArg::Spdy);
        assert_eq!(container, "c1");
        assert_eq!(cmd, &["sh", "-c", "exit 3"]);
        assert_eq!(connect_timeout(&cli), None);
        let cli = parse(&["exec", "--transport", "websocket", "-t", "c1", "ls", "-t"]);
        assert!(matches!(
            cli.command,
            Command::Exec { tty: true, interactive: false, transport: TransportArg::Websocket, ref cmd, .. } if cmd == &["ls", "-t"]
        ));
        let cli = parse(&["exec", "-s", "--timeout", "7", "c1", "true"]);
        assert!(matches!(
            cli.command,
            Command::Exec {
                sync: true,
                timeout: 7,
                ..
            }
        ));
        assert_eq!(connect_timeout(&cli), None);
        assert!(Cli::try_parse_from(["berth", "exec", "-s", "-t", "c1", "true"]).is_err());
        assert!(Cli::try_parse_from(["berth", "exec", "c1"]).is_err());
        // Before the verb, -t is still the connection timeout.
        let cli = parse(&["-t", "5", "attach", "-i", "-t", "c1"]);
        assert!(matches!(
            cli.command,
            Command::Attach {
                interactive: true,
                tty: true,
                ..
            }
        ));
        assert_eq!(connect_timeout(&cli), Some(5));
        let cli = parse(&["attach", "--timeout", "4", "c1"]);
        assert!(matches!(cli.command, Command::Attach { tty: false, .. }));
        assert_eq!(connect_timeout(&cli), Some(4));
        assert_eq!(connect_timeout(&parse(&["attach", "c1"])), None);

        let cli = parse(&["port-forward", "p1", "8080", ":80", "5000:6000"]);
        let Command::PortForward {
            ref address,
            transport,
            ref pod,
            ref ports,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(address, &[std::net::IpAddr::from([127, 0, 0, 1])]);
        assert_eq!((transport, pod.as_str()), (TransportArg::Spdy, "p1"));
        assert_eq!(
            ports,
            &[
                PortSpec {
                    local: 8080,
                    remote: 8080
                },
                PortSpec {
                    local: 0,
                    remote: 80
                },
                PortSpec {
                    local: 5000,
                    remote: 6000
                },
            ]
        );
        let cli = parse(&["port-forward", "--address", "localhost,::1", "p1", "80"]);
        assert!(
            matches!(cli.command, Command::PortForward { ref address, .. } if address.len() == 2)
        );
        assert!(Cli::try_parse_from(["berth", "port-forward", "p1"]).is_err());
        assert!(Cli::try_parse_from(["berth", "port-forward", "p1", "80:0"]).is_err());
    }

    #[test]
    fn ps_flags_parse() {
        let cli = parse(&[
            "ps", "-a", "-q", "--pod", "p1", "--state", "Exited", "--label", "a=b", "--label",
            "c=d",
        ]);
        let Command::Ps {
            all,
            quiet,
            pod,
            state,
            label,
        } = cli.command
        else {
            panic!()
        };
        assert!(all && quiet);
        assert_eq!(pod.as_deref(), Some("p1"));
        assert_eq!(state, Some(commands::container::State::Exited));
        assert_eq!(label, [("a".into(), "b".into()), ("c".into(), "d".into())]);
        assert!(Cli::try_parse_from(["berth", "ps", "--state", "sleeping"]).is_err());
        assert!(Cli::try_parse_from(["berth", "ps", "--label", "novalue"]).is_err());
    }

    #[test]
    fn logs_and_run_flags_parse() {
        let cli = parse(&[
            "logs",
            "-f",
            "--tail",
            "5",
            "--since",
            "10s",
            "--timestamps",
            "c1",
        ]);
        assert!(matches!(
            cli.command,
            Command::Logs { follow: true, tail: Some(5), timestamps: true, ref since, .. } if since.as_deref() == Some("10s")
        ));
        let cli = parse(&["run", "--runtime", "kata", "c.yaml", "p.yaml"]);
        assert!(matches!(cli.command, Command::Run { ref runtime, .. } if runtime == "kata"));
        let cli = parse(&["rm", "-f", "c1"]);
        assert!(matches!(cli.command, Command::Rm { force: true, .. }));
        let cli = parse(&["create", "p1", "c.yaml", "p.yaml"]);
        assert!(matches!(cli.command, Command::Create { ref pod, .. } if pod == "p1"));
    }
}
