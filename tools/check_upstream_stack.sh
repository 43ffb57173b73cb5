#!/usr/bin/env bash
# Runs the test suite on the upstream OpenMMLab stack instead of the OneDL distributions:
# mmengine 0.10.7, mmcv 2.1.0 built from source, mmsegmentation 1.2.2 (the last releases; mmseg
# 1.2.2 refuses mmcv 2.2), in a scratch virtual environment. Not part of CI: building mmcv's
# C++ ops takes about 13 minutes on 2 cores.
#   bash tools/check_upstream_stack.sh [--scratch DIR] [pytest args ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=/tmp/denseclip-upstream-stack
if [ "${1:-}" = "--scratch" ]; then
    SCRATCH=$2
    shift 2
fi
VENV="$SCRATCH/venv"
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if [ ! -f "$VENV/.upstream-installed" ]; then
    echo "Building the upstream stack in $VENV (mmcv's build takes ~13 min on 2 cores) ..."
    pip_install torch==2.13.0 'numpy>=2' wheel
    # mmcv 2.1.0's setup.py needs an older setuptools (pip warns that torch asks for a newer
    # one; torch only needs it for torch.utils.cpp_extension, which mmcv's build then uses)
    pip_install 'setuptools<70'
    pip_install mmengine==0.10.7
    pip_install --no-build-isolation mmcv==2.1.0  # compiles against the torch above
    pip_install mmsegmentation==1.2.2
    touch "$VENV/.upstream-installed"
fi
# --no-deps: this project's requirements name the OneDL distributions, which would replace
# the upstream packages; its other dependencies are installed by name.
pip_install --no-deps -e .
pip_install ftfy regex fvcore safetensors pytest
python -c "import mmcv, mmengine, mmseg; print('mmengine', mmengine.__version__, '| mmcv', \
mmcv.__version__, '| mmseg', mmseg.__version__)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python -m pytest tests "$@"
