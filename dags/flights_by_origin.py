"""Export each New York day of the 2013 NYC flights once per origin airport: three jobs a day.

Dynamic task mapping turns one operator into three AWS Batch jobs a day, EWR, JFK and LGA, each
with the origin in its payload, its job name and its S3 prefix
(``flights_by_origin/date=<day>/origin=<origin>/``). Once all three have succeeded, ``publish``
updates the Asset ``nyc_flights_by_origin`` with the three locations; ``flights_by_origin_check``
is scheduled on that Asset.

The Asset is the outlet of ``publish`` rather than of the mapped task: each mapped task instance
would update it on its own, so a consumer could start after the first airport's export and
before the other two exist.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, task

from airflow_sidecar_batch.operators import SidecarBatchOperator
from airflow_sidecar_batch.timetables import LocalDailyTimetable

NEW_YORK = "America/New_York"
ORIGINS = ("EWR", "JFK", "LGA")
DAY = "{{ data_interval_start.in_timezone('America/New_York').to_date_string() }}"
BUCKET = "{{ var.value.get('sidecar_batch_bucket', 'sidecar-exports') }}"
# Named, not located: the bucket is a Variable, read when a task runs, not when the DAG parses.
FLIGHTS_BY_ORIGIN = Asset(name="nyc_flights_by_origin")


def origin_export(origin: str) -> dict[str, Any]:
    """The arguments of one mapped export; Airflow renders their templates per mapped task."""
    prefix = f"s3://{BUCKET}/flights_by_origin/date={DAY}/origin={origin}/"
    return {
        "job_name": f"flights-{origin}-{DAY}",
        "payload": {
            "window": {
                "start": "{{ data_interval_start.isoformat() }}",
                "end": "{{ data_interval_end.isoformat() }}",
            },
            "origin": origin,
            "output_uri": prefix,
        },
        "output_location": prefix,
    }


with DAG(
    dag_id="flights_by_origin",
    description="Daily export of the 2013 NYC flights, one AWS Batch job per origin airport",
    schedule=LocalDailyTimetable(NEW_YORK),
    # Midnight UTC, as in flights_daily_export: `airflow dags test flights_by_origin 2013-01-01`
    # is then not before the start.
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    end_date=pendulum.datetime(2013, 12, 31, tz=NEW_YORK),
    catchup=True,
    max_active_runs=2,
    tags=["sidecar-batch", "example"],
) as dag:
    exports = SidecarBatchOperator.partial(
        task_id="export_origin",
        job_definition="../containers/job-definition.json",
        job_queue="{{ var.value.get('sidecar_batch_job_queue', 'sidecar-local') }}",
        # Give the app longer to load on a busy machine: 90 readiness attempts a second apart.
        container_overrides={"data-pipeline": {"environment": {"SIDECAR_READY_RETRIES": "90"}}},
        aws_conn_id="sidecar_batch",
        waiter_delay=2,
        final_log_wait=2,
        # Shown for each mapped task in the UI instead of its index.
        map_index_template="{{ task.payload['origin'] }}",
    ).expand_kwargs([origin_export(origin) for origin in ORIGINS])

    @task(outlets=[FLIGHTS_BY_ORIGIN])
    def publish(
        results: list[dict[str, Any]],
        *,
        outlet_events: Any = None,
        data_interval_start: Any = None,
    ) -> dict[str, Any]:
        """Update the Asset once every origin's export has succeeded: the day and its exports."""
        extra = {
            "day": data_interval_start.in_timezone(NEW_YORK).to_date_string(),
            "exports": sorted(result["output_location"] for result in results),
        }
        outlet_events[FLIGHTS_BY_ORIGIN].extra = extra
        return extra

    publish(exports.output)
