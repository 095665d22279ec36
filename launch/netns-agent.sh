#!/usr/bin/env bash
# An rsh agent for mpirun (--mca plm_rsh_agent) that "logs in" to a test host by entering its network
# namespace (10.77.0.K → dtrain-hK) with its own hostname, so ranks on different hosts talk over TCP
# through separate network stacks. Called by mpirun as: netns-agent.sh [options] HOST COMMAND…
set -euo pipefail
while [ "${1:-}" != "" ] && [ "${1#-}" != "$1" ]; do shift; done   # ssh-style options are ignored
HOST="${1:?no host}"; shift
K="${HOST##*.}"
exec ip netns exec "dtrain-h$K" unshare --uts sh -c "hostname dtrain-h$K; $*"
