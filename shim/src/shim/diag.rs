//! The shim's own diagnostics: terse lines appended to `DIR/shim.log`.
//! Never container output, never environment values.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

#[derive(Debug)]
struct Sink {
    file: File,
    max: Level,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sets where diagnostics go; before that they are dropped.
pub fn init(file: File, max: Level) {
    let _ = SINK.set(Sink { file, max });
}

pub fn enabled(level: Level) -> bool {
    SINK.get().is_some_and(|s| level <= s.max)
}

pub fn write(level: Level, args: fmt::Arguments<'_>) {
    let Some(sink) = SINK.get() else { return };
    if level > sink.max {
        return;
    }
    let ts = super::crilog::now();
    let line = format!(
        "{} {} {args}\n",
        std::str::from_utf8(&ts).unwrap_or_default(),
        level.name()
    );
    let _ = (&sink.file).write_all(line.as_bytes());
}

/// `diag!(Level::Info, "format", args...)`.
macro_rules! diag {
    ($level:expr, $($arg:tt)*) => {
        if $crate::shim::diag::enabled($level) {
            $crate::shim::diag::write($level, format_args!($($arg)*))
        }
    };
}
