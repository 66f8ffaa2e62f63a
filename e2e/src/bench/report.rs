//! Tables and JSON for benchmark results.

use std::process::Command;

use serde::Serialize;

use super::scenario::ScenarioResult;
use super::stats::Summary;

/// Where and when the numbers were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date: String,
    pub cpus: usize,
    pub kernel: String,
    pub memory_gib: f64,
    pub berth: String,
    pub containerd: String,
    pub runc: String,
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not installed".into())
}

impl Machine {
    pub fn probe() -> Machine {
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0.0);
        Machine {
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: first_line("uname", &["-r"]),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            berth: env!("CARGO_PKG_VERSION").into(),
            containerd: first_line("containerd", &["--version"]),
            runc: first_line("runc", &["--version"]),
        }
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One target's results as a text table.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut rows = vec![vec![
        "SCENARIO".to_string(),
        "STEP".into(),
        "UNIT".into(),
        "N".into(),
        "MEDIAN".into(),
        "P90".into(),
        "P99".into(),
        "MIN".into(),
        "MAX".into(),
    ]];
    for r in results {
        for s in &r.steps {
            let Some(sum) = s.summary() else { continue };
            rows.push(vec![
                r.scenario.to_string(),
                s.step.clone(),
                s.unit.into(),
                sum.n.to_string(),
                fmt(sum.median),
                fmt(sum.p90),
                fmt(sum.p99),
                fmt(sum.min),
                fmt(sum.max),
            ]);
        }
    }
    align(&rows, "  ")
}

fn align(rows: &[Vec<String>], sep: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out += line.join(sep).trim_end();
        out.push('\n');
    }
    out
}

/// One step measured on both runtimes.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub step: String,
    pub unit: String,
    pub berth: Summary,
    pub containerd: Summary,
    /// berth / containerd, on medians and on p90s: below 1 means berth is
    /// faster (or smaller).
    pub ratio_median: f64,
    pub ratio_p90: f64,
}

pub fn compare(berth: &[ScenarioResult], containerd: &[ScenarioResult]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for b in berth {
        let Some(c) = containerd.iter().find(|c| c.scenario == b.scenario) else {
            continue;
        };
        for bs in &b.steps {
            let Some(cs) = c.steps.iter().find(|s| s.step == bs.step) else {
                continue;
            };
            let (Some(bsum), Some(csum)) = (bs.summary(), cs.summary()) else {
                continue;
            };
            out.push(Comparison {
                scenario: b.scenario.into(),
                step: bs.step.clone(),
                unit: bs.unit.into(),
                berth: bsum,
                containerd: csum,
                ratio_median: bsum.median / csum.median,
                ratio_p90: bsum.p90 / csum.p90,
            });
        }
    }
    out
}

/// The comparison as a text table, or as a Markdown table for BENCHMARKS.md.
pub fn compare_table(rows: &[Comparison], markdown: bool) -> String {
    let mut cells = vec![vec![
        "scenario".to_string(),
        "step".into(),
        "unit".into(),
        "berth median".into(),
        "containerd median".into(),
        "ratio median".into(),
        "berth p90".into(),
        "containerd p90".into(),
        "ratio p90".into(),
    ]];
    for r in rows {
        cells.push(vec![
            r.scenario.clone(),
            r.step.clone(),
            r.unit.clone(),
            fmt(r.berth.median),
            fmt(r.containerd.median),
            format!("{:.2}", r.ratio_median),
            fmt(r.berth.p90),
            fmt(r.containerd.p90),
            format!("{:.2}", r.ratio_p90),
        ]);
    }
    if markdown {
        let mut out = String::new();
        for (i, r) in cells.iter().enumerate() {
            out += &format!("| {} |\n", r.join(" | "));
            if i == 0 {
                out += &format!("|{}\n", "---|".repeat(r.len()));
            }
        }
        out
    } else {
        align(&cells, "  ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::StepResult;

    fn result(scenario: &'static str, step: &str, samples: &[f64]) -> ScenarioResult {
        ScenarioResult {
            scenario,
            iterations: samples.len(),
            concurrency: 1,
            steps: vec![StepResult {
                step: step.into(),
                unit: "ms",
                samples: samples.to_vec(),
            }],
        }
    }

    #[test]
    fn ratio_is_berth_over_containerd() {
        let b = [result("version", "Version", &[1.0, 2.0, 3.0])];
        let c = [result("version", "Version", &[4.0, 8.0, 12.0])];
        let rows = compare(&b, &c);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ratio_median, 0.25);
        let md = compare_table(&rows, true);
        assert!(
            md.contains("| version | Version | ms | 2.00 | 8.00 | 0.25 |"),
            "{md}"
        );
    }

    #[test]
    fn steps_missing_on_one_side_are_left_out() {
        let b = [result("version", "Version", &[1.0])];
        let c = [result("status", "Status", &[1.0])];
        assert!(compare(&b, &c).is_empty());
    }
}
