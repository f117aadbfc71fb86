# The airflow-failover lab DAG that runs every minute: three short tasks one after the other,
# two writing AFLINE lines to their task log for ~20 s, one reading a data file from the DAG
# folder (af_data.txt). The scenario counts every AFLINE line in the servers' copies of the logs.
import hashlib
import logging
import os
import time

import pendulum
from airflow import DAG
from airflow.operators.python import PythonOperator

LINES = 20  # one per second: the task keeps its log file open and written for ~20 s
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "af_data.txt")
log = logging.getLogger("airflow.task")


def _key(ti):
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}"


def write_lines(ti=None, **_):
    key = _key(ti)
    for i in range(1, LINES + 1):
        log.info("AFLINE %s %d/%d", key, i, LINES)
        time.sleep(1)


def read_data(ti=None, **_):
    with open(DATA, "rb") as f:
        data = f.read()
    lines = data.decode().splitlines()
    if len(lines) != 100 or lines[0] != "af-data 1" or lines[-1] != "af-data 100":
        raise ValueError(f"af_data.txt is not what the scenario wrote: {len(lines)} lines")
    log.info("AFDATA sha256=%s lines=%d", hashlib.sha256(data).hexdigest(), len(lines))
    write_lines(ti)


with DAG(
    "af_minutely",
    schedule="* * * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
) as dag:
    a = PythonOperator(task_id="write_a", python_callable=write_lines)
    d = PythonOperator(task_id="read_data", python_callable=read_data)
    b = PythonOperator(task_id="write_b", python_callable=write_lines)
    a >> d >> b
