"""Run the operator as a worker would, and die the moment SubmitJob has answered."""

import json
import os
import sys

from airflow_sidecar_batch.hooks import SidecarBatchHook
from tests.test_deferral import make_context, make_operator

submit = SidecarBatchHook.submit_job


def submit_then_die(self, request):
    answer = submit(self, request)
    print(json.dumps({"jobId": answer["jobId"]}), flush=True)
    os._exit(137)


SidecarBatchHook.submit_job = submit_then_die
make_operator(sys.argv[1], sys.argv[2]).execute(make_context(sys.argv[3]))
