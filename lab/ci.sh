#!/bin/bash
# ci.sh: the lab's CI tier. Builds (or reuses) the image, boots the VM once and runs the lab
# smoke test and seed Test 2 (failover) end to end. Fails when the lab cannot boot, the smoke
# scenario fails, or the agent does not recover its mounts. Test 2's timing checks (first
# success within 2 s of server B, window within 1 s of the floor, drill vs agent timeline) are
# printed and kept in result.json but do not fail CI: under emulation on a shared 2-core
# machine they measure the machine as much as nfsha (run lab/run.sh test2-failover to gate on
# them). Results in $LAB_CI_OUT (default /var/tmp/nfsha-lab-ci).
# Budget on 2 cores: ~1 min image build (cached: seconds), ~4 min VM run.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${LAB_CI_OUT:-/var/tmp/nfsha-lab-ci}
rm -rf "$OUT"
"$HERE/run.sh" --out "$OUT" "$@" smoke test2-failover
rc=$?
R=$OUT/test2-failover/result.json
[ -f "$R" ] && "$HERE/summarize.sh" "$R"
if [ $rc = 2 ]; then
    echo "lab CI: FAIL (the lab did not boot or timed out; see $OUT/console.log)"
    exit 2
fi
fail=0
if [ "$(jq -r '.passed' "$OUT/smoke/result.json" 2>/dev/null)" != true ]; then
    echo "lab CI: smoke scenario failed (see $OUT/smoke/timeline.txt)"
    fail=1
fi
for check in nfsha-recovered nfsha-logs-recovered; do
    # Compare the printed value: jq 1.6 -e exits 0 on an empty file.
    if [ "$(jq -r --arg c "$check" '[.checks[] | select(.name == $c and .pass == true)] | length == 1' "$R" 2>/dev/null)" != true ]; then
        echo "lab CI: check $check failed (see $OUT/test2-failover/timeline.txt)"
        fail=1
    fi
done
timing=$(jq -r '[.checks[] | select(.pass != true) | .name] | join(", ")' "$R" 2>/dev/null)
[ -n "$timing" ] && [ $fail = 0 ] && echo "lab CI: timing checks missed on this run (not gating): $timing"
if [ $fail = 0 ]; then echo "lab CI: PASS"; else echo "lab CI: FAIL (see $OUT)"; fi
exit $fail
