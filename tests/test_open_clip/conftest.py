"""Fixtures of the open_clip tests (run in .venv-open_clip, which has open_clip; see
tools/run_tests.sh): the tiny DenseCLIP parts of tests/test_models/conftest.py, reused.

That conftest is read from its file, since tests/test_models is not a package; its fixtures
(``randomize``, ``denseclip_cfg``, ``batch``) become this folder's.
"""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    'test_models_conftest', Path(__file__).resolve().parents[1] / 'test_models' / 'conftest.py')
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)

randomize = _models.randomize
denseclip_cfg = _models.denseclip_cfg
batch = _models.batch
