#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite: bash tools/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
python -m pytest tests "$@"
