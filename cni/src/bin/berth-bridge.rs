//! berth-bridge: berth's CNI plugin (bridge + IPAM + masquerade + port
//! mappings). All logic lives in `berth_cni::bridge`; see its docs for the
//! configuration.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Diagnostics go to stderr (the runtime logs it); the CNI result or error
    // JSON goes to stdout. BERTH_BRIDGE_LOG takes an env-filter (default warn).
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_BRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match berth_cni::bridge::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
