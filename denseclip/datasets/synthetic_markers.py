"""Idempotent writing of a synthetic data folder, guarded by marker files.

``PARTIAL_MARKER`` is written before the first file and removed after
``MARKER``, which holds the parameters, is written last. A folder that holds
the requested data already is left alone; one written with other parameters,
or left incomplete, is rewritten only with ``overwrite`` (which removes only
the entries the generator owns); a non-empty folder without a marker is never
touched. Used by :mod:`denseclip.datasets.synthetic` for both its layouts.
"""
import json
import shutil
from collections.abc import Callable
from pathlib import Path

MARKER = 'synthetic.json'
PARTIAL_MARKER = 'synthetic.incomplete.json'


def generate_once(data_dir: Path, params: dict,
                  expected: dict[Path, int | None], owned: tuple[str, ...],
                  overwrite: bool,
                  write: Callable[[Path, dict], None]) -> Path:
    """Run ``write(data_dir, params)`` between the two markers, unless
    ``data_dir`` already holds exactly this data.

    Args:
        data_dir: The folder to fill.
        params: JSON-able parameters of the data; the marker holds them.
        expected: Each folder that a finished ``data_dir`` holds, mapped to
            its number of entries, and each file it holds, mapped to
            ``None`` (see :func:`_is_complete`).
        owned: Entries of ``data_dir`` that ``overwrite`` removes.
        overwrite: Replace data whose parameters differ or which is
            incomplete.
        write: Writes the data into ``data_dir``.

    Returns:
        ``data_dir``.

    Raises:
        FileExistsError: As :func:`_prepare_folder`.
    """
    if _is_complete(data_dir, params, expected):
        return data_dir
    _prepare_folder(data_dir, params, overwrite, owned)
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(data_dir / PARTIAL_MARKER, params)
    write(data_dir, params)
    _write_marker(data_dir / MARKER, params)
    (data_dir / PARTIAL_MARKER).unlink()
    return data_dir


def _write_marker(path: Path, params: dict) -> None:
    path.write_text(json.dumps(params, indent=2, sort_keys=True) + '\n')


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _is_complete(data_dir: Path, params: dict,
                 expected: dict[Path, int | None]) -> bool:
    """Whether ``data_dir`` holds a finished dataset with ``params``:
    ``expected`` maps each folder to its number of entries, and each file
    that must exist to ``None``."""
    if _read_marker(data_dir / MARKER) != params:
        return False
    if (data_dir / PARTIAL_MARKER).exists():
        return False
    for path, count in expected.items():
        if count is None:
            if not path.is_file():
                return False
        elif not path.is_dir() or len(list(path.iterdir())) != count:
            return False
    return True


def _prepare_folder(data_dir: Path, params: dict, overwrite: bool,
                    owned: tuple[str, ...]) -> None:
    """Make ``data_dir`` ready for writing, or raise if it holds data."""
    if not data_dir.exists() or not any(data_dir.iterdir()):
        return
    ours = [data_dir / m for m in (MARKER, PARTIAL_MARKER)
            if (data_dir / m).exists()]
    if not ours:
        raise FileExistsError(
            f'{data_dir} exists, is not empty and has no {MARKER} marker; '
            'refusing to touch data that was not written by this '
            'synthetic-data generator. Choose another root.')
    if not overwrite:
        found = _read_marker(ours[0])
        if (data_dir / PARTIAL_MARKER).exists() or found == params:
            state = 'is incomplete (interrupted, or files were removed)'
        elif (found or {}).get('version') != params['version']:
            state = (f'has format version {(found or {}).get("version")}, '
                     f'this code writes version {params["version"]}')
        else:
            state = 'was written with other parameters'
        raise FileExistsError(
            f'The synthetic dataset in {data_dir} {state}: {ours[0].name} '
            f'says {_describe(found)}, requested {_describe(params)}. '
            'Pass overwrite=True (--overwrite) to regenerate it.')
    for entry in owned:
        path = data_dir / entry
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for marker in ours:
        marker.unlink()


def _describe(params: dict | None) -> str:
    return json.dumps(params, sort_keys=True)
