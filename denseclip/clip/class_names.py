"""The one check of class names, wherever they enter: a config's ``model.class_names``, a
dataset's ``metainfo.classes``, a ``--classes`` option, a file of names."""
from collections.abc import Sequence
from typing import Any, Optional


def _canonical(name: str) -> str:
    """What CLIP's tokenizer sees of a name: it lower-cases and collapses white space, so
    ``'Wall'`` and ``' wall'`` give the same tokens as ``'wall'``."""
    return ' '.join(name.split()).lower()


def check_class_names(names: Any, source: str,
                      places: Optional[Sequence[str]] = None) -> list[str]:
    """Class names as a list, refused unless every name is a non-empty string and no two are
    the same name.

    Two names that CLIP's tokenizer cannot tell apart (the same up to case and white space)
    get the same text embedding, so the model cannot separate their pixels; a metric over them
    reports the same class twice. The error names every repeated name with its positions and
    ``source`` (the config key or option the names came from). Names that differ on purpose
    must differ in words (``'wall (indoor)'``, ``'wall (outdoor)'``).

    Args:
        names: A sequence of names.
        source: Where they came from, as the error should name it (``'model.class_names'``,
            ``'train_dataloader.dataset.metainfo.classes'``, ``'--classes'``, a file).
        places: How to name each name's place (``'line 3'``); by default its position,
            counted from 0.

    Returns:
        The names, as a list.

    Raises:
        TypeError: ``names`` is a single string, or not a sequence of strings.
        ValueError: no names, an empty name, or a name given twice.
    """
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f'{source} must be a list of class names, got {names!r}')
    names = list(names)
    if not names:
        raise ValueError(f'{source} is empty: at least one class name is needed')
    places = list(places) if places is not None else [
        f'position {index}' for index in range(len(names))]
    bad = [f'{places[index]}: {name!r}' for index, name in enumerate(names)
           if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ValueError(f'{source} holds names that are not non-empty strings: '
                         f'{", ".join(bad[:5])}')
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        positions.setdefault(_canonical(name), []).append(index)
    repeated = {name: where for name, where in positions.items() if len(where) > 1}
    if repeated:
        listed = '; '.join(f'{names[where[0]]!r} at {", ".join(places[i] for i in where)}'
                           for where in repeated.values())
        raise ValueError(
            f'{source} names a class more than once (CLIP cannot tell the names apart: same '
            f'words up to case and spaces): {listed}. Each class needs its own name; give '
            "classes that share a word distinct names (e.g. 'wall (indoor)', 'wall "
            "(outdoor)').")
    return names
