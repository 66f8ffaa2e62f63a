//! berth-bridge (being written).
