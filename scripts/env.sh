# Settings shared by the demo and the backfill: an Airflow home inside the checkout, the
# example DAGs, and a connection that points every AWS call at the local endpoint.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SIDECAR_PORT=${SIDECAR_PORT:-4599}
export PATH="$root/.venv/bin:$PATH"
export AIRFLOW_HOME="$root/.airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# The password is a dummy: Airflow masks it in every log line, so it must be no common word.
endpoint_extra="{\"endpoint_url\": \"http://127.0.0.1:$SIDECAR_PORT\", \
\"region_name\": \"us-east-1\"}"
export AIRFLOW_CONN_SIDECAR_BATCH="{\"conn_type\": \"aws\", \"login\": \"local\", \
\"password\": \"local-dummy-secret\", \"extra\": $endpoint_extra}"
