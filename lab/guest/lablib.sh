#!/bin/bash
# lablib.sh: the guest-side helper library of the nfsha NFS lab (sourced by scenarios).
#
# Role: build and reset the topology inside the VM (hosts are network+mount+UTS namespaces
# anchored by a long-lived process), inject faults, start the agent and the baselines, run
# access loops, mark the timeline, record figures and checks, and write result.json.
# The interface (function names and arguments) is documented in lab/README.md and kept stable.
#
# Failure modes: every helper that waits does so with a deadline and reports a LAB: line
# on the console when it gives up; a helper that cannot do its job returns non-zero and
# the scenario decides (most scenarios record a failed check and go on).

LAB_NET=10.99.0
LAB_VIP=${LAB_VIP:-$LAB_NET.100}
LAB_STATE=${LAB_STATE:-/run/lab}
LAB_SHARE=${LAB_SHARE:-/mnt/host}
NFSHA=${NFSHA:-$LAB_SHARE/bin/nfsha}
LAB_EXPORTS=(/srv/airflow/dags /srv/airflow/logs)
mkdir -p "$LAB_STATE"
# The drill: `nfsha drill` when the share's nfsha has it, else the standalone nfsha-drill.
if [ -z "${DRILL:-}" ]; then
    if [ ! -f "$LAB_STATE/drill" ]; then
        if "$NFSHA" drill --help >/dev/null 2>&1; then echo "$NFSHA drill"; else echo "$LAB_SHARE/bin/nfsha-drill"; fi >"$LAB_STATE/drill"
    fi
    DRILL=$(cat "$LAB_STATE/drill")
fi

# ---------------------------------------------------------------- small utilities
lab_now_ms() { date +%s%3N; }
lab_uptime() { cut -d' ' -f1 /proc/uptime; }
lab_log() { echo "LAB: [$(lab_uptime)] $*"; }
lab_die() { lab_log "error $*"; return 1; }

# lab_wait SECONDS CMD...: poll CMD every 0.1 s until it succeeds or SECONDS pass.
lab_wait() {
    local secs=$1; shift
    local end=$(($(date +%s%N) / 1000000 + ${secs%.*} * 1000))
    while ! "$@" >/dev/null 2>&1; do
        [ "$(lab_now_ms)" -ge "$end" ] && return 1
        sleep 0.1
    done
}

lab_anchor() { cat "$LAB_STATE/anchor-$1" 2>/dev/null; }
lab_ip() {
    case $1 in
        nfs-1) echo "$LAB_NET.1" ;;
        nfs-2) echo "$LAB_NET.2" ;;
        client-*) echo "$LAB_NET.$((10 + ${1#client-}))" ;;
        *) return 1 ;;
    esac
}

# lab_on HOST CMD...: run CMD in HOST's network, mount and UTS namespaces (foreground).
lab_on() {
    local a; a=$(lab_anchor "$1") || return 1
    [ -n "$a" ] || { lab_die "no host $1"; return 1; }
    shift
    nsenter -t "$a" -m -n -u -- "$@"
}

# lab_bg HOST LOGFILE CMD...: run CMD in HOST in the background; prints its PID and tracks it.
lab_bg() {
    local host=$1 logf=$2; shift 2
    local a; a=$(lab_anchor "$host") || return 1
    setsid nsenter -t "$a" -m -n -u -- "$@" </dev/null >>"$logf" 2>&1 &
    local pid=$!
    echo "$pid" >>"$LAB_STATE/pids"
    echo "$pid"
}

# ---------------------------------------------------------------- timeline, figures, checks
# lab_mark NAME: a named point on the timeline (marks.jsonl).
# LAB_MARK_PREFIX, when set, is put before every mark name (scenarios looping over variants).
lab_mark() {
    printf '{"ts_ms":%s,"name":"%s"}\n' "$(lab_now_ms)" "${LAB_MARK_PREFIX:-}$1" >>"$LAB_OUT/marks.jsonl"
    lab_log "mark ${LAB_MARK_PREFIX:-}$1"
}
# lab_event KIND [TEXT]: a lab event (not a mark) drawn on the timeline (lab-events.jsonl).
lab_event() {
    printf '{"ts_ms":%s,"source":"lab","kind":"%s","reason":"%s"}\n' "$(lab_now_ms)" "$1" "$(lab_json_esc "${2:-}")" \
        >>"$LAB_OUT/lab-events.jsonl"
}
lab_json_esc() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/ }; printf '%s' "${s//$'\t'/ }"; }
# lab_figure NAME VALUE [UNIT]: record a named figure (a number, true/false, or null when unmeasured).
lab_figure() {
    local v=${2:-null}
    case $v in true | false | null) ;; *[!0-9.eE+-]* | "") v="\"$(lab_json_esc "$v")\"" ;; esac
    printf '{"name":"%s","value":%s,"unit":"%s"}\n' "$1" "$v" "${3:-}" >>"$LAB_OUT/figures.jsonl"
    lab_log "figure $1 = ${2:-null} ${3:-}"
}
# lab_check NAME PASS(0|1 or true|false) [DETAIL]: record a check; the scenario passes
# only when every check passed.
lab_check() {
    local ok=false
    case $2 in 1 | true | yes | pass) ok=true ;; esac
    printf '{"name":"%s","pass":%s,"detail":"%s"}\n' "$1" "$ok" "$(lab_json_esc "${3:-}")" >>"$LAB_OUT/checks.jsonl"
    lab_log "check $1: $([ "$ok" = true ] && echo PASS || echo FAIL) ${3:-}"
}
# lab_cmp A OP B: numeric comparison with awk (floats, "null" is false). OP: < <= > >=
lab_cmp() {
    [ -n "$1" ] && [ -n "$3" ] && [ "$1" != null ] && [ "$3" != null ] || return 1
    awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN{
        r = (op=="<")?(a<b):(op=="<=")?(a<=b):(op==">")?(a>b):(op==">=")?(a>=b):0; exit !r }'
}
# lab_note TEXT: a free-text line in notes.txt (shown in the human timeline).
lab_note() { echo "$*" >>"$LAB_OUT/notes.txt"; lab_log "note $*"; }

# ---------------------------------------------------------------- boot-time setup
lab_boot() {
    local t0; t0=$(lab_uptime)
    modprobe -a nfsd nfs nfsv3 nfsv4 veth bridge nf_tables autofs4 loop 2>/dev/null
    modprobe -a nft_chain_filter nft_ct 2>/dev/null
    ip link set lo up
    ip link add br0 type bridge
    ip link set br0 up
    # Sudo shim: the seed's health-check script calls sudo.
    printf '#!/bin/sh\nexec "$@"\n' >/usr/local/bin/sudo
    chmod +x /usr/local/bin/sudo
    mkdir -p /srv /var/lab /airflow
    # Names for every lab address (reverse lookups by rpcbind's tcp-wrappers and mountd).
    {
        echo "$LAB_NET.1 nfs-1"; echo "$LAB_NET.2 nfs-2"; echo "$LAB_VIP nfs-vip"
        for i in $(seq 1 20); do echo "$LAB_NET.$((10 + i)) client-$i"; done
    } >>/etc/hosts
    echo "rpcbind mountd : ALL" >>/etc/hosts.allow
    lab_data_init
    lab_server_create nfs-1
    lab_server_create nfs-2
    LAB_TOPOLOGY=none
    lab_log "boot-setup done in $(awk -v a="$t0" -v b="$(lab_uptime)" 'BEGIN{print b-a}') s"
}

# lab_host_create NAME [EXTRA-SH]: a namespace host with its own net, mount and UTS namespaces and /run.
lab_host_create() {
    local name=$1 ip; ip=$(lab_ip "$name")
    ip netns add "$name"
    ip link add "v-$name" type veth peer name eth0 netns "$name"
    ip link set "v-$name" master br0 up
    ip -n "$name" link set lo up
    ip -n "$name" addr add "$ip/24" dev eth0
    ip -n "$name" link set eth0 up
    mkdir -p "/var/lab/$name"
    ip netns exec "$name" unshare -m -u --propagation private sh -c "
        hostname $name
        mount -t tmpfs tmpfs /run
        mkdir -p /run/rpcbind /run/nfsha /run/lock
        $2
        exec sleep infinity" </dev/null >"/var/lab/$name/anchor.log" 2>&1 &
    local pid=$!
    # The anchor is the sleep process itself (sh execs it); wait for the exec.
    lab_wait 10 sh -c "[ \"\$(readlink /proc/$pid/exe)\" = /usr/bin/sleep ]" ||
        lab_die "anchor for $name did not start"
    echo "$pid" >"$LAB_STATE/anchor-$name"
}

lab_data_init() {
    mkdir -p /srv/nfs-1 /srv/nfs-2 /srv/shared
    for d in /srv/nfs-1 /srv/nfs-2 /srv/shared; do mount -t tmpfs tmpfs "$d"; done
    lab_data_fill /srv/nfs-1
    lab_data_fill /srv/shared
    # Replica: B's data is a copy of A's (another filesystem: other inode generations).
    cp -a /srv/nfs-1/. /srv/nfs-2/
}

lab_data_fill() {
    mkdir -p "$1/dags" "$1/logs/scheduler"
    local i
    for i in $(seq 1 10); do
        printf 'from airflow import DAG\n# dag %s\n' "$i" >"$1/dags/dag_$i.py"
    done
    echo "hello" >"$1/dags/hello.txt"
    echo "log start" >"$1/logs/scheduler/latest.log"
    chmod -R a+rwX "$1"
}

# Server: nfsd, mountd and rpcbind of its own; /srv/airflow/{dags,logs} bind-mounted from
# the storage of the current topology.
lab_server_create() {
    local name=$1
    mkdir -p "/var/lab/$name/varlib"
    cp -a /var/lib/nfs/. "/var/lab/$name/varlib/"
    : >"/var/lab/$name/exports"
    lab_host_create "$name" "
        mount --bind /var/lab/$name/varlib /var/lib/nfs
        mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs
        mount --bind /var/lab/$name/exports /etc/exports
        mkdir -p /srv/airflow
        mount -t tmpfs tmpfs /srv/airflow
        mkdir -p /srv/airflow/dags /srv/airflow/logs
        mount -t nfsd nfsd /proc/fs/nfsd"
}

# lab_server_storage NAME replica|shared: point the server's exports at its own copy
# (replica; fsids differ per server) or at the one shared filesystem (same fsids).
lab_server_storage() {
    local name=$1 topo=$2 src base
    if [ "$topo" = shared ]; then src=/srv/shared; base=0; else src=/srv/$name; base=$([ "$name" = nfs-1 ] && echo 0 || echo 100); fi
    lab_on "$name" sh -c "umount -l /srv/airflow/dags /srv/airflow/logs 2>/dev/null
        mount --bind $src/dags /srv/airflow/dags && mount --bind $src/logs /srv/airflow/logs"
    printf '%s\n' \
        "/srv/airflow/dags *(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=$((base + 1)))" \
        "/srv/airflow/logs *(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=$((base + 2)))" \
        >"/var/lab/$name/exports"
}

lab_server_running() { lab_on "$1" sh -c 'grep -q . /proc/fs/nfsd/threads && [ "$(cat /proc/fs/nfsd/threads)" -gt 0 ]'; }

# lab_server_start NAME: rpcbind, exports, mountd, nfsd (grace and lease 10 s).
lab_server_start() {
    local name=$1 a; a=$(lab_anchor "$name")
    lab_on "$name" sh -c '
        echo 10 >/proc/fs/nfsd/nfsv4gracetime 2>/dev/null
        echo 10 >/proc/fs/nfsd/nfsv4leasetime 2>/dev/null
        pgrep --ns '"$a"' --nslist net -x rpcbind >/dev/null || rpcbind -w
        exportfs -ra
        pgrep --ns '"$a"' --nslist net -x rpc.mountd >/dev/null || rpc.mountd -p 20048
        rpc.nfsd 8' || { lab_die "server $name did not start"; return 1; }
    date +%s >"$LAB_STATE/started-$name"
    lab_log "server $name started"
}

# lab_server_stop NAME: orderly stop (nfsd threads to 0, exports flushed, mountd killed
# by network namespace — never by name alone: the PID namespace is shared).
lab_server_stop() {
    local name=$1 a; a=$(lab_anchor "$name")
    lab_on "$name" sh -c 'rpc.nfsd 0; exportfs -au; exportfs -f' 2>/dev/null
    pkill --ns "$a" --nslist net -x rpc.mountd
    lab_log "server $name stopped"
}

# lab_wait_grace [NAME...]: wait until every named (default: both) server is out of grace.
lab_wait_grace() {
    local s t now; now=$(date +%s)
    for s in ${@:-nfs-1 nfs-2}; do
        t=$(cat "$LAB_STATE/started-$s" 2>/dev/null || echo 0)
        if [ $((t + 11)) -gt "$now" ]; then sleep $((t + 11 - now)); now=$(date +%s); fi
    done
}

lab_vip_where() {
    local s
    for s in nfs-1 nfs-2; do
        ip -n "$s" -br addr show dev eth0 2>/dev/null | grep -q "$LAB_VIP/" && { echo "$s"; return 0; }
    done
    return 1
}
# lab_vip_del NAME / lab_vip_add NAME: move the floating address (gratuitous ARP in background).
lab_vip_del() { ip -n "$1" addr del "$LAB_VIP/24" dev eth0 2>/dev/null; true; }
lab_vip_add() {
    ip -n "$1" addr add "$LAB_VIP/24" dev eth0 || return 1
    # Gratuitous ARP requests and replies, several: a client's neighbour entry refreshed
    # less than locktime (1 s) ago ignores the first one (Pacemaker's IPaddr2 sends 5).
    (ip netns exec "$1" arping -q -U -c 4 -w 4 -I eth0 "$LAB_VIP" >/dev/null 2>&1 &)
    (ip netns exec "$1" arping -q -A -c 4 -w 4 -I eth0 "$LAB_VIP" >/dev/null 2>&1 &)
}

# ---------------------------------------------------------------- topology
# lab_setup TOPOLOGY NCLIENTS: replica|shared; fresh clients client-1..N, nfs-1 serving with
# the VIP, nfs-2 serving its own address (warm standby), no faults, out of grace.
lab_setup() {
    local topo=${1:-replica} n=${2:-1} i s
    local t0; t0=$(lab_uptime)
    lab_clients_destroy
    for s in nfs-1 nfs-2; do
        ip netns exec "$s" nft flush ruleset 2>/dev/null
        ip -n "$s" link set eth0 up
        lab_listener_stop "$s"
    done
    if [ "$topo" != "$(cat "$LAB_STATE/topology" 2>/dev/null)" ]; then
        for s in nfs-1 nfs-2; do
            lab_server_stop "$s" >/dev/null
            lab_server_storage "$s" "$topo"
            lab_server_start "$s"
        done
        echo "$topo" >"$LAB_STATE/topology"
    elif [ "${LAB_FRESH_SERVERS:-0}" = 1 ]; then
        # No NFS state from an earlier scenario: a client record left on a server (an
        # NFSv4 courtesy client of the last scenario's client-1) changes how the next
        # client's EXCHANGE_ID goes.
        for s in nfs-1 nfs-2; do
            lab_server_stop "$s" >/dev/null
            lab_server_start "$s"
        done
    else
        for s in nfs-1 nfs-2; do
            lab_server_running "$s" &&
                pgrep --ns "$(lab_anchor "$s")" --nslist net -x rpc.mountd >/dev/null ||
                { lab_server_stop "$s" >/dev/null; lab_server_start "$s"; }
        done
    fi
    lab_vip_del nfs-2
    [ "$(lab_vip_where)" = nfs-1 ] || lab_vip_add nfs-1
    for i in $(seq 1 "$n"); do lab_client_create "client-$i"; done
    lab_wait_grace
    LAB_TOPOLOGY=$topo
    echo "$topo" >"$LAB_OUT/topology"
    lab_log "setup $topo with $n client(s) in $(awk -v a="$t0" -v b="$(lab_uptime)" 'BEGIN{print b-a}') s"
}

lab_client_create() {
    lab_host_create "$1" "mkdir -p /airflow"
    echo "$1" >>"$LAB_STATE/clients"
}

# Kill everything in the clients' namespaces, detach their mounts, delete them.
lab_clients_destroy() {
    local c a p
    [ -f "$LAB_STATE/pids" ] && while read -r p; do kill -TERM "$p" 2>/dev/null; done <"$LAB_STATE/pids"
    for c in $(cat "$LAB_STATE/clients" 2>/dev/null); do
        a=$(lab_anchor "$c")
        [ -n "$a" ] || continue
        # Every process in the client's network namespace but its anchor.
        for p in $(pgrep --ns "$a" --nslist net); do [ "$p" != "$a" ] && kill -KILL "$p" 2>/dev/null; done
        # Lazily detach every NFS and autofs mount of the client, innermost first.
        nsenter -t "$a" -m sh -c "awk '\$3 ~ /^(nfs|nfs4|autofs)\$/ {print \$2}' /proc/self/mounts | sort -r | xargs -r -n1 umount -l" 2>/dev/null
        kill -KILL "$a" 2>/dev/null
        ip link del "v-$c" 2>/dev/null
        ip netns del "$c" 2>/dev/null
        rm -f "$LAB_STATE/anchor-$c"
    done
    : >"$LAB_STATE/clients"
    : >"$LAB_STATE/pids"
}

# ---------------------------------------------------------------- faults
# lab_failover [FROM] [TO]: clean failover: stop nfsd on FROM, move the VIP to TO.
# Marks: failover-start (before the stop), server-a-stopped, vip-moved, server-b-serving.
lab_failover() {
    local from=${1:-nfs-1} to=${2:-nfs-2}
    lab_mark failover-start
    lab_server_stop "$from"
    lab_mark server-a-stopped
    lab_vip_del "$from"
    lab_server_running "$to" || lab_server_start "$to"
    lab_vip_add "$to"
    lab_mark vip-moved
    lab_mark server-b-serving
}
# lab_crash [FROM] [TO]: FROM vanishes abruptly (its link goes down: no orderly stop, no
# FIN/RST), then the VIP comes up on TO. Marks: server-a-crashed, vip-moved, server-b-serving.
lab_crash() {
    local from=${1:-nfs-1} to=${2:-nfs-2}
    ip -n "$from" link set eth0 down
    lab_mark server-a-crashed
    lab_vip_del "$from"
    lab_vip_add "$to"
    lab_mark vip-moved
    lab_mark server-b-serving
}
# lab_hang NAME / lab_unhang NAME: NAME's namespace drops every packet (VIP stays).
lab_hang() {
    ip netns exec "$1" nft -f - <<EOF
table inet labhang {
    chain input { type filter hook input priority 0; policy drop; }
    chain output { type filter hook output priority 0; policy drop; }
}
EOF
    lab_mark "hang-$1"
}
lab_unhang() { ip netns exec "$1" nft delete table inet labhang 2>/dev/null; lab_mark "unhang-$1"; }
# lab_outage / lab_restore [NAME]: stop every server (seed Test 3); restore starts NAME (nfs-1).
# Marks: outage-start, outage (both stopped); restore-start, restored (nfsd up with the VIP).
lab_outage() { lab_mark outage-start; lab_server_stop nfs-1; lab_server_stop nfs-2; lab_mark outage; }
lab_restore() {
    local s=${1:-nfs-1}
    lab_mark restore-start
    lab_server_start "$s"
    [ "$(lab_vip_where)" = "$s" ] || { lab_vip_del nfs-1; lab_vip_del nfs-2; lab_vip_add "$s"; }
    lab_mark restored
}
# lab_cutoff CLIENT / lab_reconnect CLIENT: the client's namespace drops everything.
lab_cutoff() { lab_hang "$1"; }
lab_reconnect() { lab_unhang "$1"; }
# lab_norpc NAME mountd|listener: the server answers TCP but not RPC. `mountd`: nfsd up,
# mountd killed (nfsd then drops requests waiting on upcalls). `listener`: nfsd stopped and a
# listener on 2049 that accepts connections and never replies. Undo with lab_rpc_restore.
lab_norpc() {
    local name=$1 how=${2:-mountd}
    case $how in
        mountd) pkill --ns "$(lab_anchor "$name")" --nslist net -x rpc.mountd ;;
        listener)
            lab_server_stop "$name" >/dev/null
            lab_bg "$name" "/var/lab/$name/listener.log" python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 2049)); s.listen(64); conns = []
while True:
    c, _ = s.accept(); conns.append(c)' >"$LAB_STATE/listener-$name"
            ;;
    esac
    lab_mark "norpc-$name"
}
lab_listener_stop() { [ -f "$LAB_STATE/listener-$1" ] && kill "$(cat "$LAB_STATE/listener-$1")" 2>/dev/null; rm -f "$LAB_STATE/listener-$1"; true; }
lab_rpc_restore() { lab_listener_stop "$1"; lab_server_stop "$1" >/dev/null; lab_server_start "$1"; lab_mark "rpc-restored-$1"; }

# ---------------------------------------------------------------- the agent
# lab_nfsha_config CLIENT MODE VERS [OPTIONS] [SERVERS]: write an agent config for the
# two seed mounts (/airflow/dags, /airflow/logs) and print its path.
lab_nfsha_config() {
    local c=$1 mode=${2:-direct} vers=${3:-4.1} opts=${4:-hard,timeo=50,retrans=2} servers=${5:-$LAB_VIP}
    local f=/var/lab/$c/nfsha.toml o s
    [ "$vers" = 3 ] && case ",$opts," in *,nolock,*) ;; *) opts="$opts,nolock" ;; esac
    o=$(printf '"%s",' ${opts//,/ }); o=${o%,}
    s=$(printf '"%s",' ${servers//,/ }); s=${s%,}
    cat >"$f" <<EOF
[agent]
control_socket = "/run/nfsha/agent.sock"
listen = "off"
event_log = "$LAB_OUT/events-$c.jsonl"
rpc_timeout = "1s"
server_probe_interval = "1s"
mount_timeout = "10s"
umount_timeout = "3s"
backoff_initial = "500ms"
backoff_max = "5s"

[defaults]
nfs_version = "$vers"
options = [$o]
mode = "$mode"
probe_interval = "${LAB_PROBE_INTERVAL:-500ms}"
probe_deadline = "${LAB_PROBE_DEADLINE:-1s}"
failures_before_recovery = ${LAB_FAILURES_BEFORE_RECOVERY:-1}

[[mount]]
mountpoint = "/airflow/dags"
export = "/srv/airflow/dags"
servers = [$s]

[[mount]]
mountpoint = "/airflow/logs"
export = "/srv/airflow/logs"
servers = [$s]
EOF
    # Direct mode: the mountpoints must exist (the agent mounts on them, it does not create them).
    [ "$mode" = direct ] && lab_on "$c" mkdir -p /airflow/dags /airflow/logs
    echo "$f"
}

# lab_agent_start CLIENT CONFIG: run `nfsha agent` in CLIENT (log: agent-CLIENT.log).
lab_agent_start() {
    local c=$1 cfg=$2
    lab_bg "$c" "$LAB_OUT/agent-$c.log" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$NFSHA" agent --config "$cfg" >"$LAB_STATE/agent-$c"
    lab_event agent-started "$c"
}
lab_agent_stop() { [ -f "$LAB_STATE/agent-$1" ] && kill -TERM "$(cat "$LAB_STATE/agent-$1")" 2>/dev/null; true; }
# lab_nfsha CLIENT ARGS...: run the nfsha CLI in CLIENT (status, recover...) with its config.
lab_nfsha() { local c=$1; shift; lab_on "$c" "$NFSHA" --config "/var/lab/$c/nfsha.toml" "$@"; }
# lab_wait_mounted CLIENT PATH [SECS]: wait until PATH is an NFS mount in CLIENT.
lab_wait_mounted() {
    lab_wait "${3:-30}" lab_on "$1" sh -c "awk '\$2 == \"$2\" && \$3 ~ /^nfs/ {f=1} END {exit !f}' /proc/self/mounts"
}

# ---------------------------------------------------------------- baselines (seed 000)
# The seed's autofs map (Step 1.5/1.6, VIP substituted) for CLIENT; VERS 4.1 by default.
lab_autofs_map() {
    local c=$1 opts=${2:-rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0}
    local fstype=${3:-nfs4}
    cat >"/var/lab/$c/auto.master" <<EOF
/airflow    /var/lab/$c/auto.airflow    --timeout=30 --ghost
EOF
    cat >"/var/lab/$c/auto.airflow" <<EOF
dags    -fstype=$fstype,$opts    $LAB_VIP:/srv/airflow/dags
logs    -fstype=$fstype,$opts    $LAB_VIP:/srv/airflow/logs
EOF
}
# lab_autofs_start CLIENT [OPTS] [FSTYPE]: autofs alone (automount with the seed's map).
lab_autofs_start() {
    local c=$1
    [ -f "/var/lab/$c/auto.master" ] || lab_autofs_map "$c" "${2:-}" "${3:-}"
    [ -n "${2:-}" ] && lab_autofs_map "$c" "$2" "${3:-nfs4}"
    lab_bg "$c" "$LAB_OUT/automount-$c.log" setsid automount -f -v "/var/lab/$c/auto.master" >"$LAB_STATE/automount-$c"
    lab_wait 15 lab_on "$c" sh -c "awk '\$2 == \"/airflow\" && \$3 == \"autofs\" {f=1} END {exit !f}' /proc/self/mounts" ||
        lab_die "automount in $c did not come up"
}
# The seed's health check (Step 3.1), verbatim but for its log file.
lab_seed_script() {
    cat >"/var/lab/$1/nfs-health-check.sh" <<'EOF'
#!/bin/bash
#
# NFS Mount Health Check and Recovery
# Checks /airflow/dags and /airflow/logs accessibility
# If either is unavailable, force unmount all NFS to trigger AutoFS remount
#

LOG_FILE="/var/log/nfs-health-check.log"
MOUNTS=("/airflow/dags" "/airflow/logs")
CHECK_TIMEOUT=5

log() {
    echo "$(date '+%Y-%m-%d %H:%M:%S') - $1" >> "$LOG_FILE"
}

check_mount() {
    local path="$1"
    if timeout "$CHECK_TIMEOUT" ls "$path" > /dev/null 2>&1; then
        return 0  # Accessible
    else
        return 1  # Not accessible
    fi
}

# Check if any mount is unavailable
for mount in "${MOUNTS[@]}"; do
    if ! check_mount "$mount"; then
        log "ERROR: $mount is unavailable. Triggering NFS unmount..."
        
        # Force unmount all NFS mounts
        sudo umount -a -t nfs,nfs4 2>/dev/null
        
        log "NFS unmount completed. AutoFS will remount on next access."
        exit 0
    fi
done

log "All NFS mounts healthy"
exit 0
EOF
    sed -i "s|^LOG_FILE=.*|LOG_FILE=\"$LAB_OUT/seed-health-check-$1.log\"|" "/var/lab/$1/nfs-health-check.sh"
    chmod +x "/var/lab/$1/nfs-health-check.sh"
}
# lab_seed_start CLIENT [PHASE_SECS]: the seed baseline: autofs with the seed's map plus the
# health check every 30 s (systemd timer OnUnitActiveSec=30 as a loop; first run after PHASE
# seconds, default 30 like OnBootSec=30). Each run is a `seed_health_check` event.
lab_seed_start() {
    local c=$1 phase=${2:-30}
    lab_autofs_start "$c"
    lab_seed_script "$c"
    cat >"/var/lab/$c/seed-timer.sh" <<EOF
#!/bin/bash
sleep $phase
while :; do
    ts=\$(date +%s%3N)
    /var/lab/$c/nfs-health-check.sh
    echo "{\"ts_ms\":\$ts,\"source\":\"seed\",\"kind\":\"health_check\",\"reason\":\"\$(tail -1 $LAB_OUT/seed-health-check-$c.log | cut -c23-)\"}" >>$LAB_OUT/seed-events-$c.jsonl
    sleep 30
done
EOF
    chmod +x "/var/lab/$c/seed-timer.sh"
    lab_bg "$c" "$LAB_OUT/seed-timer-$c.log" "/var/lab/$c/seed-timer.sh" >"$LAB_STATE/seedtimer-$c"
}

# ---------------------------------------------------------------- access loops and reports
# lab_access CLIENT LABEL ARGS...: start `nfsha drill access` in CLIENT in the background,
# records to accesses-LABEL.jsonl. ARGS as for the drill (--path P --interval 100ms
# --duration 60s --workers N --op ls --floor ...). Prints the PID.
# Listings of an empty directory count as failures (--fail-empty): every lab path holds
# files, so an empty listing is the bare local mountpoint under a missing mount.
lab_access() {
    local c=$1 label=$2; shift 2
    # shellcheck disable=SC2086 # DRILL is "binary [subcommand]"
    lab_bg "$c" "$LAB_OUT/drill-$label.log" $DRILL access --label "$label" --fail-empty \
        --out "$LAB_OUT/accesses-$label.jsonl" "$@"
}
# lab_access_wait PID...: wait for access loops to end (they end on their own at --duration).
lab_access_wait() { local p; for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done; }

# lab_report: run `nfsha drill report` over everything recorded so far (into LAB_OUT/report).
lab_report() {
    local args=() f
    for f in "$LAB_OUT"/accesses-*.jsonl; do [ -f "$f" ] && args+=(--accesses "$f"); done
    [ ${#args[@]} -gt 0 ] || return 1
    for f in "$LAB_OUT"/events-*.jsonl "$LAB_OUT"/seed-events-*.jsonl "$LAB_OUT"/lab-events.jsonl; do
        [ -f "$f" ] && args+=(--events "$f")
    done
    # shellcheck disable=SC2086
    $DRILL report "${args[@]}" --marks "$LAB_OUT/marks.jsonl" --out "$LAB_OUT/report" >/dev/null || return 1
    jq -r '.paths[] | . as $p | paths(type != "object" and type != "array") as $k
        | "\($p.label)|\($p.path)|\($k | map(tostring) | join("."))\t\($p | getpath($k))"' \
        "$LAB_OUT/report/report.json" >"$LAB_OUT/report/flat.txt"
    lab_flat_load
}
# lab_q LABEL PATH KEY: a value from report.json for (LABEL, PATH), "null" if absent. KEY is a
# jq-like path: .error_window_ms, .recovered, .after_marks["vip-moved"].first_success_ms ...
# (served from report/flat.txt, loaded once per lab_report: no process per lookup).
declare -gA LAB_FLAT=()
lab_flat_load() {
    LAB_FLAT=()
    local k v
    [ -f "$LAB_OUT/report/flat.txt" ] || return 0
    while IFS=$'\t' read -r k v; do LAB_FLAT[$k]=$v; done <"$LAB_OUT/report/flat.txt"
}
lab_q() {
    [ ${#LAB_FLAT[@]} -gt 0 ] || lab_flat_load
    local e=${3#.}
    e=${e//\[\"/.}; e=${e//\"\]/}
    local v=${LAB_FLAT["$1|$2|$e"]-null}
    echo "${v:-null}"
}
# lab_ms_to_s MS: milliseconds to seconds with 2 decimals ("null" stays null).
lab_ms_to_s() { [ "$1" = null ] || [ -z "$1" ] && echo null || awk -v v="$1" 'BEGIN{printf "%.2f", v/1000}'; }

# lab_slurp FILE FILTER DEFAULT: FILTER over the JSON lines of FILE (jq -s), or DEFAULT when
# FILE is missing, empty or undecodable. jq's output is taken only when jq succeeded: jq 1.6
# prints `add // {}` before failing on a missing file, and `|| echo` then doubled the value.
lab_slurp() {
    local out
    if [ -s "$1" ] && out=$(jq -c -s "$2" "$1" 2>/dev/null) && [ -n "$out" ]; then
        printf '%s\n' "$out"
    else
        printf '%s\n' "$3"
    fi
}
# lab_result_passed FILE: true only when FILE is a result whose .passed is the JSON true (an
# empty or missing file is a failure: jq 1.6 -e exits 0 on empty input).
lab_result_passed() { [ "$(jq -r '.passed' "$1" 2>/dev/null)" = true ]; }

# lab_result_unfinished DIR NAME REASON: result.json for a scenario that timed out or died
# before lab_finish: the checks and figures it recorded so far are kept (a long scenario's
# first parts are not lost with its last), with a failing "completed" check saying why.
lab_result_unfinished() {
    local dir=$1 name=$2 reason=$3 figs checks marks
    figs=$(lab_slurp "$dir/figures.jsonl" 'map({(.name): .value}) | add // {}' '{}')
    checks=$(lab_slurp "$dir/checks.jsonl" '.' '[]')
    marks=$(lab_slurp "$dir/marks.jsonl" '.' '[]')
    jq -n --arg s "$name" --arg r "$reason" --argjson f "$figs" --argjson c "$checks" \
        --argjson m "$marks" --arg k "$(uname -r)" \
        '{scenario:$s, kernel:$k, passed:false,
          checks:($c + [{name:"completed", pass:false, detail:$r}]), figures:$f, marks:$m}' \
        >"$dir/result.json" ||
        jq -n --arg s "$name" --arg r "$reason" \
            '{scenario:$s, passed:false, checks:[{name:"completed", pass:false, detail:$r}], figures:{}}' \
            >"$dir/result.json"
}

# lab_finish: build the report, result.json and timeline.txt; exit status 0 iff every check
# passed and result.json says so. A scenario with checks but no figures fails like any other.
lab_finish() {
    lab_report 2>>"$LAB_OUT/report.err"
    local figs checks marks events
    figs=$(lab_slurp "$LAB_OUT/figures.jsonl" 'map({(.name): .value}) | add // {}' '{}')
    checks=$(lab_slurp "$LAB_OUT/checks.jsonl" '.' '[]')
    marks=$(lab_slurp "$LAB_OUT/marks.jsonl" '.' '[]')
    events=$(jq -c '.events // []' "$LAB_OUT/report/report.json" 2>/dev/null) || events='[]'
    local paths
    paths=$(jq -c '[.paths[] | del(.windows)]' "$LAB_OUT/report/report.json" 2>/dev/null) || paths='[]'
    [ -n "$events" ] || events='[]'
    [ -n "$paths" ] || paths='[]'
    jq -n --arg s "$LAB_SCENARIO" --arg t "${LAB_TOPOLOGY:-none}" --argjson f "$figs" \
        --argjson c "$checks" --argjson m "$marks" --argjson e "$events" --argjson p "$paths" \
        --arg k "$(uname -r)" \
        '{scenario:$s, topology:$t, kernel:$k, passed: (($c | length) > 0 and ($c | all(.pass))),
          figures:$f, checks:$c, marks:$m, paths:$p, events:$e}' >"$LAB_OUT/result.json" \
        || jq -n --arg s "$LAB_SCENARIO" --argjson c "$checks" \
            '{scenario:$s, passed:false, checks:($c + [{name:"result-json", pass:false,
              detail:"result.json could not be assembled (see report.err)"}]), figures:{}}' >"$LAB_OUT/result.json"
    {
        echo "scenario $LAB_SCENARIO (topology ${LAB_TOPOLOGY:-none})"
        echo
        [ -f "$LAB_OUT/report/timeline.txt" ] && cat "$LAB_OUT/report/timeline.txt"
        [ -f "$LAB_OUT/notes.txt" ] && { echo "notes:"; sed 's/^/  /' "$LAB_OUT/notes.txt"; echo; }
        echo "figures:"
        jq -r 'to_entries[] | "  \(.key) = \(.value)"' <<<"$figs"
        echo "checks:"
        jq -r '.[] | "  \(if .pass then "PASS" else "FAIL" end) \(.name) \(.detail)"' <<<"$checks"
    } >"$LAB_OUT/timeline.txt"
    lab_result_passed "$LAB_OUT/result.json"
}
