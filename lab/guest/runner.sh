#!/bin/bash
# runner.sh: the guest's job runner (started by /init). Sets the lab up once, then runs every
# scenario listed in the share's job/scenarios.tsv (name, file, output dir) in order, each as
# its own process under a timeout, resetting the clients between them; writes out/summary.txt.
# Failure modes: a scenario that times out or dies gets a failing result.json written here,
# with the checks and figures it recorded before (lab_result_unfinished).
export LAB_SHARE=/mnt/host
. /usr/local/lib/nfsha-lab/lablib.sh
[ -f "$LAB_SHARE/job/env" ] && . "$LAB_SHARE/job/env"
mkdir -p "$LAB_SHARE/out"
: >"$LAB_SHARE/out/summary.txt"
lab_log "runner start"
export LAB_OUT=/tmp/boot-out
mkdir -p "$LAB_OUT"
lab_boot
lab_log "lab-ready"
while IFS=$'\t' read -r name file out tmo; do
    [ -n "$name" ] || continue
    dir=$LAB_SHARE/out/$out
    rm -rf "$dir"; mkdir -p "$dir"
    lab_log "scenario-start $name (timeout ${tmo}s)"
    t0=$(date +%s)
    timeout -k 5 "$tmo" bash /usr/local/lib/nfsha-lab/run-scenario.sh "$name" "$LAB_SHARE/$file" "$dir" \
        >"$dir/scenario.log" 2>&1
    rc=$?
    t1=$(date +%s)
    if ! jq -e 'type == "object"' "$dir/result.json" >/dev/null 2>&1 || [ $rc -ge 124 ]; then
        reason="scenario ended with status $rc"
        [ $rc -ge 124 ] && reason="timed out after ${tmo}s"
        lab_result_unfinished "$dir" "$name" "$reason"
        rc=1
    fi
    # PASS needs both: the scenario's exit status and its result.json.
    status=FAIL; [ $rc -eq 0 ] && lab_result_passed "$dir/result.json" && status=PASS
    printf '%s\t%s\t%ss\n' "$name" "$status" "$((t1 - t0))" >>"$LAB_SHARE/out/summary.txt"
    lab_log "scenario-end $name $status $((t1 - t0))s"
    LAB_OUT=$dir lab_clients_destroy
done <"$LAB_SHARE/job/scenarios.tsv"
lab_log "runner done"
