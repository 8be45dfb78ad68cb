"""The local endpoint: one loopback URL that speaks AWS Batch, CloudWatch Logs and S3.

Requests whose SigV4 credential scope names ``batch`` go to this package's Batch service; all
others go to moto, a well-kept implementation of S3 and CloudWatch Logs, in the same process.
So boto3, the AWS CLI and the Amazon provider's hooks work against it unchanged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import boto3
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from airflow_sidecar_batch.local.api import BatchApi, operation_for
from airflow_sidecar_batch.local.backend import DEFAULT_QUEUE, BatchBackend
from airflow_sidecar_batch.local.executor import JobExecutor
from airflow_sidecar_batch.local.images import ImageMap
from airflow_sidecar_batch.local.logsink import LogSink

log = logging.getLogger(__name__)

#: moto's default account: every ARN the endpoint hands out names it.
ACCOUNT_ID = "123456789012"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


class LocalEndpoint:
    """Serve Batch, CloudWatch Logs and S3 on ``http://127.0.0.1:PORT``.

    :param port: the port on 127.0.0.1; 0 picks a free one.
    :param images: mapping files saying which local program each image stands for.
    :param region: the Region every answer is given for.
    :param max_jobs: how many jobs may run at once (1 when no network namespace can be made).
    :param buckets: S3 buckets to create at start.
    """

    def __init__(
        self,
        port: int = 0,
        images: Sequence[Path] = (),
        region: str = "us-east-1",
        max_jobs: int = 4,
        buckets: Sequence[str] = (),
        stop_grace_seconds: float = 10.0,
    ) -> None:
        self.region = region
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, self, threaded=True)
        self.port = self._server.server_port
        self.executor = JobExecutor(
            images=ImageMap.load(*images),
            logs=LogSink(ACCOUNT_ID, region),
            serve_inside=self._serve_on,
            endpoint_port=self.port,
            max_jobs=max_jobs,
            stop_grace_seconds=stop_grace_seconds,
        )
        self.batch = BatchBackend(region, ACCOUNT_ID, self.executor.start, self.executor.terminate)
        self.executor.backend = self.batch
        self._batch_api = BatchApi(self.batch.handlers())
        self._thread: threading.Thread | None = None
        self._buckets = list(buckets)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalEndpoint:
        """Serve in a background thread and create the configured buckets."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-endpoint")
        self._thread.daemon = True
        self._thread.start()
        for bucket in self._buckets:
            self._create_bucket(bucket)
        log.info(
            "Local endpoint on %s: Batch, CloudWatch Logs and S3; job queue %s; "
            "%d job(s) at once, %s",
            self.url,
            DEFAULT_QUEUE,
            self.executor.max_jobs,
            "each in its own network namespace"
            if self.executor.isolated
            else "sharing this machine's localhost",
        )
        return self

    def stop(self) -> None:
        """Stop serving; running jobs are terminated."""
        for job_id in list(self.batch.jobs):
            self.executor.terminate(job_id, "local endpoint stopped")
        self._server.shutdown()
        self._server.server_close()

    def _create_bucket(self, name: str) -> None:
        s3 = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if name not in existing:
            s3.create_bucket(Bucket=name)

    def _serve_on(self, sock: Any) -> Callable[[], None]:
        """Serve this endpoint on a socket that lives in a job's network namespace."""
        server = make_server("127.0.0.1", self.port, self, threaded=True, fd=sock.fileno())
        sock.close()
        thread = threading.Thread(target=server.serve_forever, name="local-endpoint-job")
        thread.daemon = True
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()

        return stop

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_local/"):
            return self._local_api(path, start_response)
        service = _service(environ)
        self._count(service, environ)
        if service == "batch":
            return self._batch_api(environ, start_response)
        return self._moto(environ, start_response)

    def _count(self, service: str, environ: dict[str, Any]) -> None:
        if service == "batch":
            operation, _ = operation_for(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        elif "HTTP_X_AMZ_TARGET" in environ:
            operation = environ["HTTP_X_AMZ_TARGET"].rpartition(".")[2]
        else:
            operation = environ["REQUEST_METHOD"]
        with self._calls_lock:
            self.calls[f"{service}.{operation}"] += 1

    def _local_api(self, path: str, start_response: Callable) -> list[bytes]:
        if path == "/_local/health":
            body: dict[str, Any] = {"status": "ok", "region": self.region}
        elif path == "/_local/stats":
            with self._calls_lock:
                calls = dict(sorted(self.calls.items()))
            body = {"calls": calls, "peak_jobs": self.executor.peak_jobs}
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"message": "unknown local route"}']
        data = json.dumps(body).encode("utf-8")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]


def _service(environ: dict[str, Any]) -> str:
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(2) if match else "unsigned"
