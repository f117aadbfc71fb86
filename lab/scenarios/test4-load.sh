# lab-summary: seed Test 4: 100 concurrent readers (ls + cat *.py every 1 s) through a failover; nfsha vs seed vs floor
# lab-timeout: 240
# client-1 nfsha (direct, 4.1), client-2 seed setup, client-3 the floor; 100 worker threads
# each (`nfsha drill access --workers 100 --interval 1s --op ls-read`). Failover at ~10 s.
dur=${LAB_T4_DURATION:-55}
workers=${LAB_T4_WORKERS:-100}
lab_setup "${LAB_TOPOLOGY_T4:-replica}" 3
cfg=$(lab_nfsha_config client-1 direct 4.1)
lab_agent_start client-1 "$cfg" >/dev/null
lab_seed_start client-2 "${LAB_SEED_PHASE:-$((RANDOM % 30))}"
lab_autofs_start client-3
lab_wait_mounted client-1 /airflow/dags 30 || lab_note "nfsha agent did not mount /airflow/dags"
P=(--path /airflow/dags --interval 1s --duration "${dur}s" --workers "$workers" --op ls-read)
pids=($(lab_access client-1 nfsha "${P[@]}") $(lab_access client-2 seed "${P[@]}") $(lab_access client-3 floor "${P[@]}" --floor))
sleep 10
lab_failover
lab_access_wait "${pids[@]}"
lab_report
for l in nfsha seed floor; do
    lab_figure "${l}_success_ratio" "$(lab_q $l /airflow/dags .success_ratio)"
    lab_figure "${l}_all_readers_ok_after_vip_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags '.after_marks["vip-moved"].all_workers_ok_ms')")" s
    lab_figure "${l}_all_readers_ok_after_first_failure_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags .all_workers_ok_ms)")" s
    lab_figure "${l}_readers_not_recovered" "$(lab_q $l /airflow/dags .workers_not_recovered)"
    lab_figure "${l}_accesses" "$(lab_q $l /airflow/dags .accesses)"
done
na=$(lab_q nfsha /airflow/dags '.after_marks["vip-moved"].all_workers_ok_ms')
[ "$(lab_q nfsha /airflow/dags .failed)" = 0 ] && na=0
lab_check nfsha-all-readers-recovered "$([ "$(lab_q nfsha /airflow/dags .workers_not_recovered)" = 0 ] && echo 1 || echo 0)"
lab_check nfsha-all-readers-ok-within-5s "$(lab_cmp "$na" '<=' 5000 && echo 1 || echo 0)" "$(lab_ms_to_s "$na") s after vip-moved"
