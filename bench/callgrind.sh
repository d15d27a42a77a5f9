#!/bin/sh
# Instruction profile of the media worker in steady state (callgrind), for
# docs/benchmarks.md: one consultation (relay + both recordings) from
# bench/run.py, the worker run under valgrind; its counters are zeroed once
# everyone has joined and dumped SECONDS later, then summed per library and
# per function by bench/callgrind-summary.py.
#
#   bench/callgrind.sh [SECONDS]        (default 20; needs valgrind)
set -eu
cd "$(dirname "$0")/.."
secs=${1:-20}
out=$(mktemp -d /tmp/consultd-callgrind-XXXXXX)
cat > "$out/worker" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.out.%p $PWD/build/consultd-media "\$@"
WRAP
chmod +x "$out/worker"
CONSULTD_MEDIA_BIN="$out/worker" bench/run.py --n 1 --settle 45 --seconds $((secs + 25)) > "$out/run.json" 2>&1 &
run=$!
# Under valgrind the worker takes longer to warm up than the server's 20 s
# offer timeout, so run.py waits 45 s (--settle) before the first request,
# and joins take seconds: count from 70 s after the worker started.
pid=""
for i in $(seq 1 60); do
    pid=$(pgrep -n -f "callgrind-out-file=$out" || true)
    [ -n "$pid" ] && break
    sleep 1
done
[ -n "$pid" ] || { echo "no worker under callgrind" >&2; kill "$run"; exit 1; }
sleep 70
callgrind_control -z "$pid" > /dev/null
sleep "$secs"
callgrind_control -d "$pid" > /dev/null
wait "$run" || true
grep '^{' "$out/run.json" | tail -1 | cut -c1-200
# A profile of a worker that relayed nothing (a refused offer) is no profile.
grep '^{' "$out/run.json" | tail -1 | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["relayed_pps"] < 100)' ||
    { echo "the consultation relayed nothing: not a steady-state profile ($out)" >&2; exit 1; }
python3 bench/callgrind-summary.py "$out"/callgrind.out.*.1 "$secs"
echo "raw data: $out"
