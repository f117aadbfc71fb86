# lab-summary: a writer holds a file open on /airflow/logs through a failover: seed never recovers ("device is busy"), nfsha does
# lab-timeout: 240
# client-1 nfsha (direct, 4.1), client-2 seed setup (first health check 5 s after the failover).
# On each: an ls loop on /airflow/logs (100 ms), a writer that keeps one fd open and never
# reopens (held-write), and one that reopens after a failed write (held-write --reopen).
# Honest expectation: nfsha recovers the mount (the ls loop and the reopening writer succeed
# again), but the never-reopening writer's fd stays stale: its writes fail until it reopens.
dur=${LAB_OF_DURATION:-70}
lab_setup replica 2
cfg=$(lab_nfsha_config client-1 direct 4.1)
lab_agent_start client-1 "$cfg" >/dev/null
lab_seed_start client-2 25
lab_wait_mounted client-1 /airflow/logs 30 || lab_note "nfsha agent did not mount /airflow/logs"
lab_on client-2 ls /airflow/logs >/dev/null
pids=()
for pair in client-1:nfsha client-2:seed; do
    c=${pair%%:*}; l=${pair#*:}
    pids+=($(lab_access "$c" "$l" --path /airflow/logs --path /airflow/dags --interval 100ms --duration "${dur}s" --op ls))
    pids+=($(lab_access "$c" "$l-held" --path /airflow/logs --interval 500ms --duration "${dur}s" --op held-write))
    pids+=($(lab_access "$c" "$l-reopen" --path /airflow/logs --interval 500ms --duration "${dur}s" --op held-write --reopen))
done
sleep 10
lab_failover
sleep $((dur - 20))
# While the writers still hold their files: what the seed's `umount -a -t nfs,nfs4` runs into.
lab_on client-2 umount -t nfs,nfs4 /airflow/logs >"$LAB_OUT/seed-umount.txt" 2>&1
lab_note "seed: umount /airflow/logs while the writer holds its file: exit $?: $(cat "$LAB_OUT/seed-umount.txt") (health-check log: $(grep -c ERROR "$LAB_OUT"/seed-health-check-client-2.log 2>/dev/null) ERROR lines)"
lab_access_wait "${pids[@]}"
lab_report
for l in nfsha seed; do
    lab_figure "${l}_logs_recovered" "$(lab_q $l /airflow/logs .recovered)"
    lab_figure "${l}_logs_error_window_s" "$(lab_ms_to_s "$(lab_q $l /airflow/logs .error_window_ms)")" s
    lab_figure "${l}_dags_recovered" "$(lab_q $l /airflow/dags .recovered)"
    lab_figure "${l}_held_writer_recovered" "$(lab_q $l-held /airflow/logs .recovered)"
    lab_figure "${l}_reopening_writer_recovered" "$(lab_q $l-reopen /airflow/logs .recovered)"
    lab_figure "${l}_reopening_writer_window_s" "$(lab_ms_to_s "$(lab_q $l-reopen /airflow/logs .error_window_ms)")" s
done
lab_check nfsha-recovers-logs-mount-with-open-file "$(lab_q nfsha /airflow/logs .recovered)"
lab_check nfsha-reopening-writer-recovers "$(lab_q nfsha-reopen /airflow/logs .recovered)"
lab_check seed-does-not-recover-logs "$([ "$(lab_q seed /airflow/logs .recovered)" = false ] && echo 1 || echo 0)" "baseline behaves as the seed documents"
lab_note "held writer (never reopens): nfsha recovered=$(lab_q nfsha-held /airflow/logs .recovered), seed recovered=$(lab_q seed-held /airflow/logs .recovered) — an fd opened before the failover stays stale; the application must reopen"
