#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite: bash tools/run_tests.sh [pytest args]
# The open_clip tests (tests/test_open_clip) run in a second environment, .venv-open_clip:
# open_clip imports torchvision, and on this project's machines the only torchvision that
# imports is the one built for torch 2.14.1 (set OPEN_CLIP_TORCH_SPEC to change it). The extra
# is spelled open-clip: the pip that python -m venv brings (23.2) does not match open_clip.
# Test paths given as arguments choose the environments: only those under tests/test_open_clip
# run there, the others in .venv; with options only (e.g. -q), both run everything.
set -euo pipefail
cd "$(dirname "$0")/.."
# tiny models on few cores: one intra-op thread per process avoids oversubscription
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
options=() main_paths=() open_clip_paths=()
for arg in "$@"; do
    case "$arg" in
        tests/test_open_clip*) open_clip_paths+=("$arg") ;;
        tests/*|tests) main_paths+=("$arg") ;;
        *) options+=("$arg") ;;
    esac
done
if [ ${#main_paths[@]} -eq 0 ] && [ ${#open_clip_paths[@]} -eq 0 ]; then
    main_paths=(tests) open_clip_paths=(tests/test_open_clip)
fi
if [ ${#main_paths[@]} -gt 0 ]; then
    (
        source tools/setup_env.sh
        python -m pytest "${main_paths[@]}" --ignore=tests/test_open_clip ${options[@]+"${options[@]}"}
    )
fi
if [ ${#open_clip_paths[@]} -gt 0 ]; then
    VENV=.venv-open_clip EXTRAS=onedl,tests,open-clip \
        TORCH_SPEC=${OPEN_CLIP_TORCH_SPEC:-'torch==2.14.1 torchvision==0.29.1'} \
        source tools/setup_env.sh
    python -m pytest "${open_clip_paths[@]}" ${options[@]+"${options[@]}"}
fi
