//! Events worth counting for an SRE, kept as plain atomics so the crate
//! needs no metrics library: berthd's exporter reads them at each scrape.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Container starts and exits since berthd started.
#[derive(Debug, Default)]
pub struct Counters {
    starts: AtomicU64,
    start_failures: AtomicU64,
    /// Exits by reason (`Completed`, `Error`, `OOMKilled`, `Unknown`).
    exits: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub(crate) fn started(&self, ok: bool) {
        let c = if ok {
            &self.starts
        } else {
            &self.start_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn exited(&self, reason: &str) {
        let mut e = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        *e.entry(reason.to_owned()).or_default() += 1;
    }

    /// Containers started, and starts that failed.
    pub fn starts(&self) -> (u64, u64) {
        (
            self.starts.load(Ordering::Relaxed),
            self.start_failures.load(Ordering::Relaxed),
        )
    }

    /// Exits by reason.
    pub fn exits(&self) -> Vec<(String, u64)> {
        let e = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome() {
        let c = Counters::default();
        c.started(true);
        c.started(true);
        c.started(false);
        c.exited("OOMKilled");
        c.exited("Completed");
        c.exited("OOMKilled");
        assert_eq!(c.starts(), (2, 1));
        assert_eq!(
            c.exits(),
            vec![("Completed".to_owned(), 1), ("OOMKilled".to_owned(), 2)]
        );
    }
}
