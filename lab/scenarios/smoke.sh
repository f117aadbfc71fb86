# lab-summary: the lab itself: servers export, a client mounts v3 and v4.1, autofs mounts, failover gives ESTALE
# lab-timeout: 180
lab_setup replica 2
lab_on client-1 mkdir -p /mnt/v4 /mnt/v3
t=$(lab_now_ms)
lab_on client-1 mount -t nfs -o vers=4.1,soft,timeo=10,retrans=2 "$LAB_VIP:/srv/airflow/dags" /mnt/v4
lab_check mount-v41 $([ $? = 0 ] && echo 1 || echo 0)
lab_figure mount_v41_ms $(( $(lab_now_ms) - t )) ms
t=$(lab_now_ms)
lab_on client-1 mount -t nfs -o vers=3,nolock,soft,timeo=10,retrans=2 "$LAB_VIP:/srv/airflow/dags" /mnt/v3
lab_check mount-v3 $([ $? = 0 ] && echo 1 || echo 0)
lab_figure mount_v3_ms $(( $(lab_now_ms) - t )) ms
lab_check read-v41 $(lab_on client-1 cat /mnt/v4/hello.txt | grep -q hello && echo 1 || echo 0)
lab_autofs_start client-2
t=$(lab_now_ms)
lab_check autofs-read $(lab_on client-2 cat /airflow/dags/hello.txt | grep -q hello && echo 1 || echo 0)
lab_figure autofs_first_access_ms $(( $(lab_now_ms) - t )) ms
# The loop must outlast the failover (10 s from its start on a loaded host, 4 s on a quiet one).
p=$(lab_access client-1 probe --path /mnt/v4 --path /mnt/v3 --interval 100ms --duration 20s --op ls)
sleep 2
lab_failover
lab_access_wait "$p"
out=$(lab_on client-1 ls /mnt/v4 2>&1)
lab_note "ls after failover: $out"
lab_check estale-v41 $(grep -qi 'stale' <<<"$out" && echo 1 || echo 0) "$out"
lab_report
lab_check drill-saw-failure $(lab_cmp "$(lab_q probe /mnt/v4 .failed)" '>' 0 && echo 1 || echo 0)
