# lab-summary: seed 001: two different volumes (source /srv/site1, replica /srv/dest1, read-only until the break), source cut off on its NFS ports; the autofs replica list fails back to the stale source; three nfsha agents following one active replica in etcd do not
# lab-timeout: 720
# lab-packages: etcd-server
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
# Then the same with three nfsha agents following one record in etcd ([mount.fleet]): one
# promote, every client on the replica, never back on its own (source returns, agent
# restart, simulated reboot); a failback before the reverse resync is refused by the
# resync check; after it `nfsha replica failback crr --to SOURCE --resynced` brings every
# client back with nothing lost.
#
# RV_NFS_VERSION (default 3, the seed's negotiated version; or 4.1) sets the version of the
# agents' mounts and of the autofs map (`-fstype=nfs` alone for 3, `vers=4.1` added for 4.1):
#   lab/run.sh --env RV_NFS_VERSION=4.1 replica-volumes
#
# Helpers are inlined (run.sh copies only this file into the share); prefixed rv_.

RV_SRC=$(lab_ip nfs-1)
RV_DST=$(lab_ip nfs-2)
RV_MNT=/misc/crr
RV_NCLIENTS=${RV_NCLIENTS:-1}
RV_VERS=${RV_NFS_VERSION:-3}
case $RV_VERS in
3) RV_AUTOFS_VERS= ;;
4.1 | 4.2) RV_AUTOFS_VERS=,vers=$RV_VERS ;;
*) lab_die "RV_NFS_VERSION=$RV_VERS: expected 3 or 4.1" ;;
esac
lab_figure nfs_version "$RV_VERS"
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
# The agent's staged mounts use the IPv4-mapped form ([::ffff:a.b.c.d]:/x, see README
# "Recovery"): it is shown as the plain address.
rv_source() {
    lab_on "$1" awk -v m="$RV_MNT" '$2 == m && $3 ~ /^nfs/ {s = $1} END {print s}' /proc/self/mounts |
        sed 's/^\[::ffff:\([0-9.]*\)\]:/\1:/'
}
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
crr -fstype=nfs$RV_AUTOFS_VERS,rw,nosuid,hard,tcp,timeo=60,nolock $RV_SRC:/srv/site1 $RV_DST:/srv/dest1
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
lab_note "baseline: autofs (seed 001 map line) on $RV_BASE"

# ---------------------------------------------------------------- nfsha: one active replica for the fleet
# Three clients with the agent in direct mode, [mount.fleet] in etcd (etcd in the guest's
# root namespace on br0, as in server-failover). The promote command is the lab's "break
# the replication": it re-exports /srv/dest1 read-write on nfs-2 (through nsenter into the
# server's namespaces) and logs that it ran. etcd comes into the image through the
# `# lab-packages:` header (without it the check etcd-in-image fails).
RV_ETCD_IP=10.99.0.250
RV_ETCD=http://$RV_ETCD_IP:2379
RV_AFTER=${RV_FAILOVER_AFTER:-15s}
RV_N=3

rv_etcd_start() {
    command -v etcd >/dev/null || {
        lab_check etcd-in-image 0 "no etcd binary in the guest: build the image with NFSHA_LAB_EXTRA_PACKAGES=etcd-server"
        return 1
    }
    ip addr replace "$RV_ETCD_IP/24" dev br0
    rm -rf /var/lab/rv-etcd
    setsid etcd --name lab --data-dir /var/lab/rv-etcd \
        --listen-client-urls "$RV_ETCD" --advertise-client-urls "$RV_ETCD" \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster lab=http://127.0.0.1:2380 </dev/null >"$LAB_OUT/etcd.log" 2>&1 &
    echo $! >>"$LAB_STATE/pids"
    lab_wait 40 bash -c "exec 3<>/dev/tcp/$RV_ETCD_IP/2379" || {
        lab_check etcd-started 0 "etcd did not listen on $RV_ETCD within 40 s (etcd.log)"
        return 1
    }
}

rv_agent_config() {
    local c=$1 f=/var/lab/$1/nfsha.toml
    mkdir -p "/var/lab/$c/state"
    cat >"$f" <<CONF
[agent]
control_socket = "/run/nfsha/agent.sock"
listen = "off"
event_log = "$LAB_OUT/events-$c.jsonl"
state_dir = "/var/lab/$c/state"
rpc_timeout = "1s"
server_probe_interval = "1s"
mount_timeout = "10s"
umount_timeout = "3s"
backoff_initial = "500ms"
backoff_max = "5s"

[agent.cluster]
etcd_endpoints = ["$RV_ETCD"]
cluster = "lab"

[[mount]]
mountpoint = "$RV_MNT"
export = "/srv/site1"
servers = ["$RV_SRC", { host = "$RV_DST", export = "/srv/dest1", weight = 1 }]
nfs_version = "$RV_VERS"
options = ["rw", "nosuid", "hard", "tcp", "timeo=60", "nolock"]
probe_interval = "500ms"
probe_deadline = "1s"
failures_before_recovery = 1
write_probe = true

[mount.fleet]
volume = "crr"
failover_after = "$RV_AFTER"
promote_command = ["/var/lab/rv-break-replication.sh"]
promote_timeout = "20s"
resync_check_command = ["test", "-e", "/var/lab/rv-resynced"]
resync_check_timeout = "5s"
CONF
    lab_on "$c" mkdir -p "$RV_MNT"
    echo "$f"
}

rv_promote_script() {
    local a; a=$(lab_anchor nfs-2)
    cat >/var/lab/rv-break-replication.sh <<SCRIPT
#!/bin/sh
# The lab's "Break Peering": the replica becomes writable. Idempotent.
printf '%s *(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=21)\n' /srv/dest1 >/var/lab/nfs-2/exports
nsenter -t $a -m -n -u -- exportfs -ra || exit 1
echo "\$(date +%s%3N) \$NFSHA_VOLUME \$NFSHA_TO_HOST:\$NFSHA_TO_EXPORT generation \$NFSHA_GENERATION" >>/var/lab/rv-promote.log
SCRIPT
    chmod +x /var/lab/rv-break-replication.sh
    : >/var/lab/rv-promote.log
    rm -f /var/lab/rv-resynced
}

rv_on_all() { local pat=$1 i; for i in $(seq 1 $RV_N); do case $(rv_source "client-$i") in $pat) ;; *) return 1 ;; esac; done; }
rv_all_see() { local f=$1 i; for i in $(seq 1 $RV_N); do rv_sees "client-$i" "$f" || return 1; done; }
rv_sources() { local i; for i in $(seq 1 $RV_N); do printf '%s ' "$(rv_source "client-$i")"; done; }
rv_agent_gone() { ! kill -0 "$(cat "$LAB_STATE/agent-$1")" 2>/dev/null; }
rv_mounted() { [ -n "$(rv_source "$1")" ]; }

RV_NCLIENTS=$RV_N
rv_setup
if rv_etcd_start; then
    rv_promote_script
    for i in $(seq 1 $RV_N); do lab_agent_start "client-$i" "$(rv_agent_config "client-$i")" >/dev/null; done
    t0=$(lab_now_ms)
    if lab_wait 60 rv_on_all "$RV_SRC:/srv/site1"; then ok=1; else ok=0; fi
    lab_figure nfsha_all_on_source_s "$(lab_ms_to_s $(($(lab_now_ms) - t0)))" s
    lab_check nfsha-fleet-mounts-the-source "$ok" "$(rv_sources)"
    apids=()
    for i in $(seq 1 $RV_N); do
        apids+=("$(lab_access "client-$i" "nfsha-$i" --path "$RV_MNT" --interval 200ms --duration 150s --op ls)")
    done
    sleep 5
    rv_cut_source
    tcut=$(lab_now_ms)
    after_s=${RV_AFTER%s}
    if lab_wait $((after_s + 60)) rv_on_all "$RV_DST:/srv/dest1"; then ok=1; else ok=0; fi
    moved=$(lab_ms_to_s $(($(lab_now_ms) - tcut)))
    lab_figure nfsha_all_on_replica_after_cut_s "$moved" s
    lab_figure nfsha_failover_after_s "$after_s" s
    lab_check nfsha-every-client-on-the-replica-within-failover-after-plus-5s \
        "$([ $ok = 1 ] && lab_cmp "$moved" "<=" "$((after_s + 5))" && echo 1 || echo 0)" \
        "all on the replica after $moved s (failover_after $after_s s): $(rv_sources)"
    n=$(grep -c . /var/lab/rv-promote.log 2>/dev/null)
    lab_figure nfsha_promote_runs "${n:-0}"
    lab_check nfsha-promote-ran-once-for-the-fleet "$([ "${n:-0}" = 1 ] && echo 1 || echo 0)" "$(tr '\n' ';' </var/lab/rv-promote.log 2>/dev/null)"
    # A new name: the baseline part left peer-broken on both copies.
    w=$(rv_write client-1 written-on-replica)
    lab_check nfsha-replica-writable-after-the-promote "$([ "$w" = ok ] && echo 1 || echo 0)" "write: $w"
    lab_wait 10 rv_all_see written-on-replica
    lab_check nfsha-every-client-sees-the-file-written-on-the-replica "$(rv_all_see written-on-replica && echo 1 || echo 0)"

    rv_restore_source
    sleep 20
    lab_check nfsha-stays-on-the-replica-when-the-source-returns \
        "$(rv_on_all "$RV_DST:/srv/dest1" && rv_all_see written-on-replica && echo 1 || echo 0)" "$(rv_sources)"

    # Agent restart on client-2 (the mount stays in place).
    lab_agent_stop client-2
    lab_wait 10 rv_agent_gone client-2
    lab_agent_start client-2 /var/lab/client-2/nfsha.toml >/dev/null
    sleep 8
    lab_check nfsha-after-an-agent-restart-still-on-the-replica \
        "$([ "$(rv_source client-2)" = "$RV_DST:/srv/dest1" ] && rv_sees client-2 written-on-replica && echo 1 || echo 0)" "$(rv_source client-2)"

    # Simulated reboot of client-3: agent stopped, mount detached, agent started.
    lab_agent_stop client-3
    lab_wait 10 rv_agent_gone client-3
    lab_on client-3 umount -l "$RV_MNT"
    if rv_mounted client-3; then det=0; else det=1; fi
    lab_agent_start client-3 /var/lab/client-3/nfsha.toml >/dev/null
    t0=$(lab_now_ms)
    lab_wait 40 rv_mounted client-3
    lab_figure nfsha_remount_after_reboot_s "$(lab_ms_to_s $(($(lab_now_ms) - t0)))" s
    lab_check nfsha-after-a-simulated-reboot-mounts-the-replica-not-the-stale-source \
        "$([ $det = 1 ] && [ "$(rv_source client-3)" = "$RV_DST:/srv/dest1" ] && rv_sees client-3 written-on-replica && echo 1 || echo 0)" \
        "mounted $(rv_source client-3) after the reboot"
    lab_access_wait "${apids[@]}"

    # Failback on purpose. Before the reverse resync the configured check refuses it and
    # nothing moves; after it (the source becomes a copy of the replica, the marker says so)
    # one command moves the whole fleet back, with nothing lost.
    fpids=()
    for i in $(seq 1 $RV_N); do
        fpids+=("$(lab_access "client-$i" "failback-$i" --path "$RV_MNT" --interval 200ms --duration 60s --op ls)")
    done
    sleep 3
    if lab_nfsha client-1 replica failback crr --to "$RV_SRC" --resynced --wait 0 >"$LAB_OUT/failback-refused.txt" 2>&1; then
        refused=0
    else
        refused=1
    fi
    sleep 3
    lab_check nfsha-failback-before-the-reverse-resync-is-refused \
        "$([ $refused = 1 ] && rv_on_all "$RV_DST:/srv/dest1" && echo 1 || echo 0)" \
        "$(tr '\n' ' ' <"$LAB_OUT/failback-refused.txt" | cut -c1-200); on $(rv_sources)"
    w=$(rv_write client-2 written-before-failback)
    rsync -a --delete /srv/nfs-2/ /srv/nfs-1/
    touch /var/lab/rv-resynced
    lab_mark reverse-resync-done
    tfb=$(lab_now_ms)
    lab_mark failback
    lab_nfsha client-1 replica failback crr --to "$RV_SRC" --resynced --wait 60s >"$LAB_OUT/failback.txt" 2>&1
    rc=$?
    lab_wait 60 rv_on_all "$RV_SRC:/srv/site1"
    back=$(lab_ms_to_s $(($(lab_now_ms) - tfb)))
    lab_figure nfsha_failback_all_on_source_s "$back" s
    lab_figure nfsha_failback_command_exit "$rc"
    lab_check nfsha-failback-brings-every-client-back \
        "$([ "$rc" = 0 ] && rv_on_all "$RV_SRC:/srv/site1" && echo 1 || echo 0)" \
        "exit $rc after $back s: $(rv_sources); $(tail -n 2 "$LAB_OUT/failback.txt" | tr '\n' ' ')"
    lab_check nfsha-failback-loses-nothing \
        "$([ "$w" = ok ] && rv_all_see written-on-replica && rv_all_see written-before-failback && echo 1 || echo 0)" \
        "write before failback: $w"
    w=$(rv_write client-3 written-after-failback)
    lab_check nfsha-source-writable-after-failback "$([ "$w" = ok ] && echo 1 || echo 0)" "write: $w"
    lab_access_wait "${fpids[@]}"
    for i in $(seq 1 $RV_N); do
        lab_figure "failback_${i}_failed_accesses" "$(grep -c '"ok":false' "$LAB_OUT/accesses-failback-$i.jsonl" 2>/dev/null)"
    done
    lab_report
    for i in $(seq 1 $RV_N); do
        lab_figure "nfsha_${i}_success_ratio" "$(lab_q "nfsha-$i" "$RV_MNT" .success_ratio)"
        lab_figure "nfsha_${i}_failed_accesses" "$(grep -c '"ok":false' "$LAB_OUT/accesses-nfsha-$i.jsonl" 2>/dev/null)"
    done
    for i in $(seq 1 $RV_N); do lab_nfsha "client-$i" replica status >"$LAB_OUT/replica-status-client-$i.txt" 2>&1; done
fi
