"""Fixtures for the whole suite. Everything a test reads lives inside the repository."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

#: Key lists (name, shape, dtype per line) of OpenAI's CLIP archives and of the released
#: DenseCLIP checkpoints, written from the published files; see tests/data/reference/README.md.
REFERENCE_DIR = Path(__file__).resolve().parent / 'data' / 'reference'


def read_key_list(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{key: (shape, dtype)}`` from ``tests/data/reference/{name}.keys.tsv``."""
    path = REFERENCE_DIR / f'{name}.keys.tsv'
    rows = [line.split('\t') for line in path.read_text().splitlines() if line.strip()]
    keys = {key: (tuple(int(n) for n in shape.strip('()').split(',') if n.strip()), dtype)
            for key, shape, dtype in rows}
    assert len(keys) == len(rows), f'{path} lists a key twice'
    return keys


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: runs tools as subprocesses or full-size models (tens of seconds each); '
        'the fast tier for a development loop is `bash tools/run_tests.sh -m "not slow"`')


@pytest.fixture(scope='session')
def reference_keys():
    """The reader of the reference key lists, as a fixture (tests are not a package)."""
    return read_key_list


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for a module's tests (``pytestmark = usefixtures('single_thread')``):
    tiny tensors gain nothing from threads, and on a busy CPU the hand-offs cost a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run_tool(tool: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    # one thread per process: with two, tiny convolutions on this CPU are ~50x slower
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / tool), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    proc.output = proc.stdout + proc.stderr
    lines = proc.output.strip().splitlines()
    proc.last_line = lines[-1] if lines else ''
    return proc


@pytest.fixture(scope='session')
def run_tool():
    """``run_tool('test.py', *args, cwd=DIR)`` runs ``python tools/test.py ARGS`` in ``DIR`` as a
    user would; the result has ``returncode``, ``output`` (stdout + stderr) and ``last_line``."""
    return _run_tool
