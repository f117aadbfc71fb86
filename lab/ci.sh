#!/bin/bash
# ci.sh: the lab's CI tier. Builds (or reuses) the image, boots the VM once and runs the lab
# smoke test and seed Test 2 (failover) end to end. Fails when the lab cannot boot, a scenario
# fails, or the agent does not recover. Results in $LAB_CI_OUT (default /var/tmp/nfsha-lab-ci).
# Budget on 2 cores: ~1 min image build (cached: seconds), ~6 min VM run.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${LAB_CI_OUT:-/var/tmp/nfsha-lab-ci}
rm -rf "$OUT"
"$HERE/run.sh" --out "$OUT" "$@" smoke test2-failover
rc=$?
[ -f "$OUT/test2-failover/result.json" ] && "$HERE/summarize.sh" "$OUT/test2-failover/result.json"
[ $rc = 0 ] && echo "lab CI: PASS" || echo "lab CI: FAIL (status $rc; see $OUT)"
exit $rc
