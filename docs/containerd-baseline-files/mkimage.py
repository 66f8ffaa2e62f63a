#!/usr/bin/env python3
"""Build tiny busybox-static based container images offline and either
push them to a plain-HTTP Docker Registry v2 or write an OCI image-layout
tarball that `ctr images import` understands.

Only the Python standard library is used (tarfile, gzip, hashlib, json,
urllib).  Verified against Debian 12's docker-registry 2.8.2 and
containerd 1.6.20.

Usage:
  # busybox image (all applets symlinked) pushed to a local registry
  mkimage.py push --registry 127.0.0.1:5000 --repo busybox --tag latest

  # pause-like sandbox image as an OCI archive for `ctr -n k8s.io images import`
  mkimage.py oci-archive --kind pause --name registry.k8s.io/pause:3.6 --out pause.tar

  # the pause image can also be pushed to the registry
  mkimage.py push --kind pause --registry 127.0.0.1:5000 --repo pause --tag 3.6

Image kinds:
  busybox : /bin/busybox + a symlink for every applet (`busybox --list-full`),
            /etc/passwd, /etc/group, /tmp ...  Cmd ["sh"].
  pause   : /bin/busybox, /bin/sh, /bin/sleep only (a *different* layer digest
            than the busybox image, so pulling busybox is never short-cut by
            the already-present pause layer).  Entrypoint is a shell that
            traps TERM/INT (exit 0) and otherwise sleeps forever.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

BUSYBOX = "/bin/busybox"  # Debian busybox-static: statically linked
MTIME = 0  # deterministic layers: same input -> same digest
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add_dir(tf, name, mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = MTIME
    tf.addfile(ti)


def _add_file(tf, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = MTIME
    tf.addfile(ti, io.BytesIO(data))


def _add_symlink(tf, name, target):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    ti.mode = 0o777
    ti.mtime = MTIME
    tf.addfile(ti)


def build_layer(kind):
    """Return the *uncompressed* layer tar bytes for the given image kind."""
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        if kind == "pause":
            for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
                _add_dir(tf, d, 0o1777 if d == "tmp" else 0o755)
            _add_file(tf, "bin/busybox", bb, 0o755)
            _add_symlink(tf, "bin/sh", "/bin/busybox")
            _add_symlink(tf, "bin/sleep", "/bin/busybox")
        elif kind == "busybox":
            applets = subprocess.run([BUSYBOX, "--list-full"], check=True,
                                     capture_output=True, text=True).stdout.split()
            dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "etc",
                    "proc", "sys", "tmp", "root", "var", "var/tmp", "home"}
            for a in applets:
                d = os.path.dirname(a)
                while d:
                    dirs.add(d)
                    d = os.path.dirname(d)
            for d in sorted(dirs):
                _add_dir(tf, d, 0o1777 if d in ("tmp", "var/tmp") else
                         (0o700 if d == "root" else 0o755))
            _add_file(tf, "bin/busybox", bb, 0o755)
            _add_file(tf, "etc/passwd",
                      b"root:x:0:0:root:/root:/bin/sh\n"
                      b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
            _add_file(tf, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
            _add_file(tf, "etc/hostname", b"busybox\n")
            for a in sorted(set(applets)):
                if a == "bin/busybox":
                    continue
                _add_symlink(tf, a, "/bin/busybox")
        else:
            raise SystemExit("unknown kind %r" % kind)
    return buf.getvalue()


def build_image(kind, oci):
    """Return (config_bytes, layer_gz_bytes, manifest_bytes, manifest_media_type)."""
    layer = build_layer(kind)
    diff_id = sha256(layer)
    # mtime=0 and no filename -> deterministic gzip output
    layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
    if kind == "pause":
        cfg_inner = {"Env": [PATH_ENV],
                     "Entrypoint": ["/bin/sh", "-c", PAUSE_SCRIPT],
                     "WorkingDir": "/"}
    else:
        cfg_inner = {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg_inner,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "mkimage.py %s (busybox-static)" % kind}],
    }
    config_b = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST if oci else MT_DOCKER_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG if oci else MT_DOCKER_CONFIG,
                   "size": len(config_b), "digest": sha256(config_b)},
        "layers": [{"mediaType": MT_OCI_LAYER if oci else MT_DOCKER_LAYER,
                    "size": len(layer_gz), "digest": sha256(layer_gz)}],
    }
    manifest_b = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return config_b, layer_gz, manifest_b, manifest["mediaType"]


# ---------------------------------------------------------------- registry push
def _req(method, url, data=None, headers=None):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_blob(base, repo, data):
    digest = sha256(data)
    st, _, _ = _req("HEAD", "%s/v2/%s/blobs/%s" % (base, repo, digest))
    if st == 200:
        return digest
    st, hdrs, body = _req("POST", "%s/v2/%s/blobs/uploads/" % (base, repo), data=b"")
    if st != 202:
        raise SystemExit("POST upload: HTTP %d %r" % (st, body))
    loc = hdrs.get("Location") or hdrs.get("location")
    loc = urllib.parse.urljoin(base + "/", loc)  # Location may be relative
    sep = "&" if "?" in loc else "?"
    url = loc + sep + urllib.parse.urlencode({"digest": digest})
    st, _, body = _req("PUT", url, data=data,
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(len(data))})
    if st != 201:
        raise SystemExit("PUT blob %s: HTTP %d %r" % (digest, st, body))
    return digest


def cmd_push(a):
    base = "http://" + a.registry
    config_b, layer_gz, manifest_b, mt = build_image(a.kind, oci=a.oci)
    push_blob(base, a.repo, layer_gz)
    push_blob(base, a.repo, config_b)
    st, hdrs, body = _req("PUT", "%s/v2/%s/manifests/%s" % (base, a.repo, a.tag),
                          data=manifest_b, headers={"Content-Type": mt})
    if st != 201:
        raise SystemExit("PUT manifest: HTTP %d %r" % (st, body))
    print("pushed %s/%s:%s %s" % (a.registry, a.repo, a.tag,
                                  hdrs.get("Docker-Content-Digest", sha256(manifest_b))))


# ---------------------------------------------------------------- OCI archive
def cmd_oci_archive(a):
    config_b, layer_gz, manifest_b, mt = build_image(a.kind, oci=True)
    name = a.name
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [{
            "mediaType": mt,
            "size": len(manifest_b),
            "digest": sha256(manifest_b),
            "platform": {"architecture": "amd64", "os": "linux"},
            # containerd's importer uses io.containerd.image.name verbatim as
            # the image name; ref.name is the OCI-standard tag.
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": tag},
        }],
    }
    with tarfile.open(a.out, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_file(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_file(tf, "index.json", json.dumps(index).encode())
        _add_dir(tf, "blobs")
        _add_dir(tf, "blobs/sha256")
        for blob in (layer_gz, config_b, manifest_b):
            _add_file(tf, "blobs/sha256/" + sha256(blob)[7:], blob)
    print("wrote %s (%s, manifest %s)" % (a.out, name, sha256(manifest_b)))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("push")
    pp.add_argument("--registry", required=True, help="host:port (plain HTTP)")
    pp.add_argument("--repo", default="busybox")
    pp.add_argument("--tag", default="latest")
    pp.add_argument("--kind", choices=("busybox", "pause"), default="busybox")
    pp.add_argument("--oci", action="store_true",
                    help="push OCI media types instead of Docker schema2")
    pp.set_defaults(func=cmd_push)
    po = sub.add_parser("oci-archive")
    po.add_argument("--name", required=True, help="full image ref, e.g. registry.k8s.io/pause:3.6")
    po.add_argument("--out", required=True)
    po.add_argument("--kind", choices=("busybox", "pause"), default="pause")
    po.set_defaults(func=cmd_oci_archive)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
