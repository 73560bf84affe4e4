#!/usr/bin/env bash
# Set everything up and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/adapmtl quickstart "$@"
