#!/usr/bin/env bash
# CLIP on the embedded data: sets up .venv (once), then trains a tiny CLIP contrastively on the
# synthetic captions and measures zero-shot classification and segmentation before and after:
# bash tools/clip_quickstart.sh [--work-dir DIR] [--iters N]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
# tiny models on a few cores: one intra-op thread per process avoids oversubscription
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python tools/clip_quickstart.py "$@"
