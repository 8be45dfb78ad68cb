"""The daily flights export for deployments without a triggerer: ``deferrable=False``.

The same job as ``flights_daily_export``, written to the same place, but the worker waits for it
instead of the triggerer. It streams both containers' logs into the task log with the same lines
and decides success or failure the same way; the cost is a worker slot held for the whole job.
Run one of the two DAGs, not both: each day's export is replaced by whichever ran last.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_sidecar_batch.operators import SidecarBatchOperator
from airflow_sidecar_batch.timetables import LocalDailyTimetable

NEW_YORK = "America/New_York"
DAY = "{{ data_interval_start.in_timezone('America/New_York').to_date_string() }}"
BUCKET = "{{ var.value.get('sidecar_batch_bucket', 'sidecar-exports') }}"

with DAG(
    dag_id="flights_daily_export_sync",
    description="Daily export of the 2013 NYC flights, waiting in the worker (no triggerer)",
    schedule=LocalDailyTimetable(NEW_YORK),
    # Midnight UTC, so `airflow dags test flights_daily_export_sync 2013-01-01` is not before
    # the start; the first scheduled run still begins at New York's midnight.
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    end_date=pendulum.datetime(2013, 12, 31, tz=NEW_YORK),
    catchup=True,
    max_active_runs=4,
    tags=["sidecar-batch", "example"],
) as dag:
    SidecarBatchOperator(
        task_id="export_flights",
        job_definition="../containers/job-definition.json",
        job_queue="{{ var.value.get('sidecar_batch_job_queue', 'sidecar-local') }}",
        job_name=f"flights-export-sync-{DAY}",
        payload={
            "window": {
                "start": "{{ data_interval_start.isoformat() }}",
                "end": "{{ data_interval_end.isoformat() }}",
            },
            "output_uri": f"s3://{BUCKET}/flights/date={DAY}/",
        },
        # Give the app longer to load on a busy machine: 90 readiness attempts a second apart.
        container_overrides={"data-pipeline": {"environment": {"SIDECAR_READY_RETRIES": "90"}}},
        output_location=f"s3://{BUCKET}/flights/date={DAY}/",
        aws_conn_id="sidecar_batch",
        deferrable=False,
        waiter_delay=2,
        final_log_wait=2,
    )
