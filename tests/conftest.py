"""Fixtures for the whole suite. Everything a test reads lives inside the repository."""
from pathlib import Path

import pytest

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


@pytest.fixture(scope='session')
def reference_keys():
    """The reader of the reference key lists, as a fixture (tests are not a package)."""
    return read_key_list
