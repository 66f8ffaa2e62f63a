//! Timestamps as the CRI carries them.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_REALTIME in nanoseconds since the Unix epoch (0 before it).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020() {
        assert!(super::now_ns() > 1_577_836_800_000_000_000);
    }
}
