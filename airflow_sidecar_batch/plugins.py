"""Register this package's timetable with Airflow, which serialises only registered ones."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_sidecar_batch.timetables import LocalDailyTimetable


class SidecarBatchPlugin(AirflowPlugin):
    """Makes :class:`~airflow_sidecar_batch.timetables.LocalDailyTimetable` usable in DAGs."""

    name = "sidecar_batch"
    # AirflowPlugin reads a plain list attribute; ClassVar would not match its declaration.
    timetables = [LocalDailyTimetable]  # noqa: RUF012
