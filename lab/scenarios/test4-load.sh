# lab-summary: seed Test 4: 100 concurrent readers (ls + cat *.py every 1 s) through a failover; nfsha, seed, floor one after another
# lab-timeout: 420
# One round per method (LAB_T4_METHODS, default "nfsha seed floor"; one at a time because 300
# reader threads at once starve the emulated CPU): a fresh client, 100 worker threads
# (`nfsha drill access --workers 100 --interval 1s --op ls-read` on /airflow/dags), failover
# at ~10 s, marks prefixed with the method ("nfsha:vip-moved").
dur=${LAB_T4_DURATION:-50}
workers=${LAB_T4_WORKERS:-100}
for m in ${LAB_T4_METHODS:-nfsha seed floor}; do
    export LAB_MARK_PREFIX="$m:"
    lab_setup "${LAB_TOPOLOGY_T4:-replica}" 1
    extra=()
    case $m in
        nfsha)
            cfg=$(lab_nfsha_config client-1 direct 4.1)
            lab_agent_start client-1 "$cfg" >/dev/null
            lab_wait_mounted client-1 /airflow/dags 30 || lab_note "nfsha agent did not mount /airflow/dags" ;;
        seed) lab_seed_start client-1 "${LAB_SEED_PHASE:-$((RANDOM % 30))}" ;;
        floor) lab_autofs_start client-1; extra=(--floor) ;;
    esac
    p=$(lab_access client-1 "$m" --path /airflow/dags --interval 1s --duration "${dur}s" --workers "$workers" --op ls-read "${extra[@]}")
    sleep 10
    lab_failover
    lab_access_wait "$p"
    lab_agent_stop client-1
done
unset LAB_MARK_PREFIX
lab_report
for l in ${LAB_T4_METHODS:-nfsha seed floor}; do
    lab_figure "${l}_success_ratio" "$(lab_q $l /airflow/dags .success_ratio)"
    lab_figure "${l}_all_readers_ok_after_vip_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags ".after_marks[\"$l:vip-moved\"].all_workers_ok_ms")")" s
    lab_figure "${l}_first_success_after_vip_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags ".after_marks[\"$l:vip-moved\"].first_success_ms")")" s
    lab_figure "${l}_readers_not_recovered" "$(lab_q $l /airflow/dags .workers_not_recovered)"
    lab_figure "${l}_accesses" "$(lab_q $l /airflow/dags .accesses)"
    lab_figure "${l}_slowest_access_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags .slowest.latency_ms)")" s
done
na=$(lab_q nfsha /airflow/dags '.after_marks["nfsha:vip-moved"].all_workers_ok_ms')
[ "$(lab_q nfsha /airflow/dags .failed)" = 0 ] && na=0
lab_check nfsha-all-readers-recovered "$([ "$(lab_q nfsha /airflow/dags .workers_not_recovered)" = 0 ] && echo 1 || echo 0)"
lab_check nfsha-all-readers-ok-within-5s "$(lab_cmp "$na" '<=' 5000 && echo 1 || echo 0)" "$(lab_ms_to_s "$na") s after vip-moved"
