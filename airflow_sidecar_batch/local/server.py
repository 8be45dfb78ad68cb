"""The local endpoint: one loopback URL that speaks AWS Batch, CloudWatch Logs and S3.

Requests whose SigV4 credential scope names ``batch`` go to this package's Batch service; all
others go to moto, a well-kept implementation of S3 and CloudWatch Logs, in the same process.
So boto3, the AWS CLI and the Amazon provider's hooks work against it unchanged.

Routes of its own, under ``/_local/``: ``health``, ``stats`` and ``faults`` (GET, PUT, DELETE; see
:mod:`~airflow_sidecar_batch.local.faults`).
"""

from __future__ import annotations

import io
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
from airflow_sidecar_batch.local.faults import Faults, InvalidFaultsError, error_answer
from airflow_sidecar_batch.local.images import ImageMap
from airflow_sidecar_batch.local.logsink import LogSink

log = logging.getLogger(__name__)

#: moto's default account: every ARN the endpoint hands out names it.
ACCOUNT_ID = "123456789012"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
#: The WSGI environ key naming the job whose network namespace a request came from.
_JOB_KEY = "sidecar_batch.job_name"
# Fault documents are small; a bigger body is a mistake, not a document.
_MAX_FAULTS_BODY = 1 << 20


class LocalEndpoint:
    """Serve Batch, CloudWatch Logs and S3 on ``http://127.0.0.1:PORT``.

    :param port: the port on 127.0.0.1; 0 picks a free one.
    :param images: mapping files saying which local program each image stands for.
    :param region: the Region every answer is given for.
    :param max_jobs: how many jobs may run at once (1 when no network namespace can be made).
    :param buckets: S3 buckets to create at start.
    :param stop_grace_seconds: how long a container has after ``SIGTERM`` before ``SIGKILL``.
    :param faults: the fault rules to start with; changed at runtime through ``/_local/faults``.
    """

    def __init__(
        self,
        port: int = 0,
        images: Sequence[Path] = (),
        region: str = "us-east-1",
        max_jobs: int = 4,
        buckets: Sequence[str] = (),
        stop_grace_seconds: float = 10.0,
        faults: Faults | None = None,
    ) -> None:
        self.region = region
        self.faults = faults or Faults()
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, self, threaded=True)
        self.port = self._server.server_port
        self.logs = LogSink(ACCOUNT_ID, region, self.faults)
        self.executor = JobExecutor(
            images=ImageMap.load(*images),
            logs=self.logs,
            serve_inside=self._serve_on,
            endpoint_port=self.port,
            max_jobs=max_jobs,
            stop_grace_seconds=stop_grace_seconds,
            faults=self.faults,
        )
        self.batch = BatchBackend(region, ACCOUNT_ID, self.executor.start, self.executor.terminate)
        self.executor.backend = self.batch
        self._batch_api = BatchApi(self.batch.handlers())
        self._thread: threading.Thread | None = None
        self._buckets = list(buckets)
        # Health answers 503 until start() has made the buckets: ready means usable.
        self._ready = threading.Event()

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
        self._ready.set()
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
        if self.faults.summary():
            log.info("Faults in force: %s", self.faults.summary())
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

    def _serve_on(self, sock: Any, job_name: str) -> Callable[[], None]:
        """Serve this endpoint on a socket that lives in a job's network namespace."""

        # Marks the requests of this job's containers, for faults scoped to the job.
        def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
            environ[_JOB_KEY] = job_name
            return self(environ, start_response)

        server = make_server("127.0.0.1", self.port, app, threaded=True, fd=sock.fileno())
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
            return self._local_api(path, environ, start_response)
        service = _service(environ)
        api = self._count(service, environ)
        injected = self.faults.for_call(api, lambda: self._jobs_involved(service, environ))
        if injected is not None:
            log.debug("Fault injected: %s %s answered %s", injected.kind, api, injected.status)
            status, headers, body = error_answer(service, injected)
            start_response(status, headers)
            return [body]
        if service == "batch":
            return self._batch_api(environ, start_response)
        return self._moto(environ, start_response)

    def _count(self, service: str, environ: dict[str, Any]) -> str:
        """Count the call under its ``<service>.<operation>`` and return that name."""
        if service == "batch":
            operation, _ = operation_for(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        elif "HTTP_X_AMZ_TARGET" in environ:
            operation = environ["HTTP_X_AMZ_TARGET"].rpartition(".")[2]
        else:
            operation = environ["REQUEST_METHOD"]
        api = f"{service}.{operation}"
        with self._calls_lock:
            self.calls[api] += 1
        return api

    def _jobs_involved(self, service: str, environ: dict[str, Any]) -> list[str]:
        """Return the names of the jobs a call names, or whose container made it."""
        names = [environ[_JOB_KEY]] if _JOB_KEY in environ else []
        if service not in ("batch", "logs"):
            return names
        body = _peek_json(environ)
        if service == "logs":
            streams = [body.get("logStreamName"), *_list(body.get("logStreamNames"))]
            found = (self.logs.job_name(s) for s in streams if isinstance(s, str))
            return names + [name for name in found if name]

        names += [body["jobName"]] if isinstance(body.get("jobName"), str) else []
        ids = [body.get("jobId"), *_list(body.get("jobs"))]
        with self.batch.lock:
            jobs = self.batch.jobs
            names += [jobs[i]["jobName"] for i in ids if isinstance(i, str) and i in jobs]
        for entry in _list(body.get("filters")):
            if isinstance(entry, dict) and entry.get("name") == "JOB_NAME":
                patterns = [v for v in _list(entry.get("values")) if isinstance(v, str)]
                names += [pattern.rstrip("*") for pattern in patterns]
        return names

    def _local_api(
        self, path: str, environ: dict[str, Any], start_response: Callable
    ) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        if path == "/_local/faults":
            return self._faults_api(method, environ, start_response)
        if method != "GET" or path not in ("/_local/health", "/_local/stats"):
            return _json(start_response, "404 Not Found", {"message": f"no route {method} {path}"})
        if path == "/_local/health":
            if not self._ready.is_set():
                return _json(start_response, "503 Service Unavailable", {"status": "starting"})
            return _json(start_response, "200 OK", {"status": "ok", "region": self.region})
        with self._calls_lock:
            calls = dict(sorted(self.calls.items()))
        body = {
            "calls": calls,
            "peak_jobs": self.executor.peak_jobs,
            "faults": self.faults.counts(),
        }
        return _json(start_response, "200 OK", body)

    def _faults_api(
        self, method: str, environ: dict[str, Any], start_response: Callable
    ) -> list[bytes]:
        if method == "GET":
            return _json(start_response, "200 OK", self.faults.document())
        if method == "DELETE":
            return _json(start_response, "200 OK", self.faults.clear())
        if method != "PUT":
            message = f"{method} /_local/faults is not served; use GET, PUT or DELETE"
            return _json(start_response, "405 Method Not Allowed", {"message": message})

        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > _MAX_FAULTS_BODY:
            message = f"a fault document of {length} bytes is too big; the limit is 1 MiB"
            return _json(start_response, "400 Bad Request", {"message": message})
        try:
            document = json.loads(environ["wsgi.input"].read(length) or b"null")
            answer = self.faults.replace(document)
        except json.JSONDecodeError as error:
            message = f"the fault document is not JSON: {error}"
            return _json(start_response, "400 Bad Request", {"message": message})
        except InvalidFaultsError as error:
            return _json(start_response, "400 Bad Request", {"message": str(error)})
        return _json(start_response, "200 OK", answer)


def _json(start_response: Callable, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(status, headers)
    return [data]


def _peek_json(environ: dict[str, Any]) -> dict[str, Any]:
    """Read a JSON request body and put it back, so the service called next reads it whole."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        # The service itself will refuse it, in its own words.
        return {}
    return body if isinstance(body, dict) else {}


def _list(value: Any) -> list[Any]:
    # Request bodies are peeked at before the service checks them: take only what is well formed.
    return value if isinstance(value, list) else []


def _service(environ: dict[str, Any]) -> str:
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(2) if match else "unsigned"
