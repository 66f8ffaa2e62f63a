#!/bin/bash
# Start a private, throw-away containerd 1.6 (with CRI) plus a private plain-HTTP
# docker-registry holding a busybox image; everything lives under one temp dir.
#   usage: ctrd-up.sh            -> prints shell assignments (DIR=... SOCK=... ...)
#   stop : ctrd-down.sh "$DIR"
# Needs (Debian 12): containerd runc containernetworking-plugins docker-registry
# busybox-static python3.  Must run as root.  Verified with containerd 1.6.20~ds1.
set -euo pipefail
FILES=$(dirname "$(readlink -f "$0")")

DIR=$(mktemp -d /tmp/ctrd-XXXXXX)          # short: unix socket paths < 108 bytes
SFX=$(basename "$DIR" | cut -d- -f2 | tr 'A-Z' 'a-z')
BRIDGE=cbr-$SFX                             # <= 15 chars (IFNAMSIZ)
NETNAME=ctrd-$SFX
SOCK=$DIR/containerd.sock

# a /24 in 10.88.0.0/16 that no route / address on this host uses yet
while :; do
  N=$((RANDOM % 250 + 2)); SUBNET=10.88.$N.0/24
  ip -4 route | grep -q "^10\.88\.$N\." || ip -4 addr | grep -q " 10\.88\.$N\." || break
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REGISTRY_PORT=$(free_port)
REGISTRY=127.0.0.1:$REGISTRY_PORT

mkdir -p "$DIR"/{root,state,tmp,opt,registry,cni/net.d,cni/ipam,"certs.d/$REGISTRY"}
cat > "$DIR/env" <<EOF
DIR=$DIR
SOCK=$SOCK
BRIDGE=$BRIDGE
NETNAME=$NETNAME
SUBNET=$SUBNET
REGISTRY=$REGISTRY
IP_FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
CGROUP_PARENTS="${CGROUP_PARENTS:-}"
EOF

# ---- registry ---------------------------------------------------------------
sed -e "s#@REGISTRY_DIR@#$DIR/registry#" -e "s#@REGISTRY_PORT@#$REGISTRY_PORT#" \
  "$FILES/registry.yml.tmpl" > "$DIR/registry.yml"
setsid /usr/bin/docker-registry serve "$DIR/registry.yml" > "$DIR/registry.log" 2>&1 < /dev/null &
echo $! > "$DIR/registry.pid"
for i in $(seq 1 100); do
  curl -fsS "http://$REGISTRY/v2/" > /dev/null 2>&1 && break; sleep 0.1
done
python3 "$FILES/mkimage.py" push --registry "$REGISTRY" --repo busybox --tag latest >&2
python3 "$FILES/mkimage.py" push --kind pause --registry "$REGISTRY" --repo pause --tag 3.6 >&2
curl -fsS "http://$REGISTRY/v2/_catalog" >&2

# ---- containerd ---------------------------------------------------------------
sed -e "s#@DIR@#$DIR#g" "$FILES/containerd.toml.tmpl" > "$DIR/containerd.toml"
sed -e "s#@DIR@#$DIR#g" -e "s#@BRIDGE@#$BRIDGE#g" -e "s#@SUBNET@#$SUBNET#g" \
    -e "s#@NETNAME@#$NETNAME#g" "$FILES/10-bridge.conflist.tmpl" > "$DIR/cni/net.d/10-bridge.conflist"
sed -e "s#@DIR@#$DIR#g" -e "s#@REGISTRY_PORT@#$REGISTRY_PORT#g" \
  "$FILES/hosts.toml.tmpl" > "$DIR/certs.d/$REGISTRY/hosts.toml"

# setsid: own session/process group, so a harness can signal it alone; the shims
# it spawns re-parent to PID 1 (or the nearest subreaper) and survive it.
setsid /usr/bin/containerd --config "$DIR/containerd.toml" > "$DIR/containerd.log" 2>&1 < /dev/null &
CTRD_PID=$!
echo $CTRD_PID > "$DIR/containerd.pid"
for i in $(seq 1 100); do
  [ -S "$SOCK" ] && ctr -a "$SOCK" version > /dev/null 2>&1 && break; sleep 0.1
done
ctr -a "$SOCK" plugins ls | awk '$2 == "cri" && $4 != "ok" { print "CRI plugin not ok: " $0; exit 1 }' >&2
echo "containerd idle VmRSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$CTRD_PID/status)" >&2

# ---- pause (sandbox) image: offline, imported straight into the CRI namespace --
python3 "$FILES/mkimage.py" oci-archive --kind pause --name registry.k8s.io/pause:3.6 \
  --out "$DIR/tmp/pause.tar" >&2
ctr -a "$SOCK" -n k8s.io images import "$DIR/tmp/pause.tar" >&2
rm -f "$DIR/tmp/pause.tar"

echo "CTRD_PID=$CTRD_PID" >> "$DIR/env"
cat "$DIR/env"
