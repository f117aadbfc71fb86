# lab-summary: seed Test 5 with real Apache Airflow 2.10.5: nfsha (client-1) vs the seed's autofs + 30 s check (client-2), replica failover then crash while tasks run
# lab-timeout: 2700
# lab-packages: python3
# lab-prepare: airflow/prepare.sh
# lab-mem: 3072
# lab-files: airflow/dags
#
# Airflow 2.10.5 (lab/airflow/requirements.txt, installed on the host by lab/airflow/prepare.sh
# into a tree the guest imports over the 9p share) on two clients with the seed's layout: DAGs in
# /airflow/dags, logs in /airflow/logs (per client: /airflow/logs/client-N), both NFS from the VIP.
# client-1: nfsha agent in direct mode; client-2: the seed's autofs + 30 s health check.
# Each client: `airflow scheduler` (its DAG processor is the scheduler's child: the standalone
# dag-processor refuses SQLite), SequentialExecutor, SQLite metadata DB in AIRFLOW_HOME on
# local disk (/var/lab/client-N/airflow). Why not PostgreSQL + LocalExecutor: a second server
# process per client under TCG costs memory and CPU the two Airflows need; what NFS breaks is
# the log files, the DAG folder and the DAG processor, which SequentialExecutor exercises too.
# Sequence: tasks running -> replica failover nfs-1 -> nfs-2 (file handles change) -> af_edited.py
# edited (VERSION 1 -> 2, on both servers' storage: a deploy) -> next success -> nfs-1 back ->
# crash of nfs-2 (link down) with the VIP to nfs-1 while a task runs -> next success -> settle.
# Figures per method (nfsha, seed), from each client's metadata DB and the servers' copies of
# the logs. Gate (nfsha only): no failed or stuck task instance, every AFLINE line of every
# task in the servers' log copies, the edit picked up, scheduler never restarted.

AF_TAR=$(ls "$LAB_SHARE"/prep/airflow-site-*/site.tar 2>/dev/null | head -1)
AF_SITE=/opt/airflow-site                       # unpacked from AF_TAR (RAM-backed root, shared by the clients)
AF_LINES=20                                    # af_minutely.py: LINES
AF_START_DEADLINE=${AF_START_DEADLINE:-900}    # first success on both clients after the schedulers start
AF_PHASE_DEADLINE=${AF_PHASE_DEADLINE:-420}    # success after a failover, edit picked up
AF_SETTLE_DEADLINE=${AF_SETTLE_DEADLINE:-300}  # in-flight task instances reach a final state
AF_CLIENTS="client-1 client-2"
declare -A AF_METHOD=([client-1]=nfsha [client-2]=seed)

af_home() { echo "/var/lab/$1/airflow"; }
# af_env CLIENT: the wrapper every Airflow command of CLIENT runs through (config as env), also
# installed as `airflow` on the PATH: SequentialExecutor runs each task as `airflow tasks run`.
af_env() {
    local c=$1 h; h=$(af_home "$c")
    mkdir -p "$h/bin"
    cat >"$h/af.sh" <<EOF
#!/bin/bash
export PATH=$h/bin:\$PATH
export PYTHONPATH=$AF_SITE PYTHONDONTWRITEBYTECODE=1 AIRFLOW_HOME=$h
export AIRFLOW__CORE__DAGS_FOLDER=/airflow/dags
export AIRFLOW__CORE__EXECUTOR=SequentialExecutor
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=120
export AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT=180
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$h/airflow.db
export AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS=False
export AIRFLOW__LOGGING__BASE_LOG_FOLDER=/airflow/logs/$c
export AIRFLOW__LOGGING__DAG_PROCESSOR_MANAGER_LOG_LOCATION=/airflow/logs/$c/dag_processor_manager/dag_processor_manager.log
export AIRFLOW__SCHEDULER__CHILD_PROCESS_LOG_DIRECTORY=/airflow/logs/$c/scheduler
export AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR=False
export AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL=10
export AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL=20
export AIRFLOW__SCHEDULER__PARSING_PROCESSES=1
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
export AIRFLOW__WEBSERVER__SECRET_KEY=lab
exec python3 -m airflow "\$@"
EOF
    chmod +x "$h/af.sh"
    ln -sf "$h/af.sh" "$h/bin/airflow"
}
# af_sql CLIENT SQL: rows of SQL on CLIENT's metadata DB ('|'-separated; empty on error).
af_sql() {
    python3 - "$(af_home "$1")/airflow.db" "$2" <<'EOF' 2>>"$LAB_OUT/af-sql.err"
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=20)
for row in con.execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
EOF
}
# Epoch milliseconds of an Airflow UTC timestamp column in SQLite.
AF_MS="CAST((julianday(%s) - 2440587.5) * 86400000 AS INTEGER)"
af_ms() { printf "$AF_MS" "$1"; }
# af_first_success_after CLIENT MS: end (epoch ms) of the first af_minutely task instance that
# started after MS and succeeded; empty when none yet.
af_first_success_after() {
    af_sql "$1" "SELECT min($(af_ms end_date)) FROM task_instance WHERE dag_id='af_minutely'
        AND state='success' AND $(af_ms start_date) > $2" | grep -v '^$'
}
af_running_write() {
    [ -n "$(af_sql "$1" "SELECT 1 FROM task_instance WHERE dag_id='af_minutely' AND state='running'
        AND $(af_ms start_date) < $(($(lab_now_ms) - 4000)) LIMIT 1")" ]
}
af_edit_seen() { [ "$(af_sql "$1" "SELECT description FROM dag WHERE dag_id='af_edited'")" = "af-edited v2" ]; }
af_mark_ms() { jq -r --arg n "$1" 'select(.name == $n) | .ts_ms' "$LAB_OUT/marks.jsonl" | tail -1; }
af_sched_alive() { [ -n "${AF_SCHED[$1]:-}" ] && kill -0 "${AF_SCHED[$1]}" 2>/dev/null; }

# af_wait_phase NAME SINCE_MS DEADLINE: poll (1 s) until both clients had a task instance start
# after SINCE_MS and succeed (and, with AF_WANT_EDIT=1, picked up the edit), or DEADLINE s pass.
# Records af_<method>_<NAME>_first_success_s (null: none within the deadline).
af_wait_phase() {
    local name=$1 since=$2 deadline=$3 c end=$(($(date +%s) + $3)) done_all
    declare -A got=() edit=()
    while :; do
        done_all=1
        for c in $AF_CLIENTS; do
            # A client whose scheduler died gets no more successes: do not wait for it (its
            # figures stay null; af_<method>_scheduler_alive says why).
            af_sched_alive "$c" || continue
            if [ -z "${got[$c]:-}" ]; then
                got[$c]=$(af_first_success_after "$c" "$since")
                [ -n "${got[$c]}" ] && lab_log "af $c ${AF_METHOD[$c]}: first success after $name"
            fi
            [ -n "${got[$c]}" ] || done_all=0
            if [ "${AF_WANT_EDIT:-0}" = 1 ] && [ -z "${edit[$c]:-}" ]; then
                af_edit_seen "$c" && edit[$c]=$(lab_now_ms)
                [ -n "${edit[$c]:-}" ] || done_all=0
            fi
        done
        [ $done_all = 1 ] && break
        [ "$(date +%s)" -ge $end ] && { lab_log "af phase $name: deadline ${deadline}s"; break; }
        sleep 1
    done
    for c in $AF_CLIENTS; do
        local m=${AF_METHOD[$c]} v=null
        [ -n "${got[$c]:-}" ] && v=$(lab_ms_to_s $((got[$c] - since)))
        lab_figure "af_${m}_${name}_first_success_s" "$v" s
        if [ "${AF_WANT_EDIT:-0}" = 1 ]; then
            v=null; [ -n "${edit[$c]:-}" ] && v=$(lab_ms_to_s $((edit[$c] - AF_EDIT_MS)))
            lab_figure "af_${m}_edit_picked_up_s" "$v" s
        fi
    done
}

# af_wait_running_task DEADLINE: until client-1 (the gated client) runs a task (each writes AFLINE
# lines for 20 s once its callable starts) for >4 s.
af_wait_running_task() { lab_wait "$1" af_running_write client-1; }

# af_log_completeness CLIENT: over every af_minutely task instance of CLIENT that ran, count the
# AFLINE lines present in the union of both servers' copies of its log file (the log may be
# split across servers by a failover). Prints "complete incomplete missing_lines tasks".
af_log_completeness() {
    local c=$1
    af_sql "$c" "SELECT run_id, task_id, try_number FROM task_instance WHERE dag_id='af_minutely'
        AND start_date IS NOT NULL AND state IN ('success','failed','up_for_retry','upstream_failed')" >"$LAB_OUT/af-tis-$c.txt"
    python3 - "$c" "$AF_LINES" "$LAB_OUT/af-tis-$c.txt" "$LAB_OUT/af-logs-$c.txt" <<'EOF'
import re, sys
c, lines, tis, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
complete = incomplete = missing = n = 0
with open(out, "w") as rep:
    for row in open(tis):
        row = row.strip()
        if not row:
            continue
        run_id, task_id, tn = row.split("|")
        n += 1
        rel = f"logs/{c}/dag_id=af_minutely/run_id={run_id}/task_id={task_id}/attempt={tn}.log"
        seen = set()
        for srv in ("/srv/nfs-1", "/srv/nfs-2"):
            try:
                text = open(f"{srv}/{rel}", errors="replace").read()
            except OSError:
                continue
            for m in re.finditer(r"AFLINE \S+ (\d+)/(\d+)", text):
                seen.add(int(m.group(1)))
        lost = [i for i in range(1, lines + 1) if i not in seen]
        if lost:
            incomplete += 1
            missing += len(lost)
            rep.write(f"INCOMPLETE {rel}: {len(lost)} of {lines} AFLINE lines missing ({lost[:5]}...)\n")
        else:
            complete += 1
print(complete, incomplete, missing, n)
EOF
}

# ---------------------------------------------------------------- preconditions
if [ -z "$AF_TAR" ] || ! command -v python3 >/dev/null; then
    lab_check airflow-available 0 "no Airflow tree in the share (prep/airflow-site-*/site.tar: run through lab/run.sh, which runs lab/airflow/prepare.sh) or no python3 in the image ($(command -v python3 || echo missing))"
    return 0
fi
t0=$(lab_now_ms)
if [ ! -f "$AF_SITE/.unpacked" ]; then
    rm -rf "$AF_SITE"; mkdir -p "$AF_SITE"
    tar -C "$AF_SITE" -xf "$AF_TAR" && touch "$AF_SITE/.unpacked" ||
        { lab_check airflow-available 0 "unpacking $AF_TAR failed (guest memory $(free -m | awk '/^Mem/{print $7}') MB available)"; return 0; }
fi
lab_figure af_unpack_s "$(lab_ms_to_s $(($(lab_now_ms) - t0)))" s
t0=$(lab_now_ms)
if ! PYTHONPATH=$AF_SITE PYTHONDONTWRITEBYTECODE=1 python3 -c 'import airflow; print(airflow.__version__)' >"$LAB_OUT/af-import.log" 2>&1; then
    lab_check airflow-available 0 "python3 -c 'import airflow' failed: $(tail -1 "$LAB_OUT/af-import.log")"
    return 0
fi
lab_figure af_import_s "$(lab_ms_to_s $(($(lab_now_ms) - t0)))" s
lab_note "Airflow $(cat "$LAB_OUT/af-import.log") from $AF_SITE; python $(python3 -c 'import sys; print(sys.version.split()[0])'); guest memory $(free -m | awk '/^Mem/{print $2}') MB"

# ---------------------------------------------------------------- topology and DAGs
lab_setup replica 2
for s in /srv/nfs-1 /srv/nfs-2; do
    # The DAG repository deployed to both servers (B's copy is made at setup in this topology).
    cp "$LAB_SHARE"/files/dags/*.py "$LAB_SHARE"/files/dags/.airflowignore "$s/dags/"
    for i in $(seq 1 100); do echo "af-data $i"; done >"$s/dags/af_data.txt"
    for c in $AF_CLIENTS; do mkdir -p "$s/logs/$c"; done
    chmod -R a+rwX "$s"
done
ls /srv/nfs-1/dags/af_minutely.py /srv/nfs-1/dags/af_edited.py >/dev/null 2>&1 ||
    { lab_check airflow-dags 0 "the scenario's DAG files are not in the share (files/dags: lab/airflow/dags)"; return 0; }

cfg=$(lab_nfsha_config client-1 direct 4.1)
lab_agent_start client-1 "$cfg" >/dev/null
lab_seed_start client-2
lab_wait_mounted client-1 /airflow/dags 60 && lab_wait_mounted client-1 /airflow/logs 60 ||
    lab_check nfsha-mounted 0 "the agent did not mount /airflow/dags and /airflow/logs in 60 s"
lab_wait 60 lab_on client-2 ls /airflow/dags/af_minutely.py || lab_note "client-2: autofs did not mount /airflow/dags in 60 s"

# ---------------------------------------------------------------- Airflow up
declare -A AF_SCHED=()
t0=$(lab_now_ms)
mig=()
for c in $AF_CLIENTS; do
    af_env "$c"
    lab_bg "$c" "$LAB_OUT/af-migrate-$c.log" "$(af_home "$c")/af.sh" db migrate >"$LAB_STATE/af-mig-$c"
    mig+=("$(cat "$LAB_STATE/af-mig-$c")")
done
lab_wait 900 sh -c "! kill -0 ${mig[*]} 2>/dev/null" || lab_note "db migrate still running after 900 s"
lab_figure af_db_migrate_s "$(lab_ms_to_s $(($(lab_now_ms) - t0)))" s
for c in $AF_CLIENTS; do
    [ -s "$(af_home "$c")/airflow.db" ] || lab_note "$c: db migrate left no database ($(tail -1 "$LAB_OUT/af-migrate-$c.log"))"
    AF_SCHED[$c]=$(lab_bg "$c" "$LAB_OUT/af-scheduler-$c.log" "$(af_home "$c")/af.sh" scheduler)
done
lab_mark airflow-started
t_start=$(lab_now_ms)
lab_log "free memory after start: $(free -m | awk '/^Mem/{print $7}') MB available"
af_wait_phase start "$t_start" "$AF_START_DEADLINE"
lab_figure af_mem_available_mb "$(free -m | awk '/^Mem/{print $7}')" MB
if [ "$(af_first_success_after client-1 "$t_start")" = "" ]; then
    lab_check airflow-runs 0 "no af_minutely task succeeded on client-1 within ${AF_START_DEADLINE}s of the scheduler start (see af-scheduler-client-1.log)"
fi

# ---------------------------------------------------------------- replica failover
af_wait_running_task 240 || lab_note "no task running on client-1 within 240 s: failing over anyway"
lab_failover
t_fo=$(af_mark_ms failover-start)
sleep 10   # not a synchronisation: the edit is a deploy that lands 10 s after the failover
sed -i 's/^VERSION = 1$/VERSION = 2/' /srv/nfs-1/dags/af_edited.py /srv/nfs-2/dags/af_edited.py
touch /srv/nfs-2/dags/af_edited.py
AF_EDIT_MS=$(lab_now_ms)
lab_mark dag-edited
AF_WANT_EDIT=1 af_wait_phase failover "$t_fo" "$AF_PHASE_DEADLINE"

# ---------------------------------------------------------------- crash failover back to nfs-1
lab_server_start nfs-1
lab_wait_grace nfs-1
af_wait_running_task 240 || lab_note "no task running on client-1 within 240 s: crashing anyway"
lab_crash nfs-2 nfs-1
t_cr=$(af_mark_ms server-a-crashed)
af_wait_phase crash "$t_cr" "$AF_PHASE_DEADLINE"

# ---------------------------------------------------------------- settle and measure
# Task instances started before the crash phase ended must reach a final state.
t_end=$(lab_now_ms)
af_inflight() {
    local c n=0
    for c in $AF_CLIENTS; do
        af_sched_alive "$c" || continue   # nothing will finish its task instances: counted as stuck below
        n=$((n + $(af_sql "$c" "SELECT count(*) FROM task_instance WHERE dag_id='af_minutely'
            AND state IN ('running','queued') AND $(af_ms 'coalesce(start_date, queued_dttm)') < $t_end")))
    done
    [ "$n" = 0 ]
}
lab_wait "$AF_SETTLE_DEADLINE" af_inflight || lab_note "task instances still running/queued ${AF_SETTLE_DEADLINE}s after the last phase"
lab_mark settled
# What every process is doing now (a task stuck in the kernel shows as D with its NFS wait).
ps -eo pid,stat,wchan:32,etime,args >"$LAB_OUT/af-ps.txt" 2>&1
for p in $(ps -eo pid=,stat= | awk '$2 ~ /^D/ {print $1}'); do
    echo "== $p $(tr '\0' ' ' </proc/$p/cmdline | cut -c1-200)"; cat "/proc/$p/stack" 2>/dev/null
done >"$LAB_OUT/af-d-state.txt"

for c in $AF_CLIENTS; do
    m=${AF_METHOD[$c]}
    af_sql "$c" "SELECT state, count(*) FROM task_instance WHERE dag_id='af_minutely' GROUP BY state" >"$LAB_OUT/af-states-$c.txt"
    st() { awk -F'|' -v s="$1" '$1 == s {n += $2} END {print n + 0}' "$LAB_OUT/af-states-$c.txt"; }
    ok=$(st success); failed=$(($(st failed) + $(st upstream_failed) + $(st up_for_retry)))
    stuck=$(af_sql "$c" "SELECT count(*) FROM task_instance WHERE dag_id='af_minutely'
        AND state IN ('running','queued','scheduled','restarting','deferred')
        AND $(af_ms 'coalesce(start_date, queued_dttm)') < $t_end")
    stuck=${stuck:-0}
    lab_figure "af_${m}_ti_success" "$ok"
    lab_figure "af_${m}_ti_failed" "$failed"
    lab_figure "af_${m}_ti_stuck" "$stuck"
    af_sql "$c" "SELECT task_id, run_id, state, $(af_ms start_date), $(af_ms end_date) FROM task_instance
        WHERE dag_id='af_minutely' ORDER BY start_date" >"$LAB_OUT/af-tis-all-$c.txt"
    read -r lc_ok lc_bad lc_missing lc_n <<<"$(af_log_completeness "$c")"
    lab_figure "af_${m}_task_logs_complete" "${lc_ok:-0}"
    lab_figure "af_${m}_task_logs_incomplete" "${lc_bad:-null}"
    lab_figure "af_${m}_task_log_lines_missing" "${lc_missing:-null}"
    ie=$(af_sql "$c" "SELECT count(*) FROM import_error")
    lab_figure "af_${m}_import_errors_now" "${ie:-null}"
    # Parse errors and stale handles the DAG processor logged (its logs are on NFS: both servers' copies).
    pe=$(cat /srv/nfs-1/logs/$c/scheduler/*/*.log /srv/nfs-2/logs/$c/scheduler/*/*.log 2>/dev/null |
        grep -c -E 'Stale file handle|Broken DAG|Failed to import|ERROR - ')
    lab_figure "af_${m}_processor_log_errors" "$pe"
    se=$(grep -c -E 'Stale file handle|Errno 116|Input/output error|Errno 5\]' "$LAB_OUT/af-scheduler-$c.log")
    lab_figure "af_${m}_scheduler_stderr_nfs_errors" "$se"
    if af_sched_alive "$c"; then alive=true; restarted=nobody; else alive=false; restarted="needed (nobody did)"; fi
    lab_figure "af_${m}_scheduler_alive" "$alive"
    lab_figure "af_${m}_restart" "$restarted"
    if af_edit_seen "$c"; then lab_figure "af_${m}_edit_picked_up" true; else lab_figure "af_${m}_edit_picked_up" false; fi
    [ "$m" = seed ] && lab_figure af_seed_health_check_runs "$(wc -l <"$LAB_OUT/seed-events-$c.jsonl" 2>/dev/null || echo 0)"
done

# ---------------------------------------------------------------- the gate (nfsha's client)
f() { jq -r --arg n "$1" 'select(.name == $n) | .value' "$LAB_OUT/figures.jsonl" | tail -1; }
lab_check nfsha-tasks-ran "$(lab_cmp "$(f af_nfsha_ti_success)" '>=' 3 && echo 1 || echo 0)" "$(f af_nfsha_ti_success) task instances succeeded"
lab_check nfsha-no-failed-task "$([ "$(f af_nfsha_ti_failed)" = 0 ] && echo 1 || echo 0)" "$(f af_nfsha_ti_failed) failed (seed: $(f af_seed_ti_failed))"
lab_check nfsha-no-stuck-task "$([ "$(f af_nfsha_ti_stuck)" = 0 ] && echo 1 || echo 0)" "$(f af_nfsha_ti_stuck) running/queued after the settle (seed: $(f af_seed_ti_stuck))"
lab_check nfsha-task-logs-complete "$([ "$(f af_nfsha_task_logs_incomplete)" = 0 ] && lab_cmp "$(f af_nfsha_task_logs_complete)" '>' 0 && echo 1 || echo 0)" \
    "$(f af_nfsha_task_logs_complete) complete, $(f af_nfsha_task_logs_incomplete) incomplete ($(f af_nfsha_task_log_lines_missing) lines missing); seed $(f af_seed_task_logs_complete)/$(f af_seed_task_logs_incomplete)"
lab_check nfsha-edit-picked-up "$([ "$(f af_nfsha_edit_picked_up)" = true ] && echo 1 || echo 0)" "after $(f af_nfsha_edit_picked_up_s) s (seed: $(f af_seed_edit_picked_up))"
lab_check nfsha-success-after-failover "$([ "$(f af_nfsha_failover_first_success_s)" != null ] && echo 1 || echo 0)" "$(f af_nfsha_failover_first_success_s) s"
lab_check nfsha-success-after-crash "$([ "$(f af_nfsha_crash_first_success_s)" != null ] && echo 1 || echo 0)" "$(f af_nfsha_crash_first_success_s) s"
lab_check nfsha-no-restart "$([ "$(f af_nfsha_scheduler_alive)" = true ] && echo 1 || echo 0)" "scheduler $(f af_nfsha_restart)"
