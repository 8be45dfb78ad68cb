from __future__ import annotations

from airflow_sidecar_batch.triggers import SidecarBatchJobTrigger


def _trigger() -> SidecarBatchJobTrigger:
    return SidecarBatchJobTrigger(
        job_id="j-1",
        job_name="flights-export-2013-01-01",
        aws_conn_id="sidecar_batch",
        region_name="eu-west-1",
        verify="/etc/ssl/ca.pem",
        botocore_config={"connect_timeout": 5},
        waiter_delay=3,
        final_log_wait=1.5,
    )


def test_serialize_rebuild_serialize_is_identical():
    classpath, kwargs = _trigger().serialize()

    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    rebuilt = cls(**kwargs)

    assert rebuilt.serialize() == (classpath, kwargs)
    assert classpath == "airflow_sidecar_batch.triggers.SidecarBatchJobTrigger"


def test_kwargs_are_json_native():
    import json

    _, kwargs = _trigger().serialize()

    assert json.loads(json.dumps(kwargs)) == kwargs
