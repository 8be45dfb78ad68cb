from __future__ import annotations

import logging
import time

from airflow_sidecar_batch.watch import JobWatch


def test_a_job_batch_no_longer_knows_ends_the_wait_at_once():
    watch = JobWatch("j-1", "gone", logging.getLogger(__name__), final_log_wait=5.0)

    verdict = watch.observe(None)

    assert verdict.outcome == "finished"
    assert verdict.step.status_reason == "Batch no longer knows the job"
    assert watch.awaiting_late_lines() is False


def test_late_lines_are_awaited_only_until_final_log_wait_after_the_stop():
    watch = JobWatch("j-1", "done", logging.getLogger(__name__), final_log_wait=5.0)
    job = {"jobId": "j-1", "jobName": "done", "status": "SUCCEEDED", "ecsProperties": {}}

    watch.observe({**job, "stoppedAt": int(time.time() * 1000)})
    assert watch.awaiting_late_lines() is True

    watch.observe({**job, "stoppedAt": int((time.time() - 6) * 1000)})
    assert watch.awaiting_late_lines() is False
