//! berth-shim, the per-pod monitor, and its control protocol (`proto`),
//! shared by the shim binary and berthd's client.

pub mod proto;
