//! Resources: CRI `LinuxContainerResources` → OCI `LinuxResources`, and the
//! process oom_score_adj.
//!
//! As containerd 1.7 (`WithResources`): zero means "not set"; cpu period,
//! quota and shares, cpuset cpus/mems; the memory limit, with swap equal to
//! it (no swapping) unless `memory_swap_limit_in_bytes` says otherwise, and
//! swap only when the host's memory controller accounts swap; hugepage
//! limits; `unified` (cgroup v2 files) passed through. Beyond containerd: a
//! swap limit below the memory limit is invalid, and a swap limit without a
//! memory limit is dropped on cgroup v2 (runc and youki reject it there).

use k8s_cri::v1::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::error::SpecError;
use crate::host::Host;

/// The OCI resources of `r`, for CreateContainer and UpdateContainerResources,
/// on the running host. The device cgroup is not part of it.
pub fn linux_resources(r: &LinuxContainerResources) -> Result<LinuxResources, SpecError> {
    linux_resources_on(r, Host::cached())
}

/// [`linux_resources`] for a given host.
pub fn linux_resources_on(
    r: &LinuxContainerResources,
    host: &Host,
) -> Result<LinuxResources, SpecError> {
    let invalid =
        |what: &str, v: i64| SpecError::InvalidResources(format!("{what} {v} is negative"));
    if r.cpu_period < 0 {
        return Err(invalid("cpu_period", r.cpu_period));
    }
    if r.cpu_shares < 0 {
        return Err(invalid("cpu_shares", r.cpu_shares));
    }
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid("memory_limit_in_bytes", r.memory_limit_in_bytes));
    }
    // -1 is "unlimited" swap in the cgroup interfaces; other negatives are not.
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(
            "memory_swap_limit_in_bytes",
            r.memory_swap_limit_in_bytes,
        ));
    }

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if r.cpu_period != 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        cpu_set = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        cpu_set = true;
    }
    if r.cpu_shares != 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        cpu_set = true;
    }

    let mut mem = LinuxMemory::default();
    let mut mem_set = false;
    if r.memory_limit_in_bytes != 0 {
        mem.set_limit(Some(r.memory_limit_in_bytes));
        mem_set = true;
        if r.memory_swap_limit_in_bytes == 0 && host.swap_available {
            mem.set_swap(Some(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes != 0 && host.swap_available {
        let (swap, limit) = (r.memory_swap_limit_in_bytes, r.memory_limit_in_bytes);
        if limit != 0 && swap != -1 && swap < limit {
            return Err(SpecError::InvalidResources(format!(
                "memory_swap_limit_in_bytes {swap} is below memory_limit_in_bytes {limit} \
                 (it counts memory plus swap)"
            )));
        }
        // cgroup v2 runtimes express swap relative to the memory limit: with
        // no limit there is nothing to express it against (kubelet uses
        // unified "memory.swap.max" on v2 anyway).
        if limit != 0 || !host.cgroup2 {
            mem.set_swap(Some(swap));
            mem_set = true;
        }
    }

    let mut out = LinuxResources::default();
    out.set_devices(None);
    if cpu_set {
        out.set_cpu(Some(cpu));
    }
    if mem_set {
        out.set_memory(Some(mem));
    }
    if !r.hugepage_limits.is_empty() {
        let mut limits = Vec::new();
        for h in &r.hugepage_limits {
            let limit = i64::try_from(h.limit).map_err(|_| {
                SpecError::InvalidResources(format!("hugepage limit {} is too large", h.limit))
            })?;
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(limit);
            limits.push(l);
        }
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(r.unified.clone()));
    }
    Ok(out)
}

/// The oom_score_adj of the process: the CRI value clamped to what berthd
/// may set (never below its own score; the host lacks CAP_SYS_RESOURCE).
pub(crate) fn oom_score_adj(r: &LinuxContainerResources, min: i32) -> Result<i32, SpecError> {
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(SpecError::InvalidResources(format!(
            "oom_score_adj {} is outside [-1000, 1000]",
            r.oom_score_adj
        )));
    }
    Ok((r.oom_score_adj as i32).max(min))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::host;
    use k8s_cri::v1::HugepageLimit;

    #[test]
    fn zero_means_unset() {
        let out = linux_resources_on(&LinuxContainerResources::default(), &host()).unwrap();
        assert!(out.cpu().is_none());
        assert!(out.memory().is_none());
        assert!(out.hugepage_limits().is_none());
        assert!(out.unified().is_none());
        assert!(out.devices().is_none());
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v, serde_json::json!({}));
    }

    #[test]
    fn full_mapping() {
        let r = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            oom_score_adj: 0,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("memory.high".to_string(), "200000000".to_string())].into(),
            memory_swap_limit_in_bytes: 0,
        };
        let out = linux_resources_on(&r, &host()).unwrap();
        let cpu = out.cpu().as_ref().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = out.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(256 << 20));
        // No swap beyond the limit.
        assert_eq!(mem.swap(), Some(256 << 20));
        let hp = &out.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((hp.page_size().as_str(), hp.limit()), ("2MB", 4 << 20));
        assert_eq!(out.unified().as_ref().unwrap()["memory.high"], "200000000");
    }

    #[test]
    fn swap_semantics() {
        let mut r = LinuxContainerResources {
            memory_limit_in_bytes: 100,
            memory_swap_limit_in_bytes: 300,
            ..Default::default()
        };
        let out = linux_resources_on(&r, &host()).unwrap();
        assert_eq!(out.memory().unwrap().swap(), Some(300));
        // Without swap accounting: no swap value at all.
        let mut h = host();
        h.swap_available = false;
        let out = linux_resources_on(&r, &h).unwrap();
        assert_eq!(out.memory().unwrap().limit(), Some(100));
        assert_eq!(out.memory().unwrap().swap(), None);
        // Swap below the limit: invalid (swap counts memory + swap).
        r.memory_swap_limit_in_bytes = 50;
        assert!(
            linux_resources_on(&r, &host())
                .unwrap_err()
                .is_invalid_argument()
        );
        r.memory_swap_limit_in_bytes = -1;
        assert_eq!(
            linux_resources_on(&r, &host())
                .unwrap()
                .memory()
                .unwrap()
                .swap(),
            Some(-1)
        );
        // Swap alone: not expressible for cgroup v2 runtimes, kept on v1.
        r.memory_limit_in_bytes = 0;
        r.memory_swap_limit_in_bytes = 300;
        let out = linux_resources_on(&r, &host()).unwrap();
        assert!(out.memory().is_none());
        let mut v1 = host();
        v1.cgroup2 = false;
        let out = linux_resources_on(&r, &v1).unwrap();
        assert_eq!(out.memory().unwrap().limit(), None);
        assert_eq!(out.memory().unwrap().swap(), Some(300));
    }

    #[test]
    fn negative_values_are_invalid() {
        for r in [
            LinuxContainerResources {
                cpu_shares: -1,
                ..Default::default()
            },
            LinuxContainerResources {
                memory_limit_in_bytes: -5,
                ..Default::default()
            },
            LinuxContainerResources {
                cpu_period: -1,
                ..Default::default()
            },
        ] {
            let e = linux_resources_on(&r, &host()).unwrap_err();
            assert!(e.is_invalid_argument(), "{e}");
        }
    }

    #[test]
    fn oom_score_adj_is_clamped() {
        let r = |v| LinuxContainerResources {
            oom_score_adj: v,
            ..Default::default()
        };
        assert_eq!(oom_score_adj(&r(-997), -500).unwrap(), -500);
        assert_eq!(oom_score_adj(&r(1000), -500).unwrap(), 1000);
        assert_eq!(oom_score_adj(&r(-100), -999).unwrap(), -100);
        assert_eq!(oom_score_adj(&r(0), 0).unwrap(), 0);
        assert!(
            oom_score_adj(&r(1001), 0)
                .unwrap_err()
                .is_invalid_argument()
        );
        assert!(oom_score_adj(&r(-1001), -1000).is_err());
    }
}
