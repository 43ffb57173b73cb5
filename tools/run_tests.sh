#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite: bash tools/run_tests.sh [pytest args]
# The open_clip tests (tests/test_open_clip) run in a second environment, .venv-open_clip:
# open_clip imports torchvision, and on this project's machines the only torchvision that
# imports is the one built for torch 2.14.1 (set OPEN_CLIP_TORCH_SPEC to change it). The extra
# is spelled open-clip: the pip that python -m venv brings (23.2) does not match open_clip.
set -euo pipefail
cd "$(dirname "$0")/.."
# tiny models on few cores: one intra-op thread per process avoids oversubscription
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
(
    source tools/setup_env.sh
    python -m pytest tests --ignore=tests/test_open_clip "$@"
)
VENV=.venv-open_clip EXTRAS=onedl,tests,open-clip \
    TORCH_SPEC=${OPEN_CLIP_TORCH_SPEC:-'torch==2.14.1 torchvision==0.29.1'} \
    source tools/setup_env.sh
python -m pytest tests/test_open_clip "$@"
