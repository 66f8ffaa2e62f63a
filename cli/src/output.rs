//! `-o table|json|yaml` for commands whose output is data.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Renders `value` as JSON or YAML; `table` is the caller's human layout.
pub fn render<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> String {
    match format {
        Format::Table => table(),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| e.to_string());
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml_ng::to_string(value).unwrap_or_else(|e| e.to_string()),
    }
}

/// Left-aligned columns separated by three spaces, crictl style.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// How long ago `created_ns` (nanoseconds since the epoch) was, the way
/// crictl says it ("5 seconds ago", "About an hour ago").
pub fn ago(created_ns: i64, now_ns: i64) -> String {
    let secs = (now_ns.saturating_sub(created_ns) / 1_000_000_000).max(0) as u64;
    human_duration(secs) + " ago"
}

/// Docker's and crictl's rounded durations (go-units `HumanDuration`).
pub fn human_duration(secs: u64) -> String {
    let minutes = secs / 60;
    // Hours round to the nearest.
    let hours = (secs + 1800) / 3600;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

pub use berth_util::time::now_ns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_crictls() {
        let s = 1_000_000_000;
        assert_eq!(ago(100 * s, 100 * s), "Less than a second ago");
        assert_eq!(ago(100 * s, 99 * s), "Less than a second ago");
        assert_eq!(ago(0, s), "1 second ago");
        assert_eq!(ago(0, 5 * s), "5 seconds ago");
        assert_eq!(ago(0, 59 * s), "59 seconds ago");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(119), "About a minute");
        assert_eq!(human_duration(120), "2 minutes");
        assert_eq!(human_duration(59 * 60 + 59), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5399), "About an hour");
        assert_eq!(human_duration(5400), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(48 * 3600), "2 days");
        assert_eq!(human_duration(13 * 86400), "13 days");
        assert_eq!(human_duration(14 * 86400), "2 weeks");
        assert_eq!(human_duration(60 * 86400), "2 months");
        assert_eq!(human_duration(2 * 365 * 86400), "2 years");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["TYPE", "STATUS"],
            &[vec!["RuntimeReady".into(), "true".into()]],
        );
        assert_eq!(t, "TYPE           STATUS\nRuntimeReady   true\n");
    }

    #[test]
    fn json_and_yaml_render_data() {
        #[derive(Serialize)]
        struct V {
            a: u32,
        }
        assert_eq!(
            render(Format::Json, &V { a: 1 }, String::new),
            "{\n  \"a\": 1\n}\n"
        );
        assert_eq!(render(Format::Yaml, &V { a: 1 }, String::new), "a: 1\n");
        assert_eq!(render(Format::Table, &V { a: 1 }, || "t".into()), "t");
    }
}
