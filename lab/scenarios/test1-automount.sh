# lab-summary: seed Test 1: automount basics in autofs mode (mount on access, expiry), nfsha autofs mode vs autofs alone
# lab-timeout: 150
# client-1: automount (seed map with --timeout=5 instead of 30 to keep the test short) plus the
# nfsha agent in autofs mode; client-2: automount alone. Steps as in the seed: nothing mounted,
# access mounts, mounted, wait 2x timeout, unmounted (the seed says "may be empty if inactive").
lab_setup replica 2
for c in client-1 client-2; do
    lab_autofs_map "$c"
    sed -i 's/--timeout=30/--timeout=5/' "/var/lab/$c/auto.master"
    lab_autofs_start "$c"
done
cfg=$(lab_nfsha_config client-1 autofs 4.1 "rw,soft,timeo=10,retrans=2,nfsvers=4.1,noac,lookupcache=none,actimeo=0")
lab_agent_start client-1 "$cfg" >/dev/null
sleep 3
nfsmounts() { lab_on "$1" awk '$3 ~ /^nfs/ && $2 ~ /^\/airflow/ {print $2}' /proc/self/mounts | sort | tr '\n' ' '; }
for c in client-1 client-2; do
    l=$([ $c = client-1 ] && echo nfsha || echo autofs)
    lab_on "$c" umount -a -t nfs,nfs4 2>/dev/null
    before=$(nfsmounts $c)
    lab_note "$l: NFS mounts before access: '${before}'"
    t=$(lab_now_ms)
    lab_on "$c" ls /airflow/dags >/dev/null && lab_on "$c" ls /airflow/logs >/dev/null
    ok=$?
    lab_figure "${l}_first_access_ms" $(( $(lab_now_ms) - t )) ms
    after=$(nfsmounts $c)
    lab_note "$l: NFS mounts after access: '${after}'"
    lab_check "$l-access-mounts" "$([ $ok = 0 ] && grep -q dags <<<"$after" && grep -q logs <<<"$after" && echo 1 || echo 0)" "$after"
    lab_on "$c" df -h /airflow/dags /airflow/logs >>"$LAB_OUT/notes.txt" 2>&1
done
lab_mark idle-start
sleep 12
for c in client-1 client-2; do
    l=$([ $c = client-1 ] && echo nfsha || echo autofs)
    left=$(nfsmounts $c)
    lab_note "$l: NFS mounts after 12 s idle (2x timeout + 2 s): '${left}'"
    lab_figure "${l}_expired_after_idle" "$([ -z "$left" ] && echo true || echo false)"
done
lab_check autofs-expires "$([ -z "$(nfsmounts client-2)" ] && echo 1 || echo 0)"
lab_check nfsha-reaccess-after-expiry "$(lab_on client-1 ls /airflow/dags >/dev/null 2>&1 && echo 1 || echo 0)"
