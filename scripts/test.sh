#!/usr/bin/env bash
# Set everything up and run the tests. Exit non-zero on any failure, including "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
markers="not slow"
if [ "${ADAPMTL_SLOW:-0}" = "1" ]; then markers=""; fi
set +e
.venv/bin/python -m pytest -q ${markers:+-m "$markers"} "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
