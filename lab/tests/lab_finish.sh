#!/bin/bash
# lab_finish.sh: host-side tests of lablib's result assembly (no VM needed; run by
# scripts/test.sh). Audit hole (issue 16, item 7): a scenario that recorded checks but no
# figure got an empty result.json and PASS, whatever its checks said.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
command -v jq >/dev/null || { echo "lab_finish.sh: jq is missing (apt-get install jq)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LAB_STATE=$work/state DRILL=false
# shellcheck source=../guest/lablib.sh
. "$HERE/guest/lablib.sh"
lab_log() { :; }
passed=0 failed=0
expect() { # NAME WANT_RC WANT_PASSED: run lab_finish in a subshell over $LAB_OUT
    local name=$1 want_rc=$2 want_passed=$3 rc got
    (lab_finish) >/dev/null 2>&1
    rc=$?
    got=$(jq -r '.passed' "$LAB_OUT/result.json" 2>/dev/null)
    if { [ "$want_rc" = 0 ] && [ $rc = 0 ]; } || { [ "$want_rc" != 0 ] && [ $rc != 0 ]; }; then
        if [ "$got" = "$want_passed" ]; then passed=$((passed + 1)); echo "PASS $name"; return; fi
    fi
    failed=$((failed + 1))
    echo "FAIL $name: exit $rc (want $want_rc), passed=$got (want $want_passed)"
    echo "  result.json: $(head -c 300 "$LAB_OUT/result.json" 2>/dev/null)"
}
new_out() { export LAB_OUT=$work/$1 LAB_SCENARIO=$1; mkdir -p "$LAB_OUT"; }

new_out failed-check-without-figures
lab_check first true "fine"
lab_check second false "not fine"
expect "a failed check with no figures fails" 1 false
[ "$(jq '.checks | length' "$LAB_OUT/result.json")" = 2 ] && [ "$(jq -c '.figures' "$LAB_OUT/result.json")" = '{}' ] \
    && { passed=$((passed + 1)); echo "PASS its result.json keeps both checks and empty figures"; } \
    || { failed=$((failed + 1)); echo "FAIL its result.json lost the checks or figures"; }

new_out passing-checks-without-figures
lab_check only true
expect "passing checks with no figures pass" 0 true

new_out no-checks
lab_figure some_figure 1.5 s
expect "a scenario with no check fails" 1 false

new_out figures-and-a-failed-check
lab_figure a 1 s
lab_figure b 2 s
lab_check c false
expect "figures and a failed check fail" 1 false

new_out empty-result-file
: >"$LAB_OUT/result.json"
if lab_result_passed "$LAB_OUT/result.json"; then
    failed=$((failed + 1)); echo "FAIL an empty result.json counted as passed"
else
    passed=$((passed + 1)); echo "PASS an empty result.json is a failure"
fi

new_out timed-out-after-some-checks
lab_check part-a true "fine"
lab_check part-b false "not fine"
lab_figure rpo_s 12.5 s
lab_result_unfinished "$LAB_OUT" "$LAB_SCENARIO" "timed out after 1800s"
if ! lab_result_passed "$LAB_OUT/result.json" &&
    [ "$(jq -c '[.checks[].name]' "$LAB_OUT/result.json")" = '["part-a","part-b","completed"]' ] &&
    [ "$(jq -r '.checks[2].detail' "$LAB_OUT/result.json")" = "timed out after 1800s" ] &&
    [ "$(jq -r '.figures.rpo_s' "$LAB_OUT/result.json")" = 12.5 ]; then
    passed=$((passed + 1)); echo "PASS a timed-out scenario keeps its checks and figures and fails"
else
    failed=$((failed + 1)); echo "FAIL a timed-out scenario: $(head -c 300 "$LAB_OUT/result.json")"
fi

new_out died-before-any-check
lab_result_unfinished "$LAB_OUT" "$LAB_SCENARIO" "scenario ended with status 2"
if ! lab_result_passed "$LAB_OUT/result.json" &&
    [ "$(jq -c '[.checks[].name]' "$LAB_OUT/result.json")" = '["completed"]' ]; then
    passed=$((passed + 1)); echo "PASS a scenario that died before any check fails with one check"
else
    failed=$((failed + 1)); echo "FAIL a scenario that died early: $(head -c 300 "$LAB_OUT/result.json")"
fi

echo "lab_finish: $passed passed, $failed failed"
[ $failed = 0 ]
