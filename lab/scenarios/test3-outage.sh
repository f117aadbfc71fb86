# lab-summary: seed Test 3: complete outage (both servers stopped) and restore; nfsha vs seed vs floor
# lab-timeout: 240
# client-1 nfsha (direct, 4.1), client-2 seed setup, client-3 floor. Accesses every 100 ms on
# /airflow/dags. Outage at ~5 s, nfs-1 restored 20 s later (its NFSv4 grace is 10 s).
# During the outage the agent must stay responsive (`nfsha status` answers within 5 s).
dur=${LAB_T3_DURATION:-75}
lab_setup replica 3
cfg=$(lab_nfsha_config client-1 direct 4.1)
lab_agent_start client-1 "$cfg" >/dev/null
lab_seed_start client-2 "${LAB_SEED_PHASE:-$((RANDOM % 30))}"
lab_autofs_start client-3
lab_wait_mounted client-1 /airflow/dags 30 || lab_note "nfsha agent did not mount /airflow/dags"
P=(--path /airflow/dags --interval 100ms --duration "${dur}s" --op ls)
pids=($(lab_access client-1 nfsha "${P[@]}") $(lab_access client-2 seed "${P[@]}") $(lab_access client-3 floor "${P[@]}" --floor))
sleep 5
lab_outage
sleep 8
t=$(lab_now_ms)
timeout 5 bash -c ". /usr/local/lib/nfsha-lab/lablib.sh; lab_nfsha client-1 status --json" >"$LAB_OUT/status-during-outage.json" 2>&1
rc=$?
lab_figure nfsha_status_during_outage_ms $(( $(lab_now_ms) - t )) ms
lab_check agent-answers-during-outage "$([ $rc = 0 ] && echo 1 || echo 0)" "nfsha status exit $rc"
sleep 12
lab_restore nfs-1
lab_access_wait "${pids[@]}"
lab_report
for l in nfsha seed floor; do
    lab_figure "${l}_first_success_after_restore_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags '.after_marks["restored"].first_success_ms')")" s
    lab_figure "${l}_error_window_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags .error_window_ms)")" s
    lab_figure "${l}_slowest_access_s" "$(lab_ms_to_s "$(lab_q $l /airflow/dags .slowest.latency_ms)")" s
    lab_figure "${l}_recovered" "$(lab_q $l /airflow/dags .recovered)"
done
nr=$(lab_q nfsha /airflow/dags '.after_marks["restored"].first_success_ms')
lab_check nfsha-recovered-after-restore "$(lab_q nfsha /airflow/dags .recovered)"
lab_check nfsha-first-success-within-grace-plus-5s "$(lab_cmp "$nr" '<=' 15000 && echo 1 || echo 0)" "$(lab_ms_to_s "$nr") s after restore (grace 10 s)"
