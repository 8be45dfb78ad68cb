"""A DAG for the deferral tests that need a real scheduler and triggerer (tests/test_stack.py).

Its job pairs two small stand-in programs (tests/programs); a run's conf says how many lines the
pipeline prints and how far apart, so a test can keep the job running while it acts.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_sidecar_batch.operators import SidecarBatchOperator
from tests.support import stand_in_definition

with DAG(
    dag_id="deferral_stack",
    schedule=None,
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    catchup=False,
) as dag:
    SidecarBatchOperator(
        task_id="export",
        job_definition=stand_in_definition("deferral-stack"),
        job_queue="sidecar-local",
        job_name="stack-{{ dag_run.conf.get('name', 'job') }}",
        container_overrides={
            "data-pipeline": {
                "environment": {
                    "LINES": "{{ dag_run.conf.get('lines', 20) }}",
                    "LINE_INTERVAL": "{{ dag_run.conf.get('interval', 0) }}",
                }
            }
        },
        aws_conn_id="sidecar_batch",
        waiter_delay=2,
        final_log_wait=1,
    )
