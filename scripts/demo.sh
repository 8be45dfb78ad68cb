#!/usr/bin/env bash
# Export 2013-01-01 through the example DAG against the local endpoint, then show the export.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$root"
mkdir -p .demo

[ -f "$AIRFLOW_HOME/airflow.db" ] || airflow db migrate >.demo/db-migrate.log 2>&1

sidecar-batch local --port "$SIDECAR_PORT" --images containers/images.yaml \
    --bucket sidecar-exports >.demo/endpoint.log 2>&1 &
endpoint=$!
trap '{ kill "$endpoint"; wait "$endpoint"; } 2>/dev/null || true' EXIT
python scripts/wait_for_endpoint.py "http://127.0.0.1:$SIDECAR_PORT" "$endpoint" .demo/endpoint.log

echo "== airflow dags test flights_daily_export 2013-01-01"
airflow dags test flights_daily_export 2013-01-01 2>&1 | tee .demo/dags-test.log \
    | grep -E '\[(main-app|data-pipeline)\]|Batch job|job definition|DagRun Finished|error' || true
grep -q "Batch job .* SUCCEEDED" .demo/dags-test.log

echo "== the export"
python scripts/show_export.py "http://127.0.0.1:$SIDECAR_PORT" \
    s3://sidecar-exports/flights/date=2013-01-01/
