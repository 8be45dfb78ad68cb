"""A daily timetable whose runs are whole local days, including for manual runs and tests.

Airflow's cron timetables give a manual run the last *complete* interval before its date, so
``airflow dags test DAG 2013-01-01`` of a daily DAG would process 2012-12-31, or nothing at all.
Here a manual run for a date processes that date's local day.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable
from pendulum import DateTime
from pendulum.tz.timezone import FixedTimezone, Timezone


class LocalDailyTimetable(CronDataIntervalTimetable):
    """One run per calendar day of ``timezone``, from local midnight to the next local midnight.

    Days are 23 or 25 hours long when the clocks change. A manual run whose date is a midnight,
    in ``timezone`` or in UTC (how ``airflow dags test DAG 2013-01-01`` gives the date), covers
    that date's local day; any other manual run covers the last complete local day, as
    Airflow's own cron timetables do.

    :param timezone: an IANA zone name such as ``America/New_York``.
    """

    def __init__(self, timezone: str | Timezone | FixedTimezone = "UTC") -> None:
        zone = pendulum.timezone(timezone) if isinstance(timezone, str) else timezone
        super().__init__("0 0 * * *", zone)

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> LocalDailyTimetable:
        return cls(data["timezone"])

    def serialize(self) -> dict[str, Any]:
        return {"timezone": self._timezone.name}

    @property
    def summary(self) -> str:
        return f"daily, {self._timezone.name} days"

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        local = run_after.in_timezone(self._timezone)
        utc = run_after.in_timezone("UTC")
        if _is_midnight(local):
            day = local.date()
        elif _is_midnight(utc):
            day = utc.date()
        else:
            return super().infer_manual_data_interval(run_after=run_after)
        start = pendulum.datetime(day.year, day.month, day.day, tz=self._timezone)
        return DataInterval(start=start.in_timezone("UTC"), end=self._get_next(start))


def _is_midnight(moment: DateTime) -> bool:
    return (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)
