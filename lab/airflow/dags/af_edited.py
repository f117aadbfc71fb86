# The airflow-failover lab DAG that the scenario edits during the run (VERSION 1 -> 2 after
# the first failover): the DAG processor must parse the new file from the new server and write
# the new description to the client's metadata DB.
import pendulum
from airflow import DAG
from airflow.operators.empty import EmptyOperator

VERSION = 1

with DAG(
    "af_edited",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    description=f"af-edited v{VERSION}",
) as dag:
    EmptyOperator(task_id=f"noop_v{VERSION}")
