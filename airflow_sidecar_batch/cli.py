"""The ``sidecar-batch`` command: run the local endpoint, lint or render a job definition."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

#: Extra image mapping files, separated like PATH; read before any ``--images``.
IMAGES_ENV = "SIDECAR_BATCH_IMAGES"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sidecar-batch`` command line."""
    parser = argparse.ArgumentParser(prog="sidecar-batch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="serve Batch, CloudWatch Logs and S3 on loopback")
    local.add_argument("--port", type=int, default=4599, help="port on 127.0.0.1 (default 4599)")
    local.add_argument(
        "--images",
        type=Path,
        action="append",
        default=[],
        help=f"image mapping file (repeatable; also ${IMAGES_ENV})",
    )
    local.add_argument("--region", default="us-east-1")
    local.add_argument("--max-jobs", type=int, default=4, help="jobs running at once")
    local.add_argument(
        "--bucket", action="append", default=[], help="S3 bucket to create at start (repeatable)"
    )
    local.add_argument(
        "--fault-file",
        type=Path,
        help="fault document (JSON) to start with; change it at runtime through /_local/faults",
    )

    actions = (("lint", "report problems and conversions"), ("render", "print the request"))
    for name, text in actions:
        sub = commands.add_parser(name, help=f"{text} of a job definition file")
        sub.add_argument("file")

    args = parser.parse_args(argv)
    if args.command == "local":
        return _serve(args, local)

    from airflow_sidecar_batch import lint

    command = lint.lint_command if args.command == "lint" else lint.render_command
    return command(args.file)


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from airflow_sidecar_batch.local.faults import Faults, InvalidFaultsError

    try:
        faults = Faults.load(args.fault_file) if args.fault_file else None
    except InvalidFaultsError as error:
        parser.error(str(error))

    from airflow_sidecar_batch.local.server import LocalEndpoint

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # One line per request is noise next to the job lines; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from_env = [Path(p) for p in os.environ.get(IMAGES_ENV, "").split(os.pathsep) if p]
    endpoint = LocalEndpoint(
        port=args.port,
        images=[*from_env, *args.images],
        region=args.region,
        max_jobs=args.max_jobs,
        buckets=args.bucket,
        faults=faults,
    ).start()

    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    endpoint.stop()
    return 0
