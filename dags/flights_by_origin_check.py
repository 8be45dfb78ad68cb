"""Check a day's per-origin exports against the day's whole export, as soon as they are published.

Scheduled on the Asset ``nyc_flights_by_origin``, which ``flights_by_origin`` updates once a
day's three origin exports (EWR, JFK, LGA) have succeeded. For each day named by the Asset
events, it reads the three origins' manifests and the manifest of ``flights_daily_export`` for
that day, and fails unless every origin covers the same window and their row counts add up to
the day's. Run by hand, ``airflow dags test flights_by_origin_check 2013-01-01`` checks the day
of the logical date.

The manifests are read with the Amazon provider's ``S3Hook`` over the same ``sidecar_batch``
connection the jobs use, so this works against AWS and against the local endpoint alike.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import DAG, Asset, Variable, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger("flights_by_origin_check")

ORIGINS = ("EWR", "JFK", "LGA")
# The same Asset as in flights_by_origin.py: Assets are matched by name.
FLIGHTS_BY_ORIGIN = Asset(name="nyc_flights_by_origin")


class MissingExportError(RuntimeError):
    """Raised when an export has no manifest yet; the task's retries wait for it."""


def read_manifest(s3: S3Hook, bucket: str, prefix: str) -> dict[str, Any]:
    """Return the manifest under ``prefix``; it is written last, so it marks a complete export."""
    key = f"{prefix}manifest.json"
    if not s3.check_for_key(key, bucket_name=bucket):
        raise MissingExportError(
            f"no s3://{bucket}/{key}: that export has not completed (or it failed)"
        )
    return dict(json.loads(s3.read_key(key, bucket_name=bucket)))


def check_day(s3: S3Hook, bucket: str, day: str) -> dict[str, int]:
    """Compare one day's origin exports with its whole export; return the row counts."""
    whole = read_manifest(s3, bucket, f"flights/date={day}/")
    counts: dict[str, int] = {}
    for origin in ORIGINS:
        manifest = read_manifest(s3, bucket, f"flights_by_origin/date={day}/origin={origin}/")
        if manifest["origin"] != origin or manifest["window"] != whole["window"]:
            raise AirflowFailException(
                f"{day}: the {origin} export covers {manifest['window']} for origin "
                f"{manifest['origin']!r}; expected {whole['window']} for {origin!r}"
            )
        counts[origin] = manifest["row_count"]

    if sum(counts.values()) != whole["row_count"]:
        added = " + ".join(f"{origin} {n}" for origin, n in counts.items())
        raise AirflowFailException(
            f"{day}: {added} = {sum(counts.values())} rows, but the day's export "
            f"s3://{bucket}/flights/date={day}/ has {whole['row_count']}"
        )
    return {**counts, "day": whole["row_count"]}


with DAG(
    dag_id="flights_by_origin_check",
    description="Check that the per-origin exports of a day add up to the day's export",
    schedule=[FLIGHTS_BY_ORIGIN],
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sidecar-batch", "example"],
) as dag:
    # flights_daily_export may finish the same day after this DAG starts: retries wait for it.
    @task(retries=3, retry_delay=timedelta(minutes=10))
    def check_row_counts(
        *, triggering_asset_events: Any = None, logical_date: Any = None
    ) -> dict[str, dict[str, int]]:
        """Check every day the triggering Asset events name, or the logical date's day."""
        events = triggering_asset_events[FLIGHTS_BY_ORIGIN] if triggering_asset_events else []
        days = sorted({event.extra["day"] for event in events if "day" in event.extra})
        if not days:
            days = [logical_date.in_timezone("UTC").to_date_string()]

        s3 = S3Hook(aws_conn_id="sidecar_batch")
        bucket = Variable.get("sidecar_batch_bucket", default="sidecar-exports")
        checked = {day: check_day(s3, bucket, day) for day in days}
        for day, counts in checked.items():
            log.info(
                "%s: EWR %d + JFK %d + LGA %d = %d rows, the day's count",
                day,
                *(counts[key] for key in (*ORIGINS, "day")),
            )
        return checked

    check_row_counts()
