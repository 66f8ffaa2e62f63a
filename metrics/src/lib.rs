//! Metrics: what pods and containers cost the node, read from their
//! cgroups and network namespaces, for the CRI stats calls and the
//! Prometheus endpoint; and berthd's own health.
//!
//! - `cgroup`: one read of a cgroup's CPU, memory, page faults, OOM kills
//!   and processes, v1 and v2;
//! - `netdev`: a pod's interfaces' counters, read in its network namespace;
//! - `kfile`: small kernel files read relative to an open directory;
//! - `disk`: a writable layer's bytes and inodes;
//! - `procs`: processes (shims) and the node, from /proc;
//! - `collector`: samples of all of them, on a tick and on demand, each
//!   with the time it was read;
//! - `cadvisor`: samples as the cAdvisor metrics of the CRI metrics calls;
//! - `health`: berthd's own families (CRI calls, pulls, CNI, pod start);
//! - `http`: the endpoint serving them (`/metrics`, `/healthz`, `/readyz`).

pub mod cadvisor;
pub mod cgroup;
pub mod collector;
pub mod disk;
pub mod health;
pub mod http;
pub mod kfile;
pub mod netdev;
pub mod procs;
