#!/bin/bash
# Tear down a private containerd + registry started by ctrd-up.sh, leaving
# nothing behind even if pods are still running (forceful path).
#   usage: ctrd-down.sh DIR
# For a *clean* CNI teardown first remove all pods through the CRI
# (ListPodSandbox -> StopPodSandbox -> RemovePodSandbox, e.g.
# `cri_smoke.py --sock DIR/containerd.sock --remove-all`); this script then
# only has to stop the daemons.  Everything below is idempotent.
set -u
DIR=${1:?usage: ctrd-down.sh DIR}
DIR=$(readlink -f "$DIR")
SOCK=$DIR/containerd.sock
RUNC_ROOT=$DIR/state/runc/k8s.io
. "$DIR/env" 2>/dev/null || true   # BRIDGE, NETNAME, IP_FORWARD_BEFORE, CGROUP_PARENTS

alive() { # pid: running and not a zombie (daemons re-parented to PID 1 may stay
           # zombies for a while here, because PID 1 is not a normal init)
  local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
wait_gone() { # pid timeout_in_20ms_steps
  local i; for ((i = 0; i < $2; i++)); do alive "$1" || return 0; sleep 0.02; done; return 1
}

# 1. containerd: SIGTERM, then SIGKILL after 10 s.  Exiting containerd does NOT
#    stop shims or containers (by design), so they are handled below.
if [ -f "$DIR/containerd.pid" ]; then
  pid=$(cat "$DIR/containerd.pid")
  if alive "$pid"; then
    kill -TERM "$pid"; wait_gone "$pid" 500 || { kill -KILL "$pid"; wait_gone "$pid" 250; }
  fi
fi

# 2. containers: runc state of this instance lives in $RUNC_ROOT.  `delete --force`
#    SIGKILLs the container's processes and removes its cgroups.
if [ -d "$RUNC_ROOT" ]; then
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
  done
fi

# 3. shims of THIS instance: their cmdline carries `-address $SOCK`.
#    (pgrep only *finds* the pids; each is then killed by id.)
shims=($(pgrep -f -- "containerd-shim-runc-v2 .*-address $SOCK( |\$)" || true))
for s in "${shims[@]}"; do kill -KILL "$s" 2>/dev/null; done
for s in "${shims[@]}"; do wait_gone "$s" 250; done

# 4. shim sockets: containerd 1.6 hard-codes /run/containerd/s/<sha256(SOCK/ns/id)>
#    regardless of `state`; a killed shim leaves its socket file behind.
for b in "$DIR"/state/io.containerd.runtime.v2.task/*/*; do
  [ -d "$b" ] || continue
  ns=$(basename "$(dirname "$b")"); id=$(basename "$b")
  h=$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)
  rm -f "/run/containerd/s/$h"
done
rmdir /run/containerd/s /run/containerd 2>/dev/null || true  # only if empty (ours)

# 5. sandbox ids (for CNI cache files) before mounts/dirs go away
sandboxes=$(ls "$DIR/state/io.containerd.grpc.v1.cri/sandboxes" 2>/dev/null || true)

# 6. unmount everything under $DIR, deepest first (rootfs overlays, shm tmpfs,
#    nsfs netns bind mounts under state/io.containerd.grpc.v1.cri/netns).
for _ in 1 2 3; do
  mps=$(awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | uniq)
  [ -z "$mps" ] && break
  for m in $mps; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
# with the nsfs bind mounts gone and all processes dead the netns are freed,
# which also destroys the veth pairs.

# 7. CNI leftovers outside $DIR: libcni result cache (/var/lib/cni/results is
#    hard-coded in containerd 1.6's go-cni) and the bridge.
for id in $sandboxes; do
  rm -f /var/lib/cni/results/*-"$id"-eth0 /var/lib/cni/results/cni-loopback-"$id"-lo
done
[ -n "${NETNAME:-}" ] && rm -f /var/lib/cni/results/"$NETNAME"-*
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true   # only if empty
if [ -n "${BRIDGE:-}" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link del "$BRIDGE"
fi
if [ -n "${IP_FORWARD_BEFORE:-}" ]; then
  echo "$IP_FORWARD_BEFORE" > /proc/sys/net/ipv4/ip_forward   # bridge isGateway set it to 1
fi

# 7b. portmap's *shared* nat chains (CNI-HOSTPORT-DNAT/-MASQ/-SETMARK and the
#    jumps to them) are created on the first pod with port_mappings and never
#    removed by the plugin.  They are shared by every CNI user on the host
#    (berth too), so only remove them when asked and only while DNAT is empty.
if [ "${CLEAN_PORTMAP_CHAINS:-0}" = 1 ]; then
  for ipt in iptables ip6tables; do
    $ipt -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 || continue
    [ "$($ipt -t nat -S CNI-HOSTPORT-DNAT | grep -c '^-A')" = 0 ] || continue
    $ipt -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null
    $ipt -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null
    $ipt -t nat -D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ 2>/dev/null
    for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
      $ipt -t nat -F "$c" 2>/dev/null; $ipt -t nat -X "$c" 2>/dev/null
    done
  done
fi

# 8. cgroups (cgroupfs driver, v1): runc removed the per-container dirs; remove
#    now-empty parents (/k8s.io is containerd's default when the pod has no
#    cgroup_parent; plus any cgroup_parent the harness used).
for parent in k8s.io ${CGROUP_PARENTS:-}; do
  parent=${parent#/}
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$parent" ] || continue
    find "$h$parent" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
done

# 9. registry
if [ -f "$DIR/registry.pid" ]; then
  pid=$(cat "$DIR/registry.pid")
  alive "$pid" && kill -TERM "$pid" 2>/dev/null && { wait_gone "$pid" 250 || kill -KILL "$pid"; }
fi

# 10. the directory itself
if awk -v d="$DIR/" 'index($5, d) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
  echo "ctrd-down: mounts still present under $DIR, not removing it" >&2; exit 1
fi
rm -rf "$DIR"
echo "ctrd-down: $DIR removed"
