#!/usr/bin/env python3
"""Writes the hand-made seed corpora under fuzz/corpus/<target>/.

Deterministic (fixed mtimes, sorted), standard library only. Run from
anywhere: `python3 fuzz/make_seeds.py`. Existing seed files of the same
name are overwritten; others (e.g. minimized finds) are left alone.
"""

import hashlib
import io
import json
import os
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# --- unpack_layer: tar layers -------------------------------------------

BASE = "/tmp/berth-fuzz-unpack"  # the unpack target's fixed base dir


def tar(entries, fmt=tarfile.GNU_FORMAT):
    """entries: (name, kind, extra) with kind in file/dir/sym/link/fifo/chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            data = None
            if kind == "file":
                data = extra.get("data", b"")
                ti.size = len(data)
                ti.mode = extra.get("mode", 0o644)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = extra.get("mode", 0o755)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = extra["to"]
                ti.mode = 0o777
            elif kind == "link":
                ti.type = tarfile.LNKTYPE
                ti.linkname = extra["to"]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                ti.mode = 0o644
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = extra.get("dev", (1, 3))
                ti.mode = 0o666
            if "uid" in extra:
                ti.uid, ti.gid = extra["uid"], extra["uid"]
            if "pax" in extra:
                ti.pax_headers = extra["pax"]
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


F, D, S, L = "file", "dir", "sym", "link"

busybox = [
    ("bin", D, {}),
    ("bin/busybox", F, {"data": b"\x7fELF fake busybox\n", "mode": 0o755}),
    ("bin/sh", S, {"to": "busybox"}),
    ("bin/ls", L, {"to": "bin/busybox"}),
    ("dev", D, {}),
    ("dev/null", "chr", {"dev": (1, 3)}),
    ("etc", D, {}),
    ("etc/passwd", F, {"data": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"}),
    ("etc/group", F, {"data": b"root:x:0:\nnogroup:x:65534:\n"}),
    ("tmp", D, {"mode": 0o1777}),
    ("usr", D, {}),
    ("usr/bin", D, {}),
    ("usr/bin/env", S, {"to": "/bin/busybox"}),
    ("var/run", S, {"to": "../run"}),
    ("run/fifo", "fifo", {}),
    ("home/user/.profile", F, {"data": b"export PS1='$ '\n", "uid": 1000}),
]
write("unpack_layer", "busybox-gnu.tar", tar(busybox))
write("unpack_layer", "busybox-pax.tar", tar(busybox, tarfile.PAX_FORMAT))
write("unpack_layer", "busybox-ustar.tar", tar(busybox[:8], tarfile.USTAR_FORMAT))
write(
    "unpack_layer",
    "whiteouts.tar",
    tar([
        ("etc", D, {}),
        ("etc/.wh.passwd", F, {}),
        ("usr/.wh..wh..opq", F, {}),
        ("usr/lib/x", F, {"data": b"x"}),
        (".wh.tmp", F, {}),
    ]),
)
write(
    "unpack_layer",
    "xattrs-longnames.tar",
    tar(
        [
            ("d" * 120 + "/" + "f" * 120, F, {"data": b"long"}),
            ("caps", F, {"data": b"c", "pax": {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                                              "SCHILY.xattr.user.k": "v"}}),
            ("opq", D, {"pax": {"SCHILY.xattr.trusted.overlay.opaque": "y"}}),
            ("s" * 200, S, {"to": "t" * 200}),
        ],
        tarfile.PAX_FORMAT,
    ),
)
# Attempts to get out of dest: each must be refused or confined.
escapes = {
    "dotdot": [("../canary/evil", F, {"data": b"evil"})],
    "dotdot-dir": [("a/../../canary/evil", F, {"data": b"evil"})],
    "abs": [(BASE + "/canary/evil", F, {"data": b"evil"})],
    "sym-rel-dir": [("l", S, {"to": "../canary"}), ("l/evil", F, {"data": b"evil"})],
    "sym-abs-dir": [("l", S, {"to": BASE + "/canary"}), ("l/evil", F, {"data": b"evil"})],
    "sym-file-overwrite": [("l", S, {"to": "../canary/file"}), ("l", F, {"data": b"evil"})],
    "sym-chain": [("a", S, {"to": "b"}), ("b", S, {"to": "../../canary"}), ("a/file", F, {"data": b"evil"})],
    "hardlink-out": [("h", L, {"to": "../canary/file"})],
    "hardlink-abs": [("h", L, {"to": BASE + "/canary/file"})],
    "hardlink-via-sym": [("l", S, {"to": BASE + "/canary"}), ("h", L, {"to": "l/file"})],
    "sym-then-dir-mode": [("l", S, {"to": "../canary"}), ("l", D, {"mode": 0o777})],
    "whiteout-via-sym": [("l", S, {"to": "../canary"}), ("l/.wh.file", F, {}), ("l/.wh..wh..opq", F, {})],
    "sym-dotdot-parent": [("d", D, {}), ("d/up", S, {"to": ".."}), ("d/up/up/canary/evil", F, {"data": b"e"})],
}
for name, entries in sorted(escapes.items()):
    write("unpack_layer", f"escape-{name}.tar", tar(entries))

# --- image_manifest -------------------------------------------------------

config = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-01-01T00:00:00Z",
    "config": {
        "User": "1000:1000",
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": ["/bin/sh"],
        "Cmd": ["-c", "echo hi"],
        "WorkingDir": "/app",
        "StopSignal": "SIGRTMIN+3",
        "Labels": {"org.opencontainers.image.source": "x"},
        "Volumes": {"/data": {}},
    },
    "rootfs": {"type": "layers", "diff_ids": [sha(b"layer1"), sha(b"layer2")]},
    "history": [{"created_by": "ADD rootfs.tar /"}],
}
cfg_bytes = json.dumps(config, indent=2).encode()
write("image_manifest", "config-busybox.json", cfg_bytes)
write("image_manifest", "config-minimal.json", json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}))
write("image_manifest", "config-stopsignal-num.json",
      json.dumps({"config": {"StopSignal": "15"}, "rootfs": {"type": "layers", "diff_ids": []}}))

layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b"l1"), "size": 1234}
oci_manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg_bytes), "size": len(cfg_bytes)},
    "layers": [layer, dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar+zstd", digest=sha(b"l2"))],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}
write("image_manifest", "oci-manifest.json", json.dumps(oci_manifest))
docker_manifest = dict(oci_manifest, mediaType="application/vnd.docker.distribution.manifest.v2+json")
docker_manifest["layers"] = [dict(layer, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")]
del docker_manifest["annotations"]
write("image_manifest", "docker-manifest.json", json.dumps(docker_manifest))
plats = [("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7"), ("linux", "arm", "v6"),
         ("windows", "amd64", ""), ("linux", "s390x", ""), ("linux", "amd64", "v3")]
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(str(i).encode()), "size": 500 + i,
         "platform": {"os": o, "architecture": a, **({"variant": v} if v else {})}}
        for i, (o, a, v) in enumerate(plats)
    ],
}
write("image_manifest", "oci-index.json", json.dumps(index))
dl = dict(index, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")
write("image_manifest", "docker-list.json", json.dumps(dl))
nomedia = dict(index)
del nomedia["mediaType"]
write("image_manifest", "index-no-mediatype.json", json.dumps(nomedia))
write("image_manifest", "schema1.json", json.dumps({"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": []}))
record = {
    "id": sha(cfg_bytes), "repo_tags": ["docker.io/library/busybox:1.36"],
    "repo_digests": ["docker.io/library/busybox@" + sha(b"m")], "manifest": sha(b"m"), "index": sha(b"i"),
    "layers": [{"digest": sha(b"l1"), "media_type": layer["mediaType"], "size": 1234, "diff_id": sha(b"layer1"),
                "chain_id": sha(b"layer1")}],
    "size": 99, "user": "1000", "platform": "linux/amd64", "stored_at": 1700000000,
}
write("image_manifest", "image-record.json", json.dumps(record))
write("image_manifest", "snapshot-record.json",
      json.dumps({"chain_id": sha(b"c"), "parent": None, "diff_id": sha(b"d"), "bytes": 10, "inodes": 3}))
refs = [
    "busybox", "busybox:1.36", "docker.io/library/busybox:1.36", "index.docker.io/library/busybox",
    "127.0.0.1:5000/ns/name:tag", "localhost/app", "registry.k8s.io/pause:3.10",
    "busybox:1.36@" + sha(b""), "[::1]:5000/app", "a/b__c/d-----e", "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    sha(b"")[7:], sha(b""), "SIGRTMIN+3", "RTMAX-2", "sigterm", "9",
]
for i, r in enumerate(refs):
    write("image_manifest", f"string-{i:02}.txt", r)

# --- hosts_toml -------------------------------------------------------------

write("hosts_toml", "hosts-mirrors.toml", '''server = "https://registry-1.docker.io"

[host."http://10.0.0.9:5000"]
  capabilities = ["pull", "resolve"]

[host."https://m2.example"]
  capabilities = ["pull"]
  skip_verify = true

[host."https://push-only.example"]
  capabilities = ["push"]
''')
write("hosts_toml", "hosts-server-only.toml", 'server = "http://10.1.1.1:5000"\nskip_verify = true\n')
write("hosts_toml", "hosts-loopback.toml", 'server = "127.0.0.1:5000"\n[host."localhost:5001"]\n')
with open(os.path.join(ROOT, "deploy", "config.toml"), "rb") as f:
    write("hosts_toml", "berthd-default.toml", f.read())
write("hosts_toml", "berthd-small.toml", '''[daemon]
root_dir = "/var/lib/berth"
state_dir = "/run/berth"
socket = "/run/berth/berth.sock"
log_level = "info,berth_cri=debug"
log_format = "json"
shutdown_timeout = "1m 30s"

[cni]
conf_dir = "/etc/cni/net.d"
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
''')
write("hosts_toml", "auth-config.json", json.dumps({"auths": {
    "https://index.docker.io/v1/": {"auth": "dXNlcjpzZWNyZXRwYXNz"},
    "127.0.0.1:5000": {"username": "a", "password": "secretpw"},
    "quay.io": {"identitytoken": "tok-abcdef"},
}}))
write("hosts_toml", "auth-fields.json", json.dumps({"username": "u", "registrytoken": "bearer-xyz"}))

# --- cni_result / cni_add ---------------------------------------------------

conflist = {
    "cniVersion": "1.0.0", "name": "berth",
    "plugins": [
        {"type": "berth-bridge", "bridge": "berth0", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:88::/64"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ],
}
write("cni_result", "conflist.json", json.dumps(conflist))
write("cni_result", "conf-single.json", json.dumps({"cniVersion": "0.4.0", "name": "net", "type": "bridge",
                                                   "disableCheck": True}))
res10 = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "berth0", "mac": "aa:bb:cc:dd:ee:ff"}, {"name": "veth1"},
                   {"name": "eth0", "mac": "11:22:33:44:55:66", "sandbox": "/run/netns/x"}],
    "ips": [{"interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
            {"interface": 2, "address": "fd00:88::5/64", "gateway": "fd00:88::1"}],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:88::1"}],
    "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"], "options": ["ndots:5"]},
}
write("cni_result", "result-1.0.0.json", json.dumps(res10))
res04 = dict(res10, cniVersion="0.4.0")
res04["ips"] = [dict(ip, version="4" if ":" not in ip["address"] else "6") for ip in res10["ips"]]
write("cni_result", "result-0.4.0.json", json.dumps(res04))
write("cni_result", "result-0.3.1-noiface.json",
      json.dumps({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "192.168.1.2/24"}]}))
write("cni_result", "cache-entry.json", json.dumps({
    "kind": "berthCniCacheV1", "networkName": "net", "containerId": "0123456789abcdef", "ifName": "eth0",
    "netns": "/run/netns/x", "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "p"]],
    "capabilityArgs": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
    "config": conflist, "result": res10}))
write("cni_result", "error-result.json", json.dumps({"cniVersion": "1.0.0", "code": 7, "msg": "no", "details": "d"}))
# cni_add: byte 0 picks the list version (index into 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0), bit 7 a failing exit.
for sel, doc, name in [(3, res10, "ok-1.0.0-as-1.0.0"), (2, res10, "ok-1.0.0-as-0.4.0"),
                       (4, res04, "ok-0.4.0-as-1.1.0"), (0, res04, "ok-0.4.0-as-0.3.0"),
                       (0x83, {"cniVersion": "1.0.0", "code": 11, "msg": "try again"}, "fail-error")]:
    write("cni_add", name + ".bin", bytes([sel]) + json.dumps(doc).encode())

# --- cri_validation_and_spec ------------------------------------------------


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    """value: int (varint), bool, str/bytes (length-delimited) or list of (num, value) (message)."""
    if isinstance(value, bool) or isinstance(value, int):
        return varint(num << 3) + varint(int(value))
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, list):
        value = msg(value)
    return varint(num << 3 | 2) + varint(len(value)) + value


def msg(fields):
    return b"".join(field(n, v) for n, v in fields)


def mapentry(num, k, v):
    return (num, [(1, k), (2, v)])


def pod(name="web-0", ns="default", uid="0c9e-11", hostname="web-0", extra=(), linux=()):
    return msg([(1, [(1, name), (2, uid), (3, ns), (4, 0)]), (2, hostname), (3, "/var/log/pods/x"),
                (4, [(1, "10.96.0.10"), (2, "svc.cluster.local"), (3, "ndots:5")]),
                (5, [(1, 0), (2, 80), (3, 8080), (4, "127.0.0.1")]),
                mapentry(6, "app", "web"), mapentry(7, "k", "v"),
                (8, [(1, "/kubepods/burstable/pod1"), *linux]), *extra])


POD_PLAIN = pod()
POD_PRIV = pod(linux=[(2, [(1, [(1, 0), (2, 1), (3, 0)]), (6, True)]), mapentry(3, "net.ipv4.ip_forward", "1")])
POD_HOSTNS = pod(linux=[(2, [(1, [(1, 2), (2, 2), (3, 2)]), (3, [(1, 1000)]), (8, [(1, 1000)])])])

container_proto = msg([
    (1, [(1, "app"), (2, 1)]), (2, [(1, "docker.io/library/busybox:1.36")]),
    (3, "/bin/sh"), (4, "-c"), (4, "sleep 1"), (5, "/app"),
    (6, [(1, "A"), (2, "1")]), (6, [(1, "A"), (2, "2")]), (6, [(1, "HOSTNAME"), (2, "h")]),
    (7, [(1, "/data"), (2, "/tmp"), (3, True), (5, 1)]),
    mapentry(10, "io.kubernetes.container.hash", "abc"), (11, "app/0.log"), (14, True),
    (15, [(1, [(1, 100000), (2, 50000), (3, 512), (4, 64 << 20), (5, -900), (6, "0-1"), (7, "0"),
               (8, [(1, "2MB"), (2, 1 << 21)]), mapentry(9, "memory.high", "1000000"), (10, 128 << 20)]),
          (2, [(1, [(1, "NET_ADMIN"), (1, "CAP_SYS_TIME"), (2, "KILL"), (2, "chown"), (3, "NET_BIND_SERVICE")]),
               (5, [(1, 1000)]), (12, [(1, 3000)]), (7, True), (8, 2000), (8, 3000), (11, True),
               (13, "/proc/kcore"), (14, "/proc/sys"),
               (15, [(1, 0)]), (16, [(1, 2), (2, "fuzz-profile")])])]),
])
container_priv = msg([
    (1, [(1, "priv"), (2, 0)]), (2, [(1, "busybox")]), (4, "top"),
    (8, [(1, "/dev/xnull"), (2, "/dev/null"), (3, "rwm")]),
    (15, [(2, [(1, [(1, "ALL"), (2, "ALL")]), (2, True), (6, "root"), (9, "localhost/fuzz-profile"),
               (15, [(1, 1)])])]),
])
container_priv_plain = msg([
    (1, [(1, "priv2"), (2, 0)]), (2, [(1, "busybox")]), (4, "top"),
    (15, [(2, [(2, True), (6, "root"), (15, [(1, 0)])])]),
])

crictl_basic = {
    "metadata": {"name": "web", "attempt": 0},
    "image": {"image": "docker.io/library/nginx:1"},
    "command": [], "args": ["serve"], "working_dir": "", "envs": [{"key": "MODE", "value": "cri"}],
    "labels": {"a": "b"}, "annotations": {"a": "b"}, "log_path": "web/0.log", "tty": False,
}
crictl_sec = {
    "metadata": {"name": "sec"},
    "image": {"image": "busybox"},
    "command": ["/bin/app", "--flag"],
    "mounts": [{"container_path": "/etc/config", "host_path": "/tmp", "readonly": True,
                "propagation": "PROPAGATION_HOST_TO_CONTAINER"}],
    "linux": {
        "resources": {"cpu_period": 100000, "cpu_quota": 20000, "cpu_shares": 2, "memory_limit_in_bytes": 4194304,
                      "oom_score_adj": 1000, "cpuset_cpus": "0", "memory_swap_limit_in_bytes": 8388608},
        "security_context": {
            "capabilities": {"add_capabilities": ["SYS_PTRACE"], "drop_capabilities": ["ALL"]},
            "readonly_rootfs": True, "run_as_username": "web", "supplemental_groups": [500],
            "no_new_privs": True, "seccomp": {"profile_type": "RuntimeDefault"},
            "masked_paths": ["/proc/acpi"], "readonly_paths": [],
        },
    },
}
crictl_yaml = """metadata:
  name: yaml
image:
  image: registry.k8s.io/pause:3.10
args: ["/pause"]
linux:
  security_context:
    run_as_user: {value: 65535}
    run_as_group: {value: 65535}
    seccomp: {profile_type: Unconfined}
"""
image_cfg = json.dumps({"config": {"User": "web", "Env": ["PATH=/usr/bin", "MODE=image", "UNSET"],
                                   "Entrypoint": ["/entry"], "Cmd": ["serve"], "WorkingDir": "/var/www",
                                   "StopSignal": "SIGQUIT"},
                        "rootfs": {"type": "layers", "diff_ids": []}, "architecture": "amd64", "os": "linux"})
passwd = "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n"
group = "root:x:0:\nwww:x:33:\nshared:x:500:web\n"
SEPS = b"\n#-#\n"


def cri_seed(container, podb, image=image_cfg, pw=passwd, gr=group):
    parts = [container if isinstance(container, bytes) else container.encode(), podb]
    if image is not None:
        parts += [image.encode()]
        if pw is not None:
            parts += [pw.encode(), gr.encode()]
    return SEPS.join(parts)


write("cri_validation_and_spec", "proto-full.bin", cri_seed(container_proto, POD_PLAIN))
# The same without the propagation and AppArmor profile that only some hosts allow.
plain = container_proto.replace(field(7, [(1, "/data"), (2, "/tmp"), (3, True), (5, 1)]),
                                field(7, [(1, "/data"), (2, "/tmp"), (3, True)]))
plain = plain.replace(field(16, [(1, 2), (2, "fuzz-profile")]), b"")
assert plain != container_proto
write("cri_validation_and_spec", "proto-full-plain.bin", cri_seed(plain, POD_PLAIN))
write("cri_validation_and_spec", "proto-full-plain-hostns.bin", cri_seed(plain, POD_HOSTNS))
write("cri_validation_and_spec", "proto-privileged.bin", cri_seed(container_priv, POD_PRIV))
write("cri_validation_and_spec", "proto-privileged-plain.bin", cri_seed(container_priv_plain, POD_PRIV))
write("cri_validation_and_spec", "proto-hostns.bin", cri_seed(container_proto, POD_HOSTNS, pw=None))
write("cri_validation_and_spec", "crictl-basic.bin", cri_seed(json.dumps(crictl_basic), POD_PLAIN))
write("cri_validation_and_spec", "crictl-sec.bin", cri_seed(json.dumps(crictl_sec), POD_PLAIN))
write("cri_validation_and_spec", "crictl-yaml.bin", cri_seed(crictl_yaml, POD_HOSTNS, image=None))
write("cri_validation_and_spec", "crictl-only.json", json.dumps(crictl_basic))

# --- cri_log ------------------------------------------------------------------

write("cri_log", "mixed.log", """2024-05-01T12:00:00.000000001Z stdout F hello
2024-05-01T12:00:00.100000000Z stderr P par
2024-05-01T12:00:00.200000000Z stdout F world
2024-05-01T12:00:00.300000000Z stderr F tial line
2024-05-01T14:00:00.5+02:00 stdout F offset
2024-05-01t12:00:01z stdout P:x lower
2024-05-01 12:00:02.123456789123-00:30 stdout F spaced
not a record
2024-13-01T00:00:00Z stdout F bad month
2024-02-29T23:59:60Z stdout F leap
""")
write("cri_log", "unterminated.log", "2024-05-01T12:00:00Z stdout P a\n2024-05-01T12:00:00Z stdout P b")
write("cri_log", "since.txt", "1h30m\n1.5h\n300ms\n10\xb5s\n2024-05-01T12:00:00Z\n0000-01-01T00:00:00+23:59\n")

# --- spdy_frames ----------------------------------------------------------------
# Byte 0 picks how the rest is split as a socket would deliver it; the rest
# is what a kubectl/crictl-like client sends after the upgrade. Header
# blocks are compressed with one zlib context and the SPDY/3 dictionary,
# read here from streaming/src/spdy/headers.rs (one definition).

import re
import struct
import zlib

_hdr_src = open(os.path.join(ROOT, "streaming/src/spdy/headers.rs")).read()
_words = re.findall(r'"([^"]*)"', _hdr_src.split("const DICTIONARY_WORDS")[1].split("];")[0])
_tail = "".join(re.findall(r'"([^"]*)"', _hdr_src.split("const DICTIONARY_TAIL")[1].split(");")[0]))
SPDY_DICT = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _words) + _tail.encode()
assert len(SPDY_DICT) == 1423 and zlib.adler32(SPDY_DICT) == 0xE3C6A7C2


def spdy_control(kind, flags, payload):
    return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload


def spdy_block(z, headers):
    raw = struct.pack(">I", len(headers))
    for k, v in headers:
        raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
    return z.compress(raw) + z.flush(zlib.Z_SYNC_FLUSH)


def syn_stream(z, sid, headers, fin=False):
    return spdy_control(1, 1 if fin else 0, struct.pack(">IIBB", sid, 0, 0, 0) + spdy_block(z, headers))


def spdy_data(sid, data, fin=False):
    return struct.pack(">II", sid, ((1 if fin else 0) << 24) | len(data)) + data


def spdy_exec_session():
    z = zlib.compressobj(zdict=SPDY_DICT)
    out = b""
    for sid, kind in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr"), (9, "resize")]:
        out += syn_stream(z, sid, [("streamtype", kind)])
    out += spdy_data(3, b"echo hello\n") + spdy_data(3, b"", fin=True)
    out += spdy_data(9, b'{"Width":80,"Height":24}')
    out += spdy_control(6, 0, struct.pack(">I", 1))  # PING
    out += spdy_control(9, 0, struct.pack(">II", 5, 65536))  # WINDOW_UPDATE
    out += spdy_control(3, 0, struct.pack(">II", 7, 5))  # RST_STREAM CANCEL
    out += spdy_control(7, 0, struct.pack(">II", 9, 0))  # GOAWAY
    return out


def spdy_portforward_session():
    z = zlib.compressobj(zdict=SPDY_DICT)
    out = spdy_control(4, 0, struct.pack(">I", 1) + struct.pack(">II", (0 << 24) | 7, 65536 * 4))  # SETTINGS
    for req in range(3):
        for kind in ("error", "data"):
            sid = 1 + 4 * req + (2 if kind == "data" else 0)
            out += syn_stream(z, sid, [("streamtype", kind), ("port", "8080"), ("requestid", str(req))])
        out += spdy_data(1 + 4 * req + 2, b"GET / HTTP/1.0\r\n\r\n", fin=True)
    out += spdy_control(8, 1, struct.pack(">I", 5) + spdy_block(z, [("x", "y")]))  # HEADERS + FIN
    return out


for split in (0, 7, 63):
    write("spdy_frames", f"exec-split{split}.bin", bytes([split]) + spdy_exec_session())
    write("spdy_frames", f"portforward-split{split}.bin", bytes([split]) + spdy_portforward_session())

print("seeds written to", CORPUS)
