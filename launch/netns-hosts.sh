#!/usr/bin/env bash
# Test hosts on one machine: network namespaces dtrain-h1 … dtrain-hN joined by veth pairs to a bridge, each
# with its own address 10.77.0.K/24 (the bridge, in the root namespace, is 10.77.0.254 so mpirun can reach
# them). Used by the multi-host test; needs root and iproute2.
#   launch/netns-hosts.sh up 2     # create 2 hosts
#   launch/netns-hosts.sh down     # remove everything this script created
set -euo pipefail
ACTION="${1:?usage: $0 up N | down}"
BRIDGE=dtrain-br0

down() {
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^dtrain-h' || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^dtv' || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

if [ "$ACTION" = down ]; then down; exit 0; fi
N="${2:-2}"
down
ip link add "$BRIDGE" type bridge
ip addr add 10.77.0.254/24 dev "$BRIDGE"
ip link set "$BRIDGE" up
for k in $(seq 1 "$N"); do
  ns="dtrain-h$k"
  ip netns add "$ns"
  ip link add "dtv$k" type veth peer name "dtv$k-ns"
  ip link set "dtv$k" master "$BRIDGE" up
  ip link set "dtv$k-ns" netns "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "dtv$k-ns" name eth0
  ip -n "$ns" addr add "10.77.0.$k/24" dev eth0
  ip -n "$ns" link set eth0 up
done
for k in $(seq 1 "$N"); do
  ip -n "dtrain-h$k" route get 10.77.0.254 >/dev/null
done
echo "netns hosts up: $(seq -s ' ' -f '10.77.0.%g' 1 "$N")"
