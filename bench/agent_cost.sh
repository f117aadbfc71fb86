#!/usr/bin/env bash
# bench/agent_cost.sh — what keeping N mounts watched every second costs:
# the release-built `nfsha agent` (plus its probe worker processes) versus the seed's
# bash health check (seed 000, Step 3.1: `timeout 5 ls` per mount), both over the SAME
# N FUSE mountpoints. A benchmark, not a test: it asserts nothing about speed.
#
# Setup: ONE FaultFs (FUSE stand-in for an NFS mount, healthy) is bind-mounted onto
# 100 and then 1,000 mountpoints, so a single FUSE server answers every access. It all
# runs in a private mount namespace (unshare -m), so no other process on the host sees
# the 1,000 mounts and everything vanishes when the script ends.
#
# For each N:
#   agent: `nfsha agent` with N mounts (mode autofs, probe_interval 1s, deadline 2s);
#          after a warm-up, CPU = delta of utime+stime(+cutime+cstime) of the agent and
#          every live descendant (its workers) from /proc over DURATION seconds of wall
#          time; RSS = sum of the agent's and workers' RSS, sampled every second.
#          Also: probes/s actually made (from /metrics) and the cost of one scrape.
#   seed:  the seed's script, made to loop over the same N mountpoints, with its
#          `umount -a -t nfs,nfs4` line replaced by a no-op log line, started once per
#          second (systemd-timer semantics: a tick that falls while a run is still going
#          is skipped) for DURATION seconds; CPU from the driver's /proc stat after all
#          its children are reaped (cutime/cstime carry every bash, timeout and ls);
#          RSS = sum over the driver's process tree, sampled every 0.5 s.
#          The seed really runs every 30 s: its per-run cost is also given at that cadence.
#
# Writes bench/results/agent_cost.json and bench/results/agent_cost.md.
#
# Needs: root, /dev/fuse (apt-get install fuse3), jq, curl, util-linux (unshare), procps,
# and a release build:
#   cargo build --release -p nfsha --bin nfsha --example faultfs_mount
# Env: CARGO_TARGET_DIR (where the build is; default ./target), DURATION (s, default 60),
#      WARMUP (s, default 5), COUNTS (default "100 1000"), OUT (default bench/results).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
NFSHA=${NFSHA:-$TARGET_DIR/release/nfsha}
FAULTFS=${FAULTFS:-$TARGET_DIR/release/examples/faultfs_mount}
DURATION=${DURATION:-60}
WARMUP=${WARMUP:-5}
COUNTS=${COUNTS:-"100 1000"}
OUT=${OUT:-$HERE/results}
# The seed document (shared/seeds beside the repo), else the repo's copy of its Step 3.1.
SEED=${SEED:-$(ls "$HERE"/../../shared/seeds/000_*.txt 2>/dev/null | head -n1 || true)}
SEED=${SEED:-$HERE/seed-000-step-3.1.md}

die() { echo "agent_cost.sh: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (FUSE and bind mounts)"
[[ -e /dev/fuse ]] || die "needs /dev/fuse: modprobe fuse; apt-get install fuse3"
for t in jq curl unshare ps timeout; do
    command -v "$t" >/dev/null || die "needs $t (apt-get install jq curl util-linux procps coreutils)"
done
[[ -x $NFSHA ]] || die "no release nfsha at $NFSHA: cargo build --release -p nfsha --bin nfsha --example faultfs_mount"
[[ -x $FAULTFS ]] || die "no faultfs_mount example at $FAULTFS: cargo build --release -p nfsha --example faultfs_mount"
[[ -n $SEED && -r $SEED ]] || die "seed 000 not found (set SEED=/path/to/000_*.txt)"

# Re-run inside a private mount namespace.
if [[ ${NFSHA_BENCH_IN_NS:-} != 1 ]]; then
    export NFSHA_BENCH_IN_NS=1 NFSHA FAULTFS DURATION WARMUP COUNTS OUT SEED
    exec unshare --mount --propagation private "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

TICKS=$(getconf CLK_TCK)
PAGE_KB=$(( $(getconf PAGESIZE) / 1024 ))
W=$(mktemp -d /tmp/nfsha-bench.XXXXXX)
mkdir -p "$OUT" "$W/src" "$W/m"
echo "work dir $W (private mount namespace)"

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# utime+stime+cutime+cstime (clock ticks) of one process; 0 if it is gone.
cpu_ticks() {
    local s
    { s=$(<"/proc/$1/stat"); } 2>/dev/null || { echo 0; return; }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $(( ${12} + ${13} + ${14} + ${15} ))
}

# "self children": utime+stime and cutime+cstime (clock ticks) of one process.
cpu_parts() {
    local s
    { s=$(<"/proc/$1/stat"); } 2>/dev/null || { echo "0 0"; return; }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo "$(( ${12} + ${13} )) $(( ${14} + ${15} ))"
}

# Every live descendant of $1 (not $1 itself).
descendants() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            found[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; changed = 1 }
            }
            for (p in found) if (p != root) print p
        }'
}

# CPU ticks of $1 and all its live descendants: each bit of CPU counted once (a reaped
# child's time is in its parent's cutime/cstime, a live one's in its own utime/stime).
tree_cpu_ticks() {
    local total pid
    total=$(cpu_ticks "$1")
    for pid in $(descendants "$1"); do total=$(( total + $(cpu_ticks "$pid") )); done
    echo "$total"
}

# Memory of $1 plus all its live descendants: "rss_kib pss_kib processes". RSS sums
# count the pages the processes share (the same binary, libc) once per process; PSS
# (smaps_rollup) splits shared pages between their users, so it sums fairly.
tree_mem_kb() {
    local pid rss pss kb=0 p=0 n=0
    for pid in "$1" $(descendants "$1"); do
        { read -r rss pss < <(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { if (r != "") print r, p }' \
            "/proc/$pid/smaps_rollup"); } 2>/dev/null || continue
        [[ -n ${rss:-} ]] || continue
        kb=$(( kb + rss )); p=$(( p + pss )); n=$(( n + 1 ))
    done
    echo "$kb $p $n"
}

# --- One FaultFs, served by the example until its stdin closes.
coproc FFS { exec "$FAULTFS" "$W/src"; }
read -r ready conn <&"${FFS[0]}" || die "faultfs_mount did not start"
[[ $ready == ready ]] || die "faultfs_mount said: $ready $conn"
FFS_PID_SAVED=$FFS_PID
echo "FaultFs mounted on $W/src (fuse connection $conn)"

BOUND=0
cleanup() {
    set +e
    [[ -n ${AGENT_PID:-} ]] && kill -KILL "$AGENT_PID" 2>/dev/null
    for (( i = BOUND; i >= 1; i-- )); do umount -l "$W/m/$i" 2>/dev/null; done
    [[ -n ${FFS[1]:-} ]] && eval "exec ${FFS[1]}>&-"
    wait "$FFS_PID_SAVED" 2>/dev/null
    umount -l "$W/src" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

bind_up_to() {
    local n=$1
    while (( BOUND < n )); do
        BOUND=$(( BOUND + 1 ))
        mkdir -p "$W/m/$BOUND"
        mount --bind "$W/src" "$W/m/$BOUND"
    done
}

free_port() {
    local p
    for p in $(seq 29848 29948); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free port in 29848-29948"
}

probes_ok_total() {
    curl -fsS "http://127.0.0.1:$1/metrics" \
        | awk '/^nfsha_probes_total\{.*result="ok"/ { s += $NF } END { printf "%d\n", s }'
}

# --- The agent over N mounts. Prints one JSON object.
measure_agent() {
    local n=$1 cfg="$W/agent-$n.toml" port i c0 c1 t0 t1 p0 p1 healthy=0
    port=$(free_port)
    {
        printf '[agent]\ncontrol_socket = "%s"\nlisten = "127.0.0.1:%s"\nevent_log = "%s"\n\n' \
            "$W/agent-$n.sock" "$port" "$W/events-$n.jsonl"
        printf '[defaults]\nmode = "autofs"\nprobe_interval = "1s"\nprobe_deadline = "2s"\n'
        for (( i = 1; i <= n; i++ )); do
            printf '\n[[mount]]\nmountpoint = "%s"\nexport = "/srv/bench/%d"\nservers = ["127.0.0.1"]\n' "$W/m/$i" "$i"
        done
    } >"$cfg"
    "$NFSHA" agent --config "$cfg" 2>"$W/agent-$n.log" &
    AGENT_PID=$!
    for (( i = 0; i < 120; i++ )); do
        healthy=$("$NFSHA" status --json --config "$cfg" 2>/dev/null \
            | jq '[.mounts[] | select(.state == "healthy")] | length' 2>/dev/null || echo 0)
        (( healthy == n )) && break
        sleep 0.5
    done
    (( healthy == n )) || die "agent: only $healthy of $n mounts healthy after 60 s (log: $W/agent-$n.log)"
    sleep "$WARMUP"
    local rss_sum=0 rss_max=0 pss_sum=0 pss_max=0 samples=0 procs_sum=0 procs_max=0 kb pk np
    local s0 r0 s1 r1
    p0=$(probes_ok_total "$port"); c0=$(tree_cpu_ticks "$AGENT_PID"); t0=$(now_us)
    read -r s0 r0 < <(cpu_parts "$AGENT_PID")
    while (( $(now_us) - t0 < DURATION * 1000000 )); do
        read -r kb pk np < <(tree_mem_kb "$AGENT_PID")
        rss_sum=$(( rss_sum + kb )); pss_sum=$(( pss_sum + pk )); samples=$(( samples + 1 ))
        procs_sum=$(( procs_sum + np ))
        (( kb > rss_max )) && rss_max=$kb
        (( pk > pss_max )) && pss_max=$pk
        (( np > procs_max )) && procs_max=$np
        sleep 1
    done
    c1=$(tree_cpu_ticks "$AGENT_PID"); t1=$(now_us); p1=$(probes_ok_total "$port")
    read -r s1 r1 < <(cpu_parts "$AGENT_PID")
    # Scrape cost: three timed GET /metrics.
    local scrape_ms scrape_bytes
    read -r scrape_ms scrape_bytes < <(for i in 1 2 3; do
        curl -fsS -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$port/metrics"
    done | awk '{ t += $1; b = $2 } END { printf "%.2f %d\n", t / NR * 1000, b }')
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
    local workers stuck
    workers=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^nfsha_probe_workers_live /{print $2}')
    stuck=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^nfsha_probe_workers_stuck /{print $2}')
    kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || true; AGENT_PID=
    jq -n --argjson n "$n" --argjson ticks "$(( c1 - c0 ))" --argjson hz "$TICKS" \
        --argjson wall_us "$(( t1 - t0 ))" --argjson probes "$(( p1 - p0 ))" \
        --argjson rss_sum "$rss_sum" --argjson samples "$samples" --argjson rss_max "$rss_max" \
        --argjson pss_sum "$pss_sum" --argjson pss_max "$pss_max" --argjson procs_sum "$procs_sum" \
        --argjson procs_max "$procs_max" --argjson scrape_ms "$scrape_ms" \
        --argjson scrape_bytes "$scrape_bytes" --argjson healthz "$code" \
        --argjson workers "${workers:-0}" --argjson stuck "${stuck:-0}" \
        --argjson self_ticks "$(( s1 - s0 ))" --argjson reaped_ticks "$(( r1 - r0 ))" '
        ($wall_us / 1e6) as $wall | ($ticks / $hz) as $cpu |
        { mounts: $n, wall_s: $wall, cpu_s: $cpu,
          cpu_percent_of_one_core: (100 * $cpu / $wall),
          cpu_percent_agent_process: (100 * $self_ticks / $hz / $wall),
          cpu_percent_reaped_workers: (100 * $reaped_ticks / $hz / $wall),
          cpu_ms_per_mount_probe: (if $probes > 0 then 1000 * $cpu / $probes else null end),
          probes_ok: $probes, probes_per_s: ($probes / $wall),
          rss_mib_mean: ($rss_sum / $samples / 1024), rss_mib_max: ($rss_max / 1024),
          pss_mib_mean: ($pss_sum / $samples / 1024), pss_mib_max: ($pss_max / 1024),
          processes_mean: ($procs_sum / $samples), processes_max: $procs_max, workers_live_at_end: $workers, workers_stuck_at_end: $stuck,
          scrape_ms_mean: $scrape_ms, scrape_bytes: $scrape_bytes, healthz_at_end: $healthz }'
}

# --- The seed's script over N mounts.
seed_script() {
    local n=$1 out=$2 i list=""
    for (( i = 1; i <= n; i++ )); do list+=" \"$W/m/$i\""; done
    # The script exactly as seed 000 Step 3.1 gives it ...
    awk '/^#### Step 3.1/ { s = 1 } s && /^```bash$/ { b++; if (b == 2) { p = 1; next } }
         p && /^```$/ { exit } p { print }' "$SEED" >"$out.orig"
    grep -q 'timeout "$CHECK_TIMEOUT" ls "$path"' "$out.orig" || die "seed script not found in $SEED"
    # ... looping over the bench's mountpoints, logging under the work dir, and unable to
    # unmount anything (the `umount -a` line becomes a log line).
    sed -e "s|^MOUNTS=(.*)|MOUNTS=($list )|" \
        -e "s|^LOG_FILE=.*|LOG_FILE=\"$W/nfs-health-check.log\"|" \
        -e 's|^\( *\)sudo umount -a -t nfs,nfs4.*|\1log "bench: umount -a -t nfs,nfs4 disabled"|' \
        "$out.orig" >"$out"
    grep -q 'umount -a -t nfs,nfs4 disabled' "$out" || die "could not neutralise umount -a"
    grep -q '^MOUNTS=(.*m/1"' "$out" || die "could not set MOUNTS"
    if grep -v '^ *#' "$out" | grep -q 'sudo umount'; then die "umount still live in $out"; fi
}

# Start the script once per second for $2 seconds (a tick falling during a run is
# skipped, like a systemd timer); write "runs skipped sum_us max_us cpu_ticks wall_us".
seed_driver() {
    local script=$1 dur_us=$(( $2 * 1000000 )) res=$3 me=$BASHPID
    local start end next a b d runs=0 skipped=0 sum=0 max=0
    start=$(now_us); end=$(( start + dur_us )); next=$start
    while (( $(now_us) < end )); do
        a=$(now_us); bash "$script"; b=$(now_us)
        d=$(( b - a )); runs=$(( runs + 1 )); sum=$(( sum + d )); (( d > max )) && max=$d
        next=$(( next + 1000000 ))
        while (( next <= b )); do next=$(( next + 1000000 )); skipped=$(( skipped + 1 )); done
        (( next >= end )) && break
        d=$(( next - b ))
        sleep "$(printf '%d.%06d' $(( d / 1000000 )) $(( d % 1000000 )))"
    done
    b=$(now_us)
    echo "$runs $skipped $sum $max $(cpu_ticks "$me") $(( b - start ))" >"$res"
}

measure_seed() {
    local n=$1 script="$W/nfs-health-check-$n.sh" res="$W/seed-$n.res"
    seed_script "$n" "$script"
    bash "$script" # one run first: the log must say all healthy
    tail -n1 "$W/nfs-health-check.log" | grep -q "All NFS mounts healthy" \
        || die "seed check does not see $n healthy mounts: $(tail -n1 "$W/nfs-health-check.log")"
    seed_driver "$script" "$DURATION" "$res" &
    local drv=$! rss_sum=0 rss_max=0 pss_sum=0 pss_max=0 samples=0 kb pk np procs_max=0
    while kill -0 "$drv" 2>/dev/null; do
        read -r kb pk np < <(tree_mem_kb "$drv")
        if (( np > 0 )); then
            rss_sum=$(( rss_sum + kb )); pss_sum=$(( pss_sum + pk )); samples=$(( samples + 1 ))
            (( kb > rss_max )) && rss_max=$kb
            (( pk > pss_max )) && pss_max=$pk
            (( np > procs_max )) && procs_max=$np
        fi
        sleep 0.5
    done
    wait "$drv"
    local runs skipped sum max ticks wall
    read -r runs skipped sum max ticks wall <"$res"
    grep -q "ERROR" "$W/nfs-health-check.log" && die "the seed check saw a failure during the bench"
    jq -n --argjson n "$n" --argjson runs "$runs" --argjson skipped "$skipped" \
        --argjson sum_us "$sum" --argjson max_us "$max" --argjson ticks "$ticks" --argjson hz "$TICKS" \
        --argjson wall_us "$wall" --argjson rss_sum "$rss_sum" --argjson samples "$samples" \
        --argjson rss_max "$rss_max" --argjson procs_max "$procs_max" \
        --argjson pss_sum "$pss_sum" --argjson pss_max "$pss_max" '
        ($wall_us / 1e6) as $wall | ($ticks / $hz) as $cpu | ($cpu / $runs) as $per_run |
        ($sum_us / $runs / 1e6) as $run_s | ($rss_sum / $samples / 1024) as $rss_mean |
        ($pss_sum / $samples / 1024) as $pss_mean |
        { mounts: $n, wall_s: $wall, runs: $runs, ticks_skipped_run_overran: $skipped,
          run_s_mean: $run_s, run_s_max: ($max_us / 1e6),
          cpu_s: $cpu, cpu_s_per_run: $per_run,
          cpu_percent_of_one_core: (100 * $cpu / $wall),
          rss_mib_mean: $rss_mean, rss_mib_max: ($rss_max / 1024),
          pss_mib_mean: $pss_mean, pss_mib_max: ($pss_max / 1024), processes_max: $procs_max,
          every_30s: { cpu_percent_of_one_core: (100 * $per_run / 30),
                       pss_mib_time_averaged: ($pss_mean * ([$run_s, 30] | min) / 30),
                       pss_mib_peak: ($pss_max / 1024),
                       worst_detection_s: (30 + 5) } }'
}

RESULTS="[]"
for n in $COUNTS; do
    bind_up_to "$n"
    echo "== $n mounts: nfsha agent, ${DURATION}s after ${WARMUP}s warm-up"
    agent=$(measure_agent "$n")
    echo "$agent" | jq -c '{cpu_percent_of_one_core, cpu_percent_agent_process, cpu_percent_reaped_workers, pss_mib_mean, rss_mib_mean, processes_mean, probes_per_s, scrape_ms_mean}'
    echo "== $n mounts: seed bash check once per second, ${DURATION}s"
    seed=$(measure_seed "$n")
    echo "$seed" | jq -c '{cpu_percent_of_one_core, cpu_s_per_run, pss_mib_mean, rss_mib_mean, runs, run_s_mean, ticks_skipped_run_overran}'
    RESULTS=$(jq -n --argjson r "$RESULTS" --argjson a "$agent" --argjson s "$seed" '
        $r + [{ mounts: $a.mounts, agent: $a, seed_check_every_1s: $s,
                ratios: (def div(a; b): if b > 0 then a / b else null end;
                         { seed_1s_cpu_over_agent_cpu: div($s.cpu_percent_of_one_core; $a.cpu_percent_of_one_core),
                           seed_30s_cpu_over_agent_cpu: div($s.every_30s.cpu_percent_of_one_core; $a.cpu_percent_of_one_core),
                           agent_pss_over_seed_1s_pss: div($a.pss_mib_mean; $s.pss_mib_mean),
                           agent_pss_over_seed_peak_pss: div($a.pss_mib_mean; $s.pss_mib_max),
                           agent_rss_over_seed_1s_rss: div($a.rss_mib_mean; $s.rss_mib_mean) }) }]')
done

jq -n --argjson results "$RESULTS" --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" \
    --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg date "$(date -u +%FT%TZ)" \
    --arg version "$("$NFSHA" --version)" --argjson duration "$DURATION" --argjson hz "$TICKS" '
    { benchmark: "agent_cost", date: $date, nfsha: $version,
      machine: { nproc: $nproc, kernel: $kernel, cpu: $cpu, loadavg_at_end: $load,
                 note: "shared VM: other jobs ran at the same time; CPU is per-process utime+stime, so it is little affected, wall-clock run times are" },
      method: { duration_s: $duration, clock_ticks_per_s: $hz,
                mounts: "one FaultFs (FUSE, healthy) bind-mounted N times in a private mount namespace",
                agent: "release nfsha agent, mode autofs, probe_interval 1s, probe_deadline 2s; CPU = utime+stime(+reaped children) of the agent and its live workers, delta over the window after warm-up; RSS = agent + workers, sampled every 1 s",
                seed: "seed 000 Step 3.1 script verbatim except MOUNTS (the N mountpoints), LOG_FILE (work dir) and its umount -a line (a no-op log line); started every 1 s, a tick during a run is skipped; CPU from the driver incl. all reaped children; RSS = driver process tree, sampled every 0.5 s",
                seed_real_cadence: "the seed runs it from a systemd timer every 30 s (OnUnitActiveSec=30s); every_30s = per-run cost spread over 30 s, and detection takes up to 30 s + its 5 s timeout",
                not_counted: "the FUSE server (same for both), the systemd timer itself" },
      results: $results }' >"$OUT/agent_cost.json"

JQ_DEFS='def r(n): if . == null then "n/a" else (. * pow(10; n) | round / pow(10; n) | tostring) end;'

{
    echo "| mounts | nfsha agent CPU | agent PSS (RSS) | processes | seed check @1 s CPU | seed @1 s PSS mean / peak | seed run time | seed @30 s CPU | CPU seed@1s / agent | CPU seed@30s / agent | agent probes/s | /metrics scrape |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    jq -r "$JQ_DEFS"' .results[] | .agent as $a | .seed_check_every_1s as $s |
        "| \(.mounts) | \($a.cpu_percent_of_one_core | r(2))% | \($a.pss_mib_mean | r(1)) MiB (\($a.rss_mib_mean | r(1))) | \($a.processes_mean | r(1)) | \($s.cpu_percent_of_one_core | r(1))% | \($s.pss_mib_mean | r(1)) / \($s.pss_mib_max | r(1)) MiB | \($s.run_s_mean | r(2)) s (\($s.ticks_skipped_run_overran) ticks skipped) | \($s.every_30s.cpu_percent_of_one_core | r(2))% | \(.ratios.seed_1s_cpu_over_agent_cpu | r(1))x | \(.ratios.seed_30s_cpu_over_agent_cpu | r(2))x | \($a.probes_per_s | r(0)) | \($a.scrape_ms_mean) ms, \($a.scrape_bytes / 1024 | r(0)) KiB |"' "$OUT/agent_cost.json"
    echo
    jq -r '"CPU: % of one core, utime+stime from /proc per second of wall time (agent: agent + probe workers; seed: every bash, timeout and ls it starts). PSS: proportional set size summed over those processes (RSS double-counts the binary pages they share). \(.machine.nproc) vCPUs, kernel \(.machine.kernel), \(.method.duration_s) s per measurement, one FUSE server behind every mount (bind mounts). The seed check really runs every 30 s (and detects a failure after up to 35 s); at 1 s it is what it would cost to match the agent'"'"'s detection cadence."' "$OUT/agent_cost.json"
} >"$OUT/agent_cost.md"

echo
echo "== side by side (CPU % of one core; PSS MiB)"
jq -r "$JQ_DEFS"' .results[] | .agent as $a | .seed_check_every_1s as $s |
    "\(.mounts) mounts: agent \($a.cpu_percent_of_one_core | r(2))% / \($a.pss_mib_mean | r(1)) MiB | seed@1s \($s.cpu_percent_of_one_core | r(1))% / \($s.pss_mib_mean | r(1)) MiB | seed@30s \($s.every_30s.cpu_percent_of_one_core | r(2))% | CPU ratio seed@1s/agent \(.ratios.seed_1s_cpu_over_agent_cpu | r(1))x, seed@30s/agent \(.ratios.seed_30s_cpu_over_agent_cpu | r(2))x | PSS ratio agent/seed@1s \(.ratios.agent_pss_over_seed_1s_pss | r(1))x"' "$OUT/agent_cost.json"
echo "wrote $OUT/agent_cost.json and $OUT/agent_cost.md"
