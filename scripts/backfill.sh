#!/usr/bin/env bash
# Backfill the daily export over New York days with the real Airflow components; see
# scripts/backfill.py for the steps and options. Usage: scripts/backfill.sh 2013-01-01 2013-01-07
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$root"
exec python scripts/backfill.py "$@"
