# lab-summary: the other faults against the agent: hung server, TCP but no RPC (mountd dead; a bare listener), client cut off, crash; agent stays responsive and recovers
# lab-timeout: 360
# client-1 runs the agent (direct, NFSv4.1) and an ls every 100 ms on /airflow/dags for the
# whole scenario. Faults in sequence, each followed by its repair: nfs-1 hung (drops all
# packets, VIP stays) → unhang; nfs-1 mountd killed → restarted; nfs-1 replaced by a listener
# on 2049 that accepts and never answers → nfsd back; client-1 cut off → reconnected;
# nfs-1 crashes (link down, no orderly stop) → VIP to nfs-2. During every fault `nfsha status`
# must answer within 5 s; after every repair the first successful access is measured.
dur=${LAB_FAULTS_DURATION:-160}
lab_setup replica 1
cfg=$(lab_nfsha_config client-1 direct 4.1)
lab_agent_start client-1 "$cfg" >/dev/null
lab_wait_mounted client-1 /airflow/dags 30 || lab_note "nfsha agent did not mount /airflow/dags"
p=$(lab_access client-1 nfsha --path /airflow/dags --interval 100ms --duration "${dur}s" --op ls)
status_check() {
    local t rc; t=$(lab_now_ms)
    timeout 5 bash -c ". /usr/local/lib/nfsha-lab/lablib.sh; lab_nfsha client-1 status --json" >"$LAB_OUT/status-$1.json" 2>&1
    rc=$?
    lab_figure "status_during_$1_ms" $(( $(lab_now_ms) - t )) ms
    lab_check "agent-answers-during-$1" "$([ $rc = 0 ] && echo 1 || echo 0)" "nfsha status exit $rc"
}
sleep 5
lab_hang nfs-1; sleep 10; status_check hang; lab_unhang nfs-1; sleep 15
lab_norpc nfs-1 mountd; sleep 10; status_check norpc; lab_rpc_restore nfs-1; sleep 20
LAB_MARK_PREFIX=listener: lab_norpc nfs-1 listener; sleep 10; status_check listener
LAB_MARK_PREFIX=listener: lab_rpc_restore nfs-1; sleep 15
lab_cutoff client-1; sleep 10; status_check cutoff; lab_reconnect client-1; sleep 15
lab_crash; sleep 1
lab_access_wait "$p"
lab_report
for m in unhang-nfs-1 rpc-restored-nfs-1 listener:rpc-restored-nfs-1 unhang-client-1 vip-moved; do
    lab_figure "first_success_after_${m}_s" "$(lab_ms_to_s "$(lab_q nfsha /airflow/dags ".after_marks[\"$m\"].first_success_ms")")" s
done
lab_figure slowest_access_s "$(lab_ms_to_s "$(lab_q nfsha /airflow/dags .slowest.latency_ms)")" s
lab_figure success_ratio "$(lab_q nfsha /airflow/dags .success_ratio)"
lab_check nfsha-recovered-at-the-end "$(lab_q nfsha /airflow/dags .recovered)"
