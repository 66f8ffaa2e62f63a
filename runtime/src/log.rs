//! Diagnostics in runc's format.
//!
//! With `--log FILE` every line goes to that file only (appended, one
//! `write(2)` per line); without it, to stderr. During `create` stderr is the
//! container's stderr pipe, so callers that want the container log clean must
//! pass `--log`. libcontainer reports through `tracing`: a minimal subscriber
//! forwards its events (warn and error; everything with `--debug`) to the same
//! sink, also from libcontainer's forked intermediate and init processes
//! until they exec.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Line format of the diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug)]
struct Sink {
    file: Option<Mutex<File>>,
    format: Format,
    debug: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sets up the sink (once, first thing in `main`). A log file that cannot be
/// opened is reported on stderr and the sink falls back to stderr.
pub fn init(path: Option<&Path>, format: Format, debug: bool) {
    let mut open_error = None;
    let file = path.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(nix::fcntl::OFlag::O_CLOEXEC.bits())
            .open(p)
            .map_err(|e| open_error = Some(format!("open log file {}: {e}", p.display())))
            .ok()
    });
    let _ = SINK.set(Sink {
        file: file.map(Mutex::new),
        format,
        debug,
    });
    let max = if debug { Level::DEBUG } else { Level::WARN };
    let _ = tracing::subscriber::set_global_default(Forward { max });
    if let Some(e) = open_error {
        error(&e);
    }
}

pub fn error(msg: &str) {
    write_line("error", msg);
}

pub fn warn(msg: &str) {
    write_line("warning", msg);
}

pub fn debug(msg: &str) {
    if SINK.get().is_some_and(|s| s.debug) {
        write_line("debug", msg);
    }
}

fn write_line(level: &str, msg: &str) {
    let Some(sink) = SINK.get() else {
        eprintln!("{level}: {msg}");
        return;
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut line = match sink.format {
        Format::Json => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        Format::Text => format!("time={} level={level} msg={}", quote(&time), quote(msg)),
    };
    line.push('\n');
    match &sink.file {
        Some(file) => {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// logrus-style quoting for text lines.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Forwards libcontainer's `tracing` events to the sink. Spans are ignored.
struct Forward {
    max: Level,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // libcgroups warns about every v1 controller the host lacks, on every
        // call: that is debug detail.
        if *event.metadata().level() == Level::WARN
            && fields.message.contains("not supported on this system")
        {
            if self.max >= Level::DEBUG {
                write_line("debug", &format!("libcontainer: {}", fields.message));
            }
            return;
        }
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            _ => "debug",
        };
        let msg = format!(
            "libcontainer: {}{} ({})",
            fields.message,
            fields.rest,
            event.metadata().target()
        );
        write_line(level, &msg);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_like_logrus() {
        assert_eq!(quote("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
    }
}
