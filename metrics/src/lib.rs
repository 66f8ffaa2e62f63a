//! Metrics: what pods and containers cost the node, read from their
//! cgroups and network namespaces, for the CRI stats calls and (to come)
//! the Prometheus endpoint.
//!
//! - `cgroup`: one read of a cgroup's CPU, memory, page faults, OOM kills
//!   and processes, v1 and v2.

pub mod cgroup;
