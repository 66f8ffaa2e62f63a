//! Containers: CRI→OCI spec, overlay rootfs, OCI runtime invocation, the
//! per-pod `berth-shim`, CRI logs and exec. Empty until the containers
//! issue lands; berthd answers the container RPCs UNIMPLEMENTED meanwhile.
