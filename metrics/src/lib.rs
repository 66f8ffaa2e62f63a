//! Metrics: metric families, cgroup and netns collectors, the `/metrics`
//! exporter and CRI metric descriptors. Empty until the metrics issue lands.
