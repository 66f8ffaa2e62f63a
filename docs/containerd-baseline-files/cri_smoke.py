#!/usr/bin/env python3
"""End-to-end CRI (runtime.v1) smoke test against any CRI endpoint
(containerd 1.6 or berth).  Stands in for `crictl`, which Debian 12 does not
package.

Needs grpcio + stubs generated from the CRI api.proto (the k8s-cri crate
ships it as proto/v1.proto):
    python3 -m venv /tmp/cri-venv && /tmp/cri-venv/bin/pip install grpcio grpcio-tools
    cp ~/.cargo/registry/src/*/k8s-cri-*/proto/v1.proto api.proto
    /tmp/cri-venv/bin/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. api.proto
Run (from the stub directory, or with CRI_STUBS=<stub dir>):
    /tmp/cri-venv/bin/python cri_smoke.py --sock /tmp/ctrd-XXXX/containerd.sock \
        --image 127.0.0.1:PORT/busybox:latest --logdir /tmp/ctrd-XXXX/podlogs
"""
import argparse
import os
import sys
import time
import uuid

import grpc

# generated stubs: directory from $CRI_STUBS, else the current directory
sys.path.insert(0, os.environ.get("CRI_STUBS", os.getcwd()))
import api_pb2 as pb  # noqa: E402
import api_pb2_grpc as rpc  # noqa: E402


def t(label, fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    print("%-22s %8.1f ms" % (label, (time.monotonic() - t0) * 1000), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sock", required=True)
    ap.add_argument("--image", default="", help="e.g. 127.0.0.1:PORT/busybox:latest")
    ap.add_argument("--logdir", default="/tmp/cri-smoke-logs")
    ap.add_argument("--cgroup-parent", default="",
                    help="cgroupfs parent for the pod, e.g. /berth-bench (empty = runtime default)")
    ap.add_argument("--keep", action="store_true", help="leave pod running")
    ap.add_argument("--remove-all", action="store_true",
                    help="only stop+remove every pod sandbox (clean CNI teardown), then exit")
    ap.add_argument("--pull-only", action="store_true", help="only (re)pull --image, then exit")
    a = ap.parse_args()

    ch = grpc.insecure_channel("unix://" + a.sock)
    rt = rpc.RuntimeServiceStub(ch)
    im = rpc.ImageServiceStub(ch)

    if a.remove_all:
        for s in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=s.id))
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=s.id))
            print("removed pod", s.id)
        return

    v = t("Version", rt.Version, pb.VersionRequest())
    print("  runtime:", v.runtime_name, v.runtime_version, "api", v.runtime_api_version)
    st = t("Status", rt.Status, pb.StatusRequest(verbose=False))
    for c in st.status.conditions:
        print("  condition %s=%s %s" % (c.type, c.status, c.message))
        if not c.status:
            sys.exit("runtime not ready")

    img = pb.ImageSpec(image=a.image)
    ist = im.ImageStatus(pb.ImageStatusRequest(image=img))
    if ist.image.id:
        t("RemoveImage(pre)", im.RemoveImage, pb.RemoveImageRequest(image=img))
    p = t("PullImage", im.PullImage, pb.PullImageRequest(image=img))
    print("  image ref:", p.image_ref)
    imgs = im.ListImages(pb.ListImagesRequest())
    print("  images:", [tuple(i.repo_tags) for i in imgs.images])
    if a.pull_only:
        return

    os.makedirs(a.logdir, exist_ok=True)
    uid = uuid.uuid4().hex[:8]
    linux = pb.LinuxPodSandboxConfig(
        cgroup_parent=a.cgroup_parent,
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)))
    pcfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="smoke-" + uid, uid=uid, namespace="default", attempt=0),
        hostname="smoke-" + uid,
        log_directory=a.logdir,
        dns_config=pb.DNSConfig(servers=["127.0.0.1"], searches=[], options=[]),
        port_mappings=[],
        labels={"app": "smoke"},
        linux=linux,
    )
    r = t("RunPodSandbox", rt.RunPodSandbox, pb.RunPodSandboxRequest(config=pcfg, runtime_handler=""))
    pod = r.pod_sandbox_id
    ps = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod))
    print("  pod", pod[:12], "state", pb.PodSandboxState.Name(ps.status.state),
          "ip", ps.status.network.ip)

    ccfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c1", attempt=0),
        image=img,
        command=["/bin/sh", "-c", "echo hello-from-busybox; cat /proc/self/oom_score_adj; exec sleep 3600"],
        log_path="c1.log",
        linux=pb.LinuxContainerConfig(
            # kubelet gives Guaranteed pods -997; with restrict_oom_score_adj=true
            # containerd clamps it to its own value (0) instead of failing in runc.
            resources=pb.LinuxContainerResources(oom_score_adj=-997,
                                                 memory_limit_in_bytes=64 << 20),
        ),
    )
    c = t("CreateContainer", rt.CreateContainer,
          pb.CreateContainerRequest(pod_sandbox_id=pod, config=ccfg, sandbox_config=pcfg))
    cid = c.container_id
    t("StartContainer", rt.StartContainer, pb.StartContainerRequest(container_id=cid))
    cs = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid))
    print("  container", cid[:12], pb.ContainerState.Name(cs.status.state))
    ex = t("ExecSync", rt.ExecSync, pb.ExecSyncRequest(
        container_id=cid, cmd=["/bin/sh", "-c", "ip -4 addr show eth0; ip link show lo; hostname"],
        timeout=10))
    print("  exec rc", ex.exit_code)
    print("  " + ex.stdout.decode().replace("\n", "\n  "))
    time.sleep(0.3)
    with open(os.path.join(a.logdir, "c1.log")) as f:
        print("  c1.log:", f.read().strip().replace("\n", " | "))
    if a.keep:
        print("kept pod", pod, "container", cid)
        return
    t("StopContainer", rt.StopContainer, pb.StopContainerRequest(container_id=cid, timeout=2))
    t("RemoveContainer", rt.RemoveContainer, pb.RemoveContainerRequest(container_id=cid))
    t("StopPodSandbox", rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=pod))
    t("RemovePodSandbox", rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    left = rt.ListPodSandbox(pb.ListPodSandboxRequest())
    print("  pods left:", len(left.items))


if __name__ == "__main__":
    main()
