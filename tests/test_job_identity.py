from __future__ import annotations

from types import SimpleNamespace

from airflow_sidecar_batch.job_identity import TaskIdentity


def _context(run_id="scheduled__2013-01-01T05:00:00+00:00", map_index=-1, clear_number=0):
    ti = SimpleNamespace(dag_id="flights", task_id="export", run_id=run_id, map_index=map_index)
    return {"ti": ti, "dag_run": SimpleNamespace(clear_number=clear_number)}


def test_a_retry_keeps_the_identity_a_clear_changes_it():
    first = TaskIdentity.from_context(_context())
    retry = TaskIdentity.from_context(_context())
    cleared = TaskIdentity.from_context(_context(clear_number=1))

    assert retry.job_name("export") == first.job_name("export")
    assert cleared.job_name("export") != first.job_name("export")
    assert cleared.tags()["sidecar-batch:clear-number"] == "1"


def test_mapped_tasks_get_names_of_their_own():
    names = {TaskIdentity.from_context(_context(map_index=i)).job_name("export") for i in range(3)}

    assert len(names) == 3


def test_the_name_is_valid_and_within_128_characters_whatever_the_base():
    name = TaskIdentity.from_context(_context()).job_name("déjà vu: " + "x" * 300)

    assert len(name) <= 128
    assert name[0].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def test_a_job_belongs_to_the_identity_whose_tags_it_carries():
    identity = TaskIdentity.from_context(_context())
    other = TaskIdentity.from_context(_context(run_id="manual__other"))

    assert identity.owns({"tags": identity.tags()})
    assert not other.owns({"tags": identity.tags()})
