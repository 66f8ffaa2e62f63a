//! The module graph of a crate, read from its sources: which top-level
//! module names which other through `crate::<module>`, and the cycles in
//! it (a project policy: dependencies inside a crate point one way too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Edges `module -> modules it names` of the crate whose `src` is given.
/// A module is a file `src/<m>.rs` or a directory `src/<m>/`; `lib.rs` and
/// `main.rs` are the root and not counted.
pub fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    collect(src, src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|(m, _)| m.clone()).collect();
    for (module, text) in files {
        let Some(module) = module else { continue };
        let edges = graph.entry(module.clone()).or_default();
        for other in named_modules(&text) {
            if other != module && modules.contains(&other) {
                edges.insert(other);
            }
        }
    }
    graph
}

/// Every cycle of [`module_graph`], each as the modules around it.
pub fn module_cycles(src: &Path) -> Vec<Vec<String>> {
    let graph = module_graph(src);
    let mut cycles = Vec::new();
    let mut seen = BTreeSet::new();
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        walk(&graph, start, &mut path, &mut cycles, &mut seen);
    }
    cycles
}

fn walk(
    graph: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    path: &mut Vec<String>,
    cycles: &mut Vec<Vec<String>>,
    seen: &mut BTreeSet<Vec<String>>,
) {
    for next in graph.get(at).into_iter().flatten() {
        if next == &path[0] {
            // One entry per cycle, whichever module it was found from.
            let mut key = path.clone();
            key.sort();
            if seen.insert(key) {
                cycles.push(path.clone());
            }
        } else if !path.contains(next) && next > &path[0] {
            path.push(next.clone());
            walk(graph, next, path, cycles, seen);
            path.pop();
        }
    }
}

/// `(top-level module, text)` of every .rs file under `dir`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(Option<String>, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let first = rel
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            let module = first.trim_end_matches(".rs").to_owned();
            let module = (!matches!(module.as_str(), "lib" | "main" | "bin")).then_some(module);
            out.push((module, std::fs::read_to_string(&p).unwrap_or_default()));
        }
    }
}

/// The modules a source text names as `crate::m` or in `use crate::{m, ..}`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                for item in group.split(['}', ',']) {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_once() {
        let d = std::env::temp_dir().join(format!("berth-modules-{}", std::process::id()));
        std::fs::create_dir_all(d.join("c")).unwrap();
        std::fs::write(d.join("lib.rs"), "mod a; mod b; mod c;").unwrap();
        std::fs::write(d.join("a.rs"), "use crate::b::x;").unwrap();
        std::fs::write(d.join("b.rs"), "use crate::{c, log};").unwrap();
        std::fs::write(d.join("c/mod.rs"), "fn f() { crate::a::g() } // crate::b").unwrap();
        std::fs::write(d.join("d.rs"), "use crate::a;").unwrap();
        let cycles = module_cycles(&d);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(cycles, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    }
}
