"""Fixtures for the container programs: the real main-app as a subprocess and a moto S3 server."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
APP = CONTAINERS / "main-app" / "app.py"
PIPELINE = CONTAINERS / "data-pipeline" / "pipeline.py"

START_TIMEOUT_SECONDS = 60
LISTENING = re.compile(r"^main-app: serving (\d+) flights on (http://\S+)")


@functools.cache
def load_readiness() -> ModuleType:
    """Import the pipeline image's readiness helper, which ships as a loose file, by its path."""
    # A name of its own, registered in sys.modules, where dataclasses look their module up.
    name = "data_pipeline_readiness"
    spec = importlib.util.spec_from_file_location(
        name, CONTAINERS / "data-pipeline" / "readiness.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class RunningApp:
    """A main-app process, its URL and every line it has printed so far."""

    process: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    listening: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self.read_output, daemon=True)
        self.reader.start()

    def read_output(self) -> None:
        # Drain stdout for the whole life of the process: a full pipe would block the app.
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.match(line)
            if match:
                self.url = match.group(2)
                self.listening.set()
        self.listening.set()

    def get(self, path: str) -> tuple[int, Any]:
        """GET ``path``; return the status and the decoded JSON body, errors included."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def stop(self) -> int:
        """Send SIGTERM, wait for the exit and the last line; return the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.reader.join(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


def start_app(environ: Mapping[str, str] | None = None) -> RunningApp:
    """Start ``app.py`` on a free loopback port and wait for its listening line."""
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", **(environ or {})}
    process = subprocess.Popen(
        [sys.executable, str(APP)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    app = RunningApp(process)
    if not app.listening.wait(START_TIMEOUT_SECONDS) or not app.url:
        process.kill()
        app.stop()
        pytest.fail("main-app did not start listening:\n" + "\n".join(app.lines))
    return app


@pytest.fixture(scope="module")
def main_app() -> Iterator[RunningApp]:
    """One main-app process shared by the tests of a module."""
    app = start_app()
    yield app
    if app.process.poll() is None:
        app.stop()
