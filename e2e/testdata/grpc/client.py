"""A CRI client in Python's grpcio (grpc-core), for berth's e2e tests.

grpc-core sends a unix socket's path, percent-encoded, as the HTTP/2
:authority; berth must answer such clients as it answers Go's. Usage:
    client.py STUBS_DIR SOCKET IMAGE
Prints one JSON object with what each call returned.
"""
import json
import sys

import grpc

sys.path.insert(0, sys.argv[1])
import berth_pb2  # noqa: E402
import berth_pb2_grpc  # noqa: E402
import cri_api_pb2 as cri  # noqa: E402
import cri_api_pb2_grpc as cri_grpc  # noqa: E402

socket, image = sys.argv[2], sys.argv[3]
out = {}
# The channel's default options: what a Python tool would do.
with grpc.insecure_channel("unix://" + socket) as ch:
    rt = cri_grpc.RuntimeServiceStub(ch)
    v = rt.Version(cri.VersionRequest(), timeout=10)
    out["version"] = v.runtime_name
    cfg = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="py", uid="uid-py", namespace="e2e"),
        hostname="py",
    )
    pod = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
    out["pod"] = pod
    listed = rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=10).items
    out["listed"] = [p.id for p in listed]
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    # A server-streaming call: berth's pull with progress events.
    images = berth_pb2_grpc.ImagesStub(ch)
    events = list(images.Pull(berth_pb2.PullRequest(image=image), timeout=60))
    out["pull_events"] = len(events)
    try:
        rt.ContainerStatus(cri.ContainerStatusRequest(container_id="nosuch"), timeout=10)
    except grpc.RpcError as e:
        out["unknown_container"] = e.code().name
print(json.dumps(out))
