//! berth-shim, the per-pod monitor, and its control protocol (`proto`),
//! shared by the shim binary and berthd's client; and the signal state a
//! shim or berth-runtime starts processes with (`child`).

pub mod child;
pub mod proto;
