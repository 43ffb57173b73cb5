# Sourced by tools/quickstart.sh and tools/run_tests.sh: creates .venv on first use, installs
# this package with its dependencies (again whenever setup.py or requirements.txt change), and
# activates it, with the test and deploy (ONNX) extras that the tests need. torch is pinned to
# the CPU wheel on this project's machines; elsewhere set TORCH_SPEC (e.g.
# TORCH_SPEC='torch>=2.1' for a CUDA machine; several packages may be given, space-separated).
# VENV and EXTRAS choose another environment (tools/run_tests.sh builds one for open_clip).
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-onedl,tests,deploy}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$TORCH_SPEC [$EXTRAS] $(cat setup.py requirements.txt | sha256sum)"
if [ "$(cat "$VENV/.denseclip-installed" 2>/dev/null)" != "$stamp" ]; then
    echo "Installing $TORCH_SPEC and denseclip[$EXTRAS] into $VENV ..."
    # shellcheck disable=SC2086  # TORCH_SPEC may name several packages
    python -m pip install --quiet --disable-pip-version-check $TORCH_SPEC
    python -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]"
    echo "$stamp" > "$VENV/.denseclip-installed"
fi
