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

#[cfg(test)]
mod tests {
    use super::*;

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
