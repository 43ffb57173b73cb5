# Sourced by tools/quickstart.sh and tools/run_tests.sh: creates .venv on first use, installs
# this package with its dependencies (again whenever setup.py or requirements.txt change), and
# activates it, with the test and deploy (ONNX) extras that the tests need. torch is pinned to
# the CPU wheel on this project's machines; elsewhere set TORCH_SPEC (e.g.
# TORCH_SPEC='torch>=2.1' for a CUDA machine; several packages may be given, space-separated).
# VENV and EXTRAS choose another environment (tools/run_tests.sh builds one for open_clip).
# A failed step stops here (return status 1) with pip's own error above the line that names
# it; the "installed" stamp is written only after every step succeeded, so the next run
# installs again instead of using a half-installed environment.
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-onedl,tests,deploy}
_denseclip_fail() {
    echo "error: setting up $VENV failed at: $1" >&2
    echo "(nothing was marked as installed: run the same command again to retry," \
        "or delete $VENV to start afresh)" >&2
    return 1
}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || { _denseclip_fail "python3 -m venv $VENV"; return 1 2>/dev/null || exit 1; }
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$TORCH_SPEC [$EXTRAS] $(cat setup.py requirements.txt | sha256sum)"
if [ "$(cat "$VENV/.denseclip-installed" 2>/dev/null)" != "$stamp" ]; then
    rm -f "$VENV/.denseclip-installed"
    echo "Installing $TORCH_SPEC and denseclip[$EXTRAS] into $VENV ..."
    # shellcheck disable=SC2086  # TORCH_SPEC may name several packages
    python -m pip install --quiet --disable-pip-version-check $TORCH_SPEC ||
        { _denseclip_fail "pip install $TORCH_SPEC"; return 1 2>/dev/null || exit 1; }
    python -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]" ||
        { _denseclip_fail "pip install -e .[$EXTRAS]"; return 1 2>/dev/null || exit 1; }
    python -c 'import denseclip' ||
        { _denseclip_fail "import denseclip"; return 1 2>/dev/null || exit 1; }
    echo "$stamp" > "$VENV/.denseclip-installed"
fi
