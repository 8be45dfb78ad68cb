"""The AWS Batch wire protocol (rest-json) of the local endpoint.

Requests are matched to operations and checked against botocore's own Batch model, so what this
endpoint accepts is what boto3 would send to AWS; answers carry AWS's error envelope.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.validate import ParamValidator

log = logging.getLogger(__name__)

_MODEL = botocore.session.get_session().get_service_model("batch")


class BatchApiError(Exception):
    """Raised by the backend for an answer AWS would give as an error."""

    def __init__(self, message: str, code: str = "ClientException", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _routes() -> dict[tuple[str, str], str]:
    routes = {}
    for name in _MODEL.operation_names:
        http = _MODEL.operation_model(name).http
        routes[(http["method"], http["requestUri"].split("/{")[0])] = name
    return routes


_ROUTES = _routes()


def operation_for(method: str, path: str) -> tuple[str | None, dict[str, str]]:
    """Return the Batch operation a request names, and its path arguments."""
    if path.startswith("/v1/tags/"):
        return _ROUTES.get((method, "/v1/tags")), {"resourceArn": unquote(path[len("/v1/tags/") :])}
    return _ROUTES.get((method, path.rstrip("/"))), {}


class BatchApi:
    """A WSGI application that answers Batch requests with ``handlers[operation](**params)``.

    :param handlers: one callable per supported operation name, returning the response dict.
    """

    def __init__(self, handlers: dict[str, Callable[..., dict[str, Any]]]) -> None:
        self._handlers = handlers
        self._validator = ParamValidator()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        operation, path_params = operation_for(method, environ.get("PATH_INFO", ""))
        try:
            if operation is None or operation not in self._handlers:
                raise BatchApiError(
                    f"the local endpoint does not implement {operation or 'this request'}",
                    code="ClientException",
                )
            params = {**self._read_body(environ), **path_params}
            self._validate(operation, params)
            body = self._handlers[operation](**params)
            return _respond(start_response, 200, body)
        except BatchApiError as error:
            log.debug("Batch %s refused: %s", operation, error)
            return _respond(start_response, error.status, {"message": str(error)}, error.code)

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as err:
            raise BatchApiError(f"request body is not JSON: {err.msg}") from err
        if not isinstance(body, dict):
            raise BatchApiError("request body must be a JSON object")
        return body

    def _validate(self, operation: str, params: dict[str, Any]) -> None:
        shape = _MODEL.operation_model(operation).input_shape
        if shape is None:
            return
        report = self._validator.validate(params, shape)
        if report.has_errors():
            raise BatchApiError(report.generate_report())


def _respond(
    start_response: Callable, status: int, body: dict[str, Any], error: str | None = None
) -> list[bytes]:
    data = json.dumps(body, default=str).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if error:
        headers.append(("x-amzn-ErrorType", error))
    reasons = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Server Error"}
    start_response(f"{status} {reasons.get(status, 'Error')}", headers)
    return [data]
