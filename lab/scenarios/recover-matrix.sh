# lab-summary: automatic recovery and `nfsha recover` for NFSv3 and v4.1, direct and autofs modes, replica and shared-storage topologies
# lab-timeout: 420
# Per topology (LAB_MATRIX_TOPOLOGIES, default "replica shared"): four clients, each with its own
# agent: client-1 v4.1 direct, client-2 v3 direct, client-3 v4.1 autofs, client-4 v3 autofs
# (automount with a map matching the agent's config). ls every 100 ms on /airflow/dags, failover
# at ~8 s; then `nfsha recover /airflow/dags` on every client, followed by an ls.
dur=${LAB_MATRIX_DURATION:-30}
for topo in ${LAB_MATRIX_TOPOLOGIES:-replica shared}; do
    export LAB_MARK_PREFIX="$topo:"
    lab_setup "$topo" 4
    pids=()
    i=0
    for v in "4.1 direct" "3 direct" "4.1 autofs" "3 autofs"; do
        i=$((i + 1)); c=client-$i
        set -- $v; vers=$1; mode=$2
        opts="hard,timeo=50,retrans=2"
        if [ "$mode" = autofs ]; then
            if [ "$vers" = 3 ]; then
                lab_autofs_start "$c" "vers=3,nolock,$opts" nfs
            else
                lab_autofs_start "$c" "vers=4.1,$opts" nfs
            fi
        fi
        cfg=$(lab_nfsha_config "$c" "$mode" "$vers" "$opts")
        lab_agent_start "$c" "$cfg" >/dev/null
    done
    for i in 1 2 3 4; do
        c=client-$i
        lab_on "$c" ls /airflow/dags >/dev/null 2>&1
        lab_wait_mounted "$c" /airflow/dags 30 || lab_note "$topo $c: /airflow/dags not mounted after 30 s"
    done
    i=0
    for v in v41-direct v3-direct v41-autofs v3-autofs; do
        i=$((i + 1))
        pids+=($(lab_access "client-$i" "$topo-$v" --path /airflow/dags --interval 100ms --duration "${dur}s" --op ls))
    done
    sleep 8
    lab_failover
    lab_access_wait "${pids[@]}"
    i=0
    for v in v41-direct v3-direct v41-autofs v3-autofs; do
        i=$((i + 1)); c=client-$i
        t=$(lab_now_ms)
        timeout 30 bash -c ". /usr/local/lib/nfsha-lab/lablib.sh; lab_nfsha $c recover /airflow/dags" >"$LAB_OUT/recover-$topo-$v.txt" 2>&1
        rc=$?
        lab_figure "${topo}_${v}_recover_cmd_ms" $(( $(lab_now_ms) - t )) ms
        lab_on "$c" timeout 10 ls /airflow/dags >/dev/null 2>&1
        ls_rc=$?
        lab_check "$topo-$v-recover-command" "$([ $rc = 0 ] && [ $ls_rc = 0 ] && echo 1 || echo 0)" "recover exit $rc, ls after it exit $ls_rc"
    done
    lab_report
    for v in v41-direct v3-direct v41-autofs v3-autofs; do
        w=$(lab_q "$topo-$v" /airflow/dags .error_window_ms)
        [ "$(lab_q "$topo-$v" /airflow/dags .failed)" = 0 ] && w=0
        lab_figure "${topo}_${v}_error_window_s" "$(lab_ms_to_s "$w")" s
        lab_figure "${topo}_${v}_first_success_after_vip_s" "$(lab_ms_to_s "$(lab_q "$topo-$v" /airflow/dags ".after_marks[\"$topo:vip-moved\"].first_success_ms")")" s
        lab_check "$topo-$v-automatic-recovery" "$(lab_q "$topo-$v" /airflow/dags .recovered)"
    done
    for i in 1 2 3 4; do lab_agent_stop client-$i; done
done
unset LAB_MARK_PREFIX
