#!/usr/bin/env bash
# The main job: sets up .venv (once), then trains and evaluates a tiny DenseCLIP on synthetic
# ADE20K-layout data and draws its predictions: bash tools/quickstart.sh [--work-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
# tiny models on a few cores: one intra-op thread per process avoids oversubscription
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python tools/quickstart.py "$@"
