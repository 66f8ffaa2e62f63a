//! tracing setup. The filter comes from `--log-level`, else `RUST_LOG`,
//! else the config's `daemon.log_level`; lines go to stderr (the journal,
//! under systemd) as text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, flag: Option<&str>, config_level: &str) -> Result<(), String> {
    let directive = flag
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| config_level.to_owned());
    let filter = EnvFilter::try_new(&directive)
        .map_err(|e| format!("log level {directive:?} is not a log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
