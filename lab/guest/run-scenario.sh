#!/bin/bash
# run-scenario.sh NAME FILE OUTDIR: run one scenario file (sourced, with lablib loaded and
# LAB_SCENARIO/LAB_OUT set), then lab_finish; exit 0 only when every check passed.
# Failure modes: a scenario that records no check fails (lab_finish requires at least one).
export LAB_SHARE=${LAB_SHARE:-/mnt/host}
export LAB_SCENARIO=$1 LAB_OUT=$3
. /usr/local/lib/nfsha-lab/lablib.sh
[ -f "$LAB_SHARE/job/env" ] && . "$LAB_SHARE/job/env"
lab_log "running $LAB_SCENARIO from $2"
. "$2"
lab_finish
