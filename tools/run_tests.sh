#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite: bash tools/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
# tiny models on few cores: one intra-op thread per process avoids oversubscription
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest tests "$@"
