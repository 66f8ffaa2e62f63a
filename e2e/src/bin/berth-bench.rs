//! berth-bench: CRI benchmarks, against berth, containerd, or any endpoint,
//! and side by side (`compare`). See BENCHMARKS.md for the method.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth_e2e::bench::report::{self, Machine};
use berth_e2e::bench::scenario::Fixtures;
use berth_e2e::bench::{RunOpts, Scenario, ScenarioResult, Target};
use berth_e2e::containerd::Containerd;
use berth_e2e::daemon::Berthd;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "berth-bench",
    about = "CRI benchmarks: berth against containerd, same client, same machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Scenarios to run (comma separated) [default: all]
    #[arg(long, short, value_delimiter = ',', value_enum)]
    scenario: Vec<Scenario>,
    /// Iterations per scenario (per round, in compare).
    #[arg(long, short = 'n', default_value_t = 100)]
    iterations: usize,
    /// Concurrent workers.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Pods in the list and density scenarios, instead of their own count
    /// (100, 250, 20, ...): the smoke test runs them with a few.
    #[arg(long, value_name = "N")]
    pods: Option<usize>,
    /// Seconds the stats scenarios poll like kubelet while measuring the
    /// daemon's CPU.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    poll_seconds: u64,
    /// berth's RuntimeClass handler for the bench's pods: "" is berthd's
    /// default (berth-runtime), or "runc". containerd always runs runc.
    #[arg(long, value_name = "NAME", default_value = "")]
    berth_handler: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    Berth,
    Containerd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the scenarios.
    List,
    /// Run scenarios against one runtime.
    Run {
        /// Start a private runtime of this kind (ignored with --endpoint).
        #[arg(long, value_enum, default_value = "berth")]
        target: Which,
        /// Use an already running CRI endpoint instead (memory not measured).
        #[arg(long, value_name = "unix:///PATH")]
        endpoint: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Run scenarios on a private berthd and a private containerd, alternately
    /// (A B A B), and print berth/containerd ratios.
    Compare {
        /// Rounds; each round runs every scenario on berth, then on containerd.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Print the ratio table as Markdown (for BENCHMARKS.md).
        #[arg(long)]
        markdown: bool,
        #[command(flatten)]
        common: Common,
    },
}

async fn start(which: Which, berth_handler: &str) -> Target {
    match which {
        Which::Berth => {
            // The same network config shape containerd gets (bridge +
            // portmap from Debian's plugins), so Status does the same work.
            let mut d = Berthd::builder("bench")
                .config("cni", "bin_dirs", "[\"/usr/lib/cni\"]")
                .prepare();
            let subnet = berth_e2e::containerd::free_subnet(std::process::id() + 75);
            let bridge = format!("bb{}", std::process::id() % 10_000_000);
            let conflist = berth_e2e::containerd::bridge_conflist(
                d.dir.to_str().unwrap(),
                &bridge,
                &subnet,
                "berth-bench",
            );
            std::fs::write(d.cni_conf_dir.join("10-bridge.conflist"), conflist).unwrap();
            d.spawn_and_wait_ready();
            Target::Berth(berth_e2e::bench::target::BerthTarget {
                daemon: d,
                bridge,
                handler: berth_handler.to_owned(),
            })
        }
        Which::Containerd => Target::Containerd(Containerd::start().await),
    }
}

async fn run_all(
    target: &Target,
    scenarios: &[Scenario],
    opts: RunOpts,
    fixtures: Option<&Fixtures>,
) -> Result<Vec<ScenarioResult>, String> {
    let client = berth_cli::client::connect(target.socket(), Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in scenarios {
        eprintln!("berth-bench: {} on {} ...", s.name(), target.name());
        let r = s
            .run(target, &client, opts, fixtures)
            .await
            .map_err(|e| format!("{} on {}: {e}", s.name(), target.name()))?;
        out.push(r);
    }
    Ok(out)
}

fn merge(into: &mut Vec<ScenarioResult>, more: Vec<ScenarioResult>) {
    for r in more {
        match into.iter_mut().find(|x| x.scenario == r.scenario) {
            Some(x) => x.merge(r),
            None => into.push(r),
        }
    }
}

fn write_json<T: Serialize>(path: &Option<PathBuf>, value: &T) -> Result<(), String> {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// The registry fixture, if a selected scenario pulls images.
async fn fixtures_for(list: &[Scenario]) -> Option<Fixtures> {
    if !list.iter().any(|s| s.needs_registry()) {
        return None;
    }
    Some(Fixtures::start(list.contains(&Scenario::PullLargeCold)).await)
}

fn scenarios(c: &Common) -> Vec<Scenario> {
    if c.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        c.scenario.clone()
    }
}

async fn real_main(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::List => {
            for s in Scenario::ALL {
                let help = s
                    .to_possible_value()
                    .and_then(|v| v.get_help().map(|h| h.to_string()))
                    .unwrap_or_default();
                println!("{:<20} {help}", s.name());
            }
            Ok(())
        }
        Cmd::Run {
            target,
            endpoint,
            common,
        } => {
            let opts = RunOpts {
                iterations: common.iterations,
                concurrency: common.concurrency,
                pods: common.pods,
                poll: Duration::from_secs(common.poll_seconds),
            };
            let t = match endpoint {
                Some(e) => Target::Endpoint(
                    berth_cli::endpoint::socket_path(&e).map_err(|e| e.to_string())?,
                ),
                None => start(target, &common.berth_handler).await,
            };
            let list = scenarios(&common);
            let fixtures = fixtures_for(&list).await;
            let results = run_all(&t, &list, opts, fixtures.as_ref()).await?;
            print!("{}", report::table(&results));
            #[derive(Serialize)]
            struct Out<'a> {
                machine: Machine,
                target: &'a str,
                results: &'a [ScenarioResult],
            }
            write_json(
                &common.json,
                &Out {
                    machine: Machine::probe(),
                    target: t.name(),
                    results: &results,
                },
            )
        }
        Cmd::Compare {
            rounds,
            markdown,
            common,
        } => {
            let opts = RunOpts {
                iterations: common.iterations,
                concurrency: common.concurrency,
                pods: common.pods,
                poll: Duration::from_secs(common.poll_seconds),
            };
            let list = scenarios(&common);
            let fixtures = fixtures_for(&list).await;
            let berth = start(Which::Berth, &common.berth_handler).await;
            let containerd = start(Which::Containerd, "").await;
            let (mut b, mut c) = (Vec::new(), Vec::new());
            for round in 0..rounds.max(1) {
                eprintln!("berth-bench: round {}/{rounds}", round + 1);
                merge(
                    &mut b,
                    run_all(&berth, &list, opts, fixtures.as_ref()).await?,
                );
                merge(
                    &mut c,
                    run_all(&containerd, &list, opts, fixtures.as_ref()).await?,
                );
            }
            let rows = report::compare(&b, &c);
            let machine = Machine::probe();
            let handler = match common.berth_handler.as_str() {
                "" => "berth's default handler",
                h => h,
            };
            println!(
                "# {} · {} CPUs · {} GiB · kernel {} · {} · {}\n# {} rounds × {} iterations, concurrency {}; berth pods on {handler}; ratio = berth / containerd (below 1: berth faster or smaller)",
                machine.date,
                machine.cpus,
                machine.memory_gib,
                machine.kernel,
                machine.containerd,
                machine.runc,
                rounds,
                opts.iterations,
                opts.concurrency
            );
            print!("{}", report::compare_table(&rows, markdown));
            #[derive(Serialize)]
            struct Out<'a> {
                machine: Machine,
                rounds: usize,
                iterations: usize,
                concurrency: usize,
                berth_handler: &'a str,
                comparison: &'a [report::Comparison],
                berth: &'a [ScenarioResult],
                containerd: &'a [ScenarioResult],
            }
            write_json(
                &common.json,
                &Out {
                    machine,
                    rounds,
                    iterations: opts.iterations,
                    concurrency: opts.concurrency,
                    berth_handler: &common.berth_handler,
                    comparison: &rows,
                    berth: &b,
                    containerd: &c,
                },
            )
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() && !matches!(cli.command, Cmd::List) {
        eprintln!("berth-bench: run as root (it starts runtimes)");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(real_main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
