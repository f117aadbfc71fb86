# lab-summary: seed 001: two different volumes (source /srv/site1, replica /srv/dest1, read-only until the break), source cut off on its NFS ports; the autofs replica list fails back to the stale source
# lab-timeout: 420
#
# replica-volumes.sh: issue 11, "How it must be shown", the lab bullet — built like the seed.
#
# Topology (rv_setup): nfs-1 exports the *source* volume /srv/site1 (rw, fsid 11), nfs-2 the
# *replica* /srv/dest1 (a copy; exported read-only, fsid 21) — two different export paths on
# two addresses, no floating address, as the seed's 10.1.13.5:/crr-site1 and
# 10.2.13.5:/crr-dest1. "Breaking the replication" (the seed's "Break Peering") re-exports
# /srv/dest1 read-write; the "reverse resync" copies dest1 back onto site1 (rsync, the lab's
# stand-in for ANF's reverse resync, which makes the source a copy of the replica).
# The source is cut off as in the seed: an nft rule in nfs-1 drops TCP/UDP to its NFS ports
# (111 portmapper, 2049 nfs, and the lab's mountd port 20048 — the seed's 635 is ANF's mountd).
#
# Baseline (the seed's own setup, on the last client): autofs with the seed's master line
# `/misc /etc/auto.misc --timeout 10` and map line verbatim but for the addresses:
#   crr -fstype=nfs,rw,nosuid,hard,tcp,timeo=60 SOURCE:/srv/site1 REPLICA:/srv/dest1
# (`-fstype=nfs` negotiates the version: NFSv3 here, as on ANF; `nolock` is added because the
# lab runs no rpc.statd in the clients).
#
# Sequence and what is measured (figures and checks in result.json):
#   1. mount and read through the source; a write works;
#   2. cut the source off (mark source-cut); autofs moves to the replica at the next mount
#      after its 10 s expiry; reads go on, writes fail EROFS (the replica is read-only);
#   3. break the replication (mark replication-broken): a file `peer-broken` is written on the
#      replica;
#   4. the source comes back (mark source-back); autofs mounts it again at its next expiry and
#      `peer-broken` vanishes from the client's view — the seed's own warning, reproduced;
#   5. reverse resync (dest1 → site1), then the file is visible through the source again.
#
# Helpers are inlined (run.sh copies only this file into the share); prefixed rv_.

RV_SRC=$(lab_ip nfs-1)
RV_DST=$(lab_ip nfs-2)
RV_MNT=/misc/crr
RV_NCLIENTS=${RV_NCLIENTS:-1}
RV_BASE=client-$RV_NCLIENTS

# rv_exports NODE PATH FSID rw|ro: write NODE's exports file and re-export.
rv_exports() {
    printf '%s *(%s,sync,no_subtree_check,no_root_squash,insecure,fsid=%s)\n' "$2" "$4" "$3" \
        >"/var/lab/$1/exports"
    lab_on "$1" exportfs -ra
}

rv_setup() {
    lab_setup replica "$RV_NCLIENTS"
    lab_vip_del nfs-1
    lab_vip_del nfs-2
    mkdir -p /srv/site1 /srv/dest1
    lab_on nfs-1 sh -c 'mountpoint -q /srv/site1 || mount --bind /srv/nfs-1 /srv/site1'
    lab_on nfs-2 sh -c 'mountpoint -q /srv/dest1 || mount --bind /srv/nfs-2 /srv/dest1'
    # The replica is a copy of the source (the replication's last transfer).
    rsync -a --delete /srv/nfs-1/ /srv/nfs-2/
    rv_exports nfs-1 /srv/site1 11 rw
    rv_exports nfs-2 /srv/dest1 21 ro
    # The next scenario's lab_setup rebuilds the usual exports.
    echo volumes >"$LAB_STATE/topology"
}

rv_cut_source() {
    ip netns exec nfs-1 nft -f - <<'EOF'
table inet rvcut {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport { 111, 2049, 20048 } drop
        udp dport { 111, 2049, 20048 } drop
    }
}
EOF
    lab_mark source-cut
}
rv_restore_source() { ip netns exec nfs-1 nft delete table inet rvcut 2>/dev/null; lab_mark source-back; }
rv_break_replication() { rv_exports nfs-2 /srv/dest1 21 rw; lab_mark replication-broken; }
# The reverse resync: the source becomes a copy of the replica (what ANF's reverse resync does).
rv_reverse_resync() { rsync -a --delete /srv/nfs-2/ /srv/nfs-1/; lab_mark reverse-resync-done; }

# rv_source CLIENT: the server:export mounted at RV_MNT in CLIENT (empty when nothing is).
rv_source() { lab_on "$1" awk -v m="$RV_MNT" '$2 == m && $3 ~ /^nfs/ {s = $1} END {print s}' /proc/self/mounts; }
# rv_unmounted CLIENT: nothing is mounted at RV_MNT (read from the mount table: no access).
rv_unmounted() { [ -z "$(rv_source "$1")" ]; }
# rv_sees CLIENT FILE: FILE exists under RV_MNT in CLIENT (bounded: a hung mount is "no").
rv_sees() { lab_on "$1" timeout -s KILL 5 test -e "$RV_MNT/$2"; }
# rv_write CLIENT NAME: create, fsync and close RV_MNT/NAME; prints the errno name on failure.
rv_write() {
    local out
    out=$(lab_on "$1" timeout -s KILL 10 python3 -c '
import errno, os, sys
p = sys.argv[1]
try:
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"written during the failover\n"); os.fsync(fd); os.close(fd)
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno)); sys.exit(1)
print("ok")' "$RV_MNT/$2" 2>/dev/null)
    echo "${out:-timeout}"
}

# rv_autofs_start CLIENT: the seed's master and map (addresses substituted).
rv_autofs_start() {
    local c=$1
    cat >"/var/lab/$c/auto.master" <<EOF
/misc   /var/lab/$c/auto.misc --timeout 10
EOF
    cat >"/var/lab/$c/auto.misc" <<EOF
crr -fstype=nfs,rw,nosuid,hard,tcp,timeo=60,nolock $RV_SRC:/srv/site1 $RV_DST:/srv/dest1
EOF
    lab_on "$c" mkdir -p /misc
    lab_bg "$c" "$LAB_OUT/automount-$c.log" setsid automount -f -v "/var/lab/$c/auto.master" >"$LAB_STATE/automount-$c"
    lab_wait 15 lab_on "$c" sh -c "awk '\$2 == \"/misc\" && \$3 == \"autofs\" {f=1} END {exit !f}' /proc/self/mounts" ||
        lab_die "automount in $c did not come up"
}

# rv_wait_source CLIENT PATTERN SECS: until the source mounted at RV_MNT matches PATTERN;
# prints the seconds it took, or "null". autofs only chooses when it mounts, and it expires a
# mount only after 10 s without access: so the mount is left alone while it is there, and
# accessed (which mounts it again) only once autofs has expired it.
rv_wait_source() {
    local c=$1 pat=$2 secs=$3 t0 s
    t0=$(lab_now_ms)
    while [ $(($(lab_now_ms) - t0)) -lt $((secs * 1000)) ]; do
        s=$(rv_source "$c")
        [ -n "$s" ] || { lab_on "$c" timeout -s KILL 30 ls "$RV_MNT" >/dev/null 2>&1; s=$(rv_source "$c"); }
        case $s in $pat) lab_ms_to_s $(($(lab_now_ms) - t0)); return 0 ;; esac
        sleep 1
    done
    echo null
    return 1
}

# ---------------------------------------------------------------- the run
rv_setup
rv_autofs_start "$RV_BASE"
# autofs orders a replicated list without weights by response time, not by position: it may
# take the replica first. Let the mount expire and try again (the seed saw the source first).
tries=0
while :; do
    tries=$((tries + 1))
    t=$(rv_wait_source "$RV_BASE" "$RV_SRC:/srv/site1" 20)
    [ "$t" != null ] || [ $tries -ge 4 ] && break
    lab_wait 40 rv_unmounted "$RV_BASE"
done
lab_figure autofs_mounts_until_on_source "$tries"
lab_figure autofs_first_mount_s "$t" s
lab_check autofs-mounts-the-source "$([ "$t" != null ] && echo 1 || echo 0)" "$(rv_source "$RV_BASE")"
w=$(rv_write "$RV_BASE" before-cut)
lab_check autofs-writes-to-the-source "$([ "$w" = ok ] && echo 1 || echo 0)" "$w"

# The seed's flow: the mount expires (10 s without access) before the outage, so autofs
# chooses again at the next access. (With the mount in place when the source was cut, the
# automount daemon hung in "expiring path /misc/crr" — umount against the dead source — and
# never moved to the replica within 90 s: the first run of this scenario.)
t0=$(lab_now_ms)
if lab_wait 40 rv_unmounted "$RV_BASE"; then
    lab_figure autofs_expired_after_s "$(lab_ms_to_s $(($(lab_now_ms) - t0)))" s
else
    lab_note "autofs did not expire $RV_MNT within 40 s"
fi
rv_cut_source
t=$(rv_wait_source "$RV_BASE" "$RV_DST:/srv/dest1" 90)
lab_figure autofs_on_replica_after_cut_s "$t" s
lab_check autofs-fails-over-to-the-replica "$([ "$t" != null ] && echo 1 || echo 0)" "source now $(rv_source "$RV_BASE")"
w=$(rv_write "$RV_BASE" on-replica-before-break)
lab_figure autofs_write_before_break "$w"
lab_check replica-is-read-only-before-the-break "$([ "$w" = EROFS ] && echo 1 || echo 0)" "write: $w"

rv_break_replication
w=$(rv_write "$RV_BASE" peer-broken)
lab_check replica-is-writable-after-the-break "$([ "$w" = ok ] && echo 1 || echo 0)" "write: $w"

rv_restore_source
# autofs expires the idle mount after 10 s and mounts the list's first entry again.
t=$(rv_wait_source "$RV_BASE" "$RV_SRC:/srv/site1" 90)
lab_figure autofs_back_on_stale_source_s "$t" s
if rv_sees "$RV_BASE" peer-broken; then seen=1; else seen=0; fi
lab_figure autofs_sees_peer_broken_after_source_back "$([ $seen = 1 ] && echo true || echo false)"
lab_check autofs-fails-back-to-the-stale-source "$([ "$t" != null ] && [ $seen = 0 ] && echo 1 || echo 0)" \
    "the seed's hazard: source $(rv_source "$RV_BASE"), peer-broken visible: $seen"

rv_reverse_resync
lab_wait 70 rv_sees "$RV_BASE" peer-broken
lab_check reverse-resync-brings-the-file-back "$(rv_sees "$RV_BASE" peer-broken && echo 1 || echo 0)"
lab_note "baseline: autofs (seed 001 map line) on $RV_BASE; the nfsha clients are in the part below once per-server export paths and the fleet-wide active replica exist"
