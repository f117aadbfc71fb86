#!/bin/bash
# demo.sh: the README's demo. Boots the lab, starts the nfsha agent on client-1 and the
# baselines on client-2..4 (seed setup, autofs alone, the floor), fails server A over to B with
# an access every 100 ms on each, and prints the timelines side by side.
#   lab/demo.sh [--out DIR] [run.sh options...]
# Exit status: that of the scenario (0 when nfsha recovered within the issue's bounds).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$PWD/lab-results/demo-$(date -u +%Y%m%dT%H%M%SZ)
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in --out) OUT=$2; shift 2 ;; *) ARGS+=("$1"); shift ;; esac
done
"$HERE/run.sh" --out "$OUT" "${ARGS[@]}" test2-failover
rc=$?
R=$OUT/test2-failover/result.json
[ -f "$R" ] || { echo "demo: no result (see $OUT/console.log)"; exit "${rc:-2}"; }
"$HERE/summarize.sh" "$R"
echo
echo "full timeline: $OUT/test2-failover/timeline.txt   chart: $OUT/test2-failover/report/timeline.svg"
exit $rc
