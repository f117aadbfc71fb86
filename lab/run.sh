#!/bin/bash
# run.sh: boot the NFS lab VM once and run scenarios in it (batch), collecting results.
#
#   lab/run.sh [options] SCENARIO...     SCENARIO = built-in name (lab/scenarios/NAME.sh) or a file path
#   lab/run.sh --list                    list built-in scenarios
#   lab/run.sh --shell                   boot to an interactive guest shell (lab.shell)
# Options:
#   --out DIR                 results folder (default ./lab-results/<timestamp>)
#   --timeout SECS            outer timeout for the whole VM run (default: sum of scenario timeouts + 180)
#   --scenario-timeout SECS   per-scenario timeout (default: the scenario's `# lab-timeout:` header, else 300)
#   --nfsha BIN               use this nfsha binary instead of `cargo build --release -p nfsha`
#                             (NFSHA_DRILL_BIN likewise for the standalone nfsha-drill)
#   --deb FILE                put FILE (a .deb) in the share; scenarios get LAB_DEB=<its guest path>
#   --env K=V                 export K=V to every scenario (repeatable)
#   --smp N / --mem MB        VM size (default 2 / 1280)
#   --kernel 6.1|6.12         guest kernel: Debian 12's 6.1 (default) or its 6.12 package
# Output: DIR/<scenario>/{result.json,timeline.txt,report/...}, DIR/summary.txt, DIR/console.log.
# Exit status: 0 only when every scenario passed; 2 when the lab could not boot or timed out.
# qemu is ended by its own PID (never by name).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=""
TIMEOUT=""
SC_TIMEOUT=""
NFSHA_BIN=${NFSHA_BIN:-}
DEB=""
SMP=${LAB_SMP:-2}
MEM=${LAB_MEM:-1280}
SHELL_MODE=0
MEM_SET=0
ENVS=()
SCEN=()

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --scenario-timeout) SC_TIMEOUT=$2; shift 2 ;;
        --nfsha) NFSHA_BIN=$2; shift 2 ;;
        --deb) DEB=$2; shift 2 ;;
        --env) ENVS+=("$2"); shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --mem) MEM=$2; MEM_SET=1; shift 2 ;;
        --kernel) export NFSHA_LAB_KERNEL=$2; shift 2 ;;
        --shell) SHELL_MODE=1; shift ;;
        --list)
            for f in "$HERE"/scenarios/*.sh; do
                printf '%-22s %s\n' "$(basename "$f" .sh)" "$(sed -n 's/^# lab-summary: //p' "$f")"
            done
            exit 0 ;;
        -h | --help) usage; exit 0 ;;
        demo) shift; exec "$HERE/demo.sh" "$@" ;;
        *) SCEN+=("$1"); shift ;;
    esac
done
[ ${#SCEN[@]} -gt 0 ] || [ $SHELL_MODE = 1 ] || { usage >&2; exit 64; }

say() { echo "lab: $*" >&2; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; } >&2

# Scenario files first: their headers can add packages, memory and host-side preparation.
SCEN_FILES=()
for s in "${SCEN[@]}"; do
    if [ -f "$s" ]; then f=$s; elif [ -f "$HERE/scenarios/$s.sh" ]; then f=$HERE/scenarios/$s.sh; else
        say "no scenario $s (not a file, not built in; see --list)"; exit 64
    fi
    SCEN_FILES+=("$f")
done
hdr() { sed -n "s/^# $1: *//p" "${SCEN_FILES[@]}" /dev/null; }
extra=$(hdr lab-packages | tr -s ', \n' ',' | sed 's/^,//; s/,$//')
if [ -n "$extra" ]; then
    export NFSHA_LAB_EXTRA_PACKAGES=${NFSHA_LAB_EXTRA_PACKAGES:+$NFSHA_LAB_EXTRA_PACKAGES,}$extra
fi
if [ $MEM_SET = 0 ]; then
    for m in $(hdr lab-mem | tr -cd '0-9\n'); do [ "$m" -gt "$MEM" ] && MEM=$m; done
fi
IMAGE=$("$HERE/build-image.sh" | tail -1) || { say "image build failed"; exit 2; }
PREP=()
for p in $(hdr lab-prepare | sort -u); do
    say "host preparation: $p"
    d=$("$HERE/$p" | tail -1) && [ -d "$d" ] || { say "host preparation $p failed"; exit 2; }
    PREP+=("$d")
done
TDIR=${CARGO_TARGET_DIR:-$REPO/target}/release
DRILL_BIN=${NFSHA_DRILL_BIN:-}
if [ -z "$DRILL_BIN" ]; then
    (cd "$REPO" && cargo build --release -p nfsha-drill -q) >&2 || { say "cargo build -p nfsha-drill failed"; exit 2; }
    DRILL_BIN=$TDIR/nfsha-drill
fi
if [ -z "$NFSHA_BIN" ]; then
    say "building nfsha (release)"
    if (cd "$REPO" && cargo build --release -p nfsha -q) >&2; then
        NFSHA_BIN=$TDIR/nfsha
    else
        say "WARNING: nfsha does not build: scenarios run without the agent (its checks will fail)"
    fi
fi

OUT=${OUT:-$PWD/lab-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SHARE=$(mktemp -d /var/tmp/nfsha-lab-share.XXXXXX)
QPID=""
cleanup() {
    [ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null
    rm -rf "$SHARE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$SHARE/bin" "$SHARE/scenarios" "$SHARE/job" "$SHARE/out" "$SHARE/prep"
for d in "${PREP[@]}"; do
    cp -al "$d" "$SHARE/prep/" 2>/dev/null || { rm -rf "${SHARE:?}/prep/$(basename "$d")"; cp -a "$d" "$SHARE/prep/"; }
done
mkdir -p "$SHARE/files"
for d in $(hdr lab-files | sort -u); do
    [ -d "$HERE/$d" ] && cp -a "$HERE/$d" "$SHARE/files/" || { say "lab-files $d: no directory lab/$d"; exit 2; }
done
[ -n "$NFSHA_BIN" ] && cp "$NFSHA_BIN" "$SHARE/bin/nfsha"
cp "$DRILL_BIN" "$SHARE/bin/nfsha-drill"
if [ -n "$DEB" ]; then
    cp "$DEB" "$SHARE/bin/nfsha.deb"
    ENVS+=("LAB_DEB=/mnt/host/bin/nfsha.deb")
fi
: >"$SHARE/job/scenarios.tsv"
total_tmo=0
for f in "${SCEN_FILES[@]}"; do
    name=$(basename "$f" .sh)
    tmo=${SC_TIMEOUT:-$(sed -n 's/^# lab-timeout: *\([0-9]*\).*/\1/p' "$f" | head -1)}
    tmo=${tmo:-300}
    total_tmo=$((total_tmo + tmo))
    cp "$f" "$SHARE/scenarios/$name.sh"
    printf '%s\tscenarios/%s.sh\t%s\t%s\n' "$name" "$name" "$name" "$tmo" >>"$SHARE/job/scenarios.tsv"
done
for e in "${ENVS[@]}"; do printf 'export %q\n' "$e" >>"$SHARE/job/env"; done
TIMEOUT=${TIMEOUT:-$((total_tmo + 180))}

APPEND="console=ttyS0 quiet panic=-1"
[ $SHELL_MODE = 1 ] && APPEND="$APPEND lab.shell"
QEMU=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" -nodefaults
    -nographic -no-reboot -nic none -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/lab.cpio"
    -virtfs "local,path=$SHARE,mount_tag=host0,security_model=none,id=host0"
    -append "$APPEND")
if [ $SHELL_MODE = 1 ]; then
    "${QEMU[@]}" -serial mon:stdio
    exit $?
fi

say "booting (${#SCEN[@]} scenario(s), outer timeout ${TIMEOUT}s, results in $OUT)"
START=$(date +%s)
"${QEMU[@]}" -serial "file:$OUT/console.log" </dev/null >"$OUT/qemu.log" 2>&1 &
QPID=$!
seen=0
timed_out=0
while kill -0 "$QPID" 2>/dev/null; do
    if [ $(($(date +%s) - START)) -ge "$TIMEOUT" ]; then
        say "outer timeout ${TIMEOUT}s: killing qemu (pid $QPID)"
        kill -TERM "$QPID" 2>/dev/null; sleep 2; kill -KILL "$QPID" 2>/dev/null
        timed_out=1
        break
    fi
    if [ -f "$OUT/console.log" ]; then
        n=$(grep -c '^LAB: ' "$OUT/console.log" 2>/dev/null || true)
        if [ "${n:-0}" -gt $seen ]; then
            grep '^LAB: ' "$OUT/console.log" | sed -n "$((seen + 1)),${n}p" | sed "s/^/[$(($(date +%s) - START))s] /" >&2
            seen=$n
        fi
    fi
    sleep 1
done
wait "$QPID" 2>/dev/null
QPID=""
WALL=$(($(date +%s) - START))
cp -a "$SHARE/out/." "$OUT/"
# The timeline charts as PNG too (for CI artifacts and for looking at them).
if command -v rsvg-convert >/dev/null; then
    for svg in "$OUT"/*/report/timeline.svg; do
        [ -f "$svg" ] && rsvg-convert -w 1600 -b white "$svg" -o "${svg%.svg}.png" 2>/dev/null
    done
fi
echo "wall_seconds=$WALL" >"$OUT/run-info.txt"
echo "image=$IMAGE" >>"$OUT/run-info.txt"
grep -o 'LAB: \[[0-9.]*\] lab-ready' "$OUT/console.log" | head -1 | sed 's/LAB: \[\(.*\)\] lab-ready/lab_ready_uptime=\1/' >>"$OUT/run-info.txt"
say "VM finished after ${WALL}s"
[ -s "$OUT/summary.txt" ] && column -t "$OUT/summary.txt" >&2
[ $timed_out = 1 ] && exit 2
grep -q 'lab-ready' "$OUT/console.log" 2>/dev/null || { say "the lab did not boot (see $OUT/console.log)"; exit 2; }
rc=0
for s in "${SCEN[@]}"; do
    name=$(basename "$s" .sh)
    if ! [ "$(jq -r '.passed' "$OUT/$name/result.json" 2>/dev/null)" = true ]; then rc=1; fi
done
exit $rc
