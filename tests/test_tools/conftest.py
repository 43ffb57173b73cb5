"""Running the tools as a user would: subprocesses on the quickstart config and tiny data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_tool(tool: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    # one thread per process: with two, tiny convolutions on this CPU are ~50x slower
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / tool), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    proc.output = proc.stdout + proc.stderr
    lines = proc.output.strip().splitlines()
    proc.last_line = lines[-1] if lines else ''
    return proc


@pytest.fixture(scope='session')
def run_tool():
    """``run_tool('test.py', *args, cwd=DIR)`` runs ``python tools/test.py ARGS`` in ``DIR``;
    the result has ``returncode``, ``output`` (stdout + stderr) and ``last_line``."""
    return _run_tool


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> Path:
    """Two training and two validation images of the quickstart's synthetic scenes, 64 px."""
    from denseclip.datasets import generate_synthetic_ade20k
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('synthetic'), num_train=2,
                                     num_val=2, image_size=64)


@pytest.fixture(scope='session')
def data_options(synthetic_root) -> list[str]:
    """``--cfg-options`` that point every dataloader of the quickstart config at the data."""
    return ['--cfg-options'] + [f'{split}_dataloader.dataset.data_root={synthetic_root}'
                                for split in ('train', 'val', 'test')]
