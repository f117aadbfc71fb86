#!/bin/bash
# prepare.sh: host-side preparation for the airflow-failover scenario (called by lab/run.sh for a
# scenario with `# lab-prepare: airflow/prepare.sh`). Builds, once per pin set, in the lab cache:
#   wheelhouse-<key>/    every wheel of lab/airflow/requirements.txt (pip download/wheel, no
#                        dependency resolution: the file pins all of them)
#   airflow-site-<key>/site.tar  those wheels installed with `pip install --target` (byte-compiled),
#                        as one uncompressed tar: the guest unpacks it into its RAM-backed root
#                        (/opt/airflow-site, PYTHONPATH) in one 9p stream. Importing straight
#                        from the 9p share took 106-110 s per `import airflow` under TCG
#                        (one 9p round trip per stat/open); no pip runs under emulation
# key = sha256 of requirements.txt + the host Python's major.minor + machine. The host must have a
# CPython 3.11 with pip (the guest's python3 is bookworm's 3.11, same glibc as the host's build).
# Prints the airflow-site directory on the last line of stdout; exit status non-zero on failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${NFSHA_LAB_CACHE:-/var/cache/nfsha-lab}
PY=${NFSHA_LAB_PYTHON:-python3}
REQ=$HERE/requirements.txt
log() { echo "airflow-prepare: $*" >&2; }
pyver=$("$PY" -c 'import sys, platform; print("%d.%d-%s" % (sys.version_info[0], sys.version_info[1], platform.machine()))')
[ "${pyver%-*}" = 3.11 ] || { log "host $PY is $pyver; the guest runs CPython 3.11 (set NFSHA_LAB_PYTHON)"; exit 1; }
key=$({ cat "$REQ"; echo "$pyver"; } | sha256sum | cut -c1-16)
WH=$CACHE/wheelhouse-$key
SITE=$CACHE/airflow-site-$key
mkdir -p "$CACHE"
if [ -f "$SITE/.complete" ]; then
    log "cached $SITE"
    echo "$SITE"
    exit 0
fi
exec 8>"$CACHE/.airflow.lock"
flock 8
if [ ! -f "$WH/.complete" ]; then
    log "downloading the wheelhouse into $WH (first use)"
    mkdir -p "$WH"
    # Binary wheels where they exist; the few pure-Python sdists (python-nvd3...) are built into
    # wheels on the host. --no-deps: requirements.txt is the complete, pinned set.
    "$PY" -m pip wheel -q --no-deps --prefer-binary -w "$WH" -r "$REQ" >&2
    n=$(grep -c '^[A-Za-z0-9].*==' "$REQ"); have=$(ls "$WH"/*.whl | wc -l)
    [ "$have" -ge "$n" ] || { log "wheelhouse has $have wheels, requirements pin $n"; exit 1; }
    touch "$WH/.complete"
fi
log "installing into $SITE"
rm -rf "$SITE.tmp"
"$PY" -m pip install -q --no-index --no-deps --find-links "$WH" --target "$SITE.tmp" -r "$REQ" >&2
PYTHONPATH=$SITE.tmp "$PY" -c 'import airflow; assert airflow.__version__' >&2
rm -rf "$SITE" "$SITE.pack"
mkdir -p "$SITE.pack"
# bin/ (console scripts with the host interpreter in their shebang) is left out: the guest runs `python3 -m airflow`.
tar -C "$SITE.tmp" --exclude=./bin -cf "$SITE.pack/site.tar" .
rm -rf "$SITE.tmp"
mv "$SITE.pack" "$SITE"
touch "$SITE/.complete"
echo "$SITE"
