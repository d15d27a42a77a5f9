#!/bin/sh
# rolling-upgrade.sh ENTRY NODE... - replaces the binary of a running
# cluster node by node, without downtime.  Install (or build) the new
# binary first.  Then each node in turn is told to drain through the
# entry point's admin API: it takes no new consultations, lets its own
# end (at most drain-timeout, after which they resume on other nodes),
# waits for their recordings, exits 0, and its service manager starts it
# again with the new binary (systemd's Restart=always; scripts/cluster.sh
# does the same).  The next node follows once this one is back: in the
# registry with a new start time, alive, not draining, and ready.
#   CONSULTD_ADMIN_TOKEN=... scripts/rolling-upgrade.sh http://127.0.0.1:8080 n0 n1 n2
# or CONSULTD_ADMIN_USER (admin) and CONSULTD_ADMIN_PASSWORD to log in.
# ROLLING_TIMEOUT: seconds a node may take (default 900).
set -eu
entry=${1:?usage: rolling-upgrade.sh ENTRY-URL NODE...}
shift
limit=${ROLLING_TIMEOUT:-900}
token=${CONSULTD_ADMIN_TOKEN:-}
if [ -z "$token" ]; then
    token=$(printf '{"username": "%s", "password": "%s"}' "${CONSULTD_ADMIN_USER:-admin}" \
        "${CONSULTD_ADMIN_PASSWORD:?set CONSULTD_ADMIN_TOKEN or CONSULTD_ADMIN_PASSWORD}" |
        curl -fsS -H 'Content-Type: application/json' --data-binary @- "$entry/api/login" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
fi

# "STARTED_AT ALIVE DRAINING" of node $1 in the registry, or nothing.
state() {
    curl -fsS -H "Authorization: Bearer $token" "$entry/api/admin/nodes" | python3 -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    if n["node_id"] == sys.argv[1]:
        print(n["started_at"], int(n["alive"]), int(n["draining"]))' "$1"
}

for node in "$@"; do
    before=$(state "$node" | cut -d' ' -f1)
    [ -n "$before" ] || { echo "rolling-upgrade: no node $node in the registry" >&2; exit 1; }
    echo "rolling-upgrade: draining $node" >&2
    curl -fsS -X POST -H "Authorization: Bearer $token" "$entry/api/admin/nodes/$node/drain" \
        >/dev/null
    t0=$(date +%s)
    while :; do
        now=$(state "$node" 2>/dev/null || true)
        if [ -n "$now" ] && [ "${now%% *}" != "$before" ] && [ "${now#* }" = "1 0" ] &&
            curl -fsS "$entry/n/$node/readyz" >/dev/null 2>&1; then
            break
        fi
        if [ $(($(date +%s) - t0)) -gt "$limit" ]; then
            echo "rolling-upgrade: $node did not come back within $limit s; stopping here" >&2
            exit 1
        fi
        sleep 1
    done
    echo "rolling-upgrade: $node is back after $(($(date +%s) - t0)) s" >&2
done
echo "rolling-upgrade: done" >&2
