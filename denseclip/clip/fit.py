"""How a state dict fits a module, and the one error that says why it does not.

Used by every loading path: CLIP towers, DenseCLIP checkpoints (``load_from``, ``tools/test.py``,
``init_model``, the inferencer) and converted checkpoints.
"""
import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import CheckpointError


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _grid_side(shape: tuple[int, ...]) -> int | None:
    """``S`` for an image positional embedding of shape ``[1 + S*S, C]``, else None."""
    side = round((shape[0] - 1) ** 0.5) if len(shape) == 2 and shape[0] > 1 else 0
    return side if side > 1 and side * side + 1 == shape[0] else None


def _differ_by(ours: tuple[int, ...], theirs: tuple[int, ...], delta: int) -> bool:
    """Whether two shapes differ in exactly one dimension, by ``delta``."""
    diffs = [a - b for a, b in zip(ours, theirs) if a != b]
    return len(ours) == len(theirs) and diffs == [delta]


def _listed(items: list[str], limit: int = 5) -> str:
    more = f', ... ({len(items) - limit} more)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


@dataclass
class StateDictFit:
    """How a state dict fits a module: the keys it lacks, has in excess or holds in another shape.

    Attributes:
        missing: Module keys that the state dict lacks (their weights would stay as initialised).
        unexpected: State-dict keys that the module does not have.
        mismatched: ``{key: (shape in the state dict, shape in the module)}``.
        num_fitting: Keys present in both with the same shape.
        parts: The top-level names (``backbone``, ...) of the state dict and of the module.
        retyped: ``{key: (dtype in the state dict, dtype in the module)}`` where one holds
            floating-point numbers and the other integers or booleans: loading would convert
            them without a word (weights truncated to integers, counters made fractional).
    """
    missing: list[str]
    unexpected: list[str]
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    num_fitting: int
    parts: tuple[set[str], set[str]]
    retyped: dict[str, tuple[torch.dtype, torch.dtype]] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.retyped)

    def counts(self) -> str:
        plural = '' if len(self.mismatched) == 1 else 'es'
        retyped = (f'{len(self.retyped)} of another kind of number (integer vs floating '
                   'point), ' if self.retyped else '')
        return (f'{retyped}{len(self.mismatched)} shape mismatch{plural}, {len(self.missing)} '
                f'missing and {len(self.unexpected)} unexpected keys')

    def details(self) -> list[str]:
        """The first few keys of each kind, one line each."""
        lines = []
        if self.retyped:
            lines.append('kind of number: ' + _listed([
                f'{key}: checkpoint {ours} vs model {theirs}'
                for key, (ours, theirs) in self.retyped.items()]))
        if self.mismatched:
            lines.append('shape mismatch: ' + _listed([
                f'{key}: checkpoint {ours} vs model {theirs}'
                for key, (ours, theirs) in self.mismatched.items()]))
        if self.missing:
            lines.append('missing: ' + _listed(self.missing))
        if self.unexpected:
            lines.append('unexpected: ' + _listed(self.unexpected))
        return lines

    def likely_causes(self) -> list[str]:
        """Plain-words guesses: class count, crop size of the positional embedding, modules."""
        if self.num_fitting == 0 and not self.mismatched:
            clip = any(key.startswith('visual.') for key in self.unexpected)
            return ['it shares no key with the model: it holds the weights of another model' +
                    (' (a CLIP archive: give it as model.pretrained)' if clip else '')]
        causes, explained = [], set(self.retyped)
        if self.retyped:
            causes.append('tensors hold integers where the model has floating-point numbers (or '
                          'the reverse): the file was edited or converted wrongly')
        heads = [(trained[0], ours[0]) for key, (trained, ours) in self.mismatched.items()
                 if key.endswith('conv_seg.weight') and trained[0] != ours[0]]
        if heads:
            trained, ours = heads[0]
            explained |= {key for key, (a, b) in self.mismatched.items()
                          if _differ_by(a, b, trained - ours)}
            causes.append(f'the checkpoint was trained for {trained} classes and the model has '
                          f'{ours} (model.class_names, or the classes of the config\'s dataset)')
        for key, (trained, ours) in self.mismatched.items():
            grids = _grid_side(trained), _grid_side(ours)
            if key.startswith('backbone.') and all(grids) and trained[1] == ours[1]:
                explained.add(key)
                causes.append(
                    f'its image positional embedding {key} is a {grids[0]}x{grids[0]} grid and '
                    f'the model\'s {grids[1]}x{grids[1]}: the checkpoint was trained at another '
                    'crop size (model.backbone.input_resolution)')
        return causes + self._parts_that_differ(explained)

    def _parts_that_differ(self, explained: set[str]) -> list[str]:
        """The top-level parts whose keys differ (beyond ``explained``), and how."""
        counts = defaultdict(int)
        for key in [*self.missing, *self.unexpected, *self.mismatched]:
            if key not in explained:
                counts[key.split('.')[0]] += 1
        theirs, ours = self.parts
        named = {name: f'{name} ({count} key{"s" * (count != 1)})'
                 for name, count in counts.items()}
        absent = [text for name, text in named.items() if name not in theirs]
        extra = [text for name, text in named.items() if name not in ours]
        other = [text for name, text in named.items() if name in theirs and name in ours]
        return [text + ', '.join(names) for text, names in (
            ('the checkpoint has no ', absent), ('the model has no ', extra),
            ('another architecture (type, depth or widths) of ', other)) if names]

    def error(self, source: str, target: str, fix: str = '') -> CheckpointError:
        """One error: counts, the first keys of each kind, then the likely cause and ``fix``."""
        lines = [f'{source} does not fit {target}: {self.counts()}', *self.details(),
                 f'likely cause: {"; ".join(self.likely_causes())}. {fix}'.strip()]
        return CheckpointError('\n'.join(lines))

    def summary(self, source: str, target: str) -> str:
        """One line for a partial load: what was loaded, kept as initialised and ignored."""
        kept = [*self.mismatched, *self.retyped, *self.missing]
        return (f'partial load of {source} into {target}: {self.num_fitting} tensors loaded; '
                f'{len(self.mismatched) + len(self.retyped)} of another shape or kind and '
                f'{len(self.missing)} missing keep '
                f'their initial weights ({_listed(kept, 4)}); {len(self.unexpected)} unexpected '
                'ignored' + (f' ({_listed(self.unexpected, 4)})' if self.unexpected else ''))


def _compare(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor],
             allowed_missing: Iterable[str], allowed_unexpected: Iterable[str]) -> StateDictFit:
    mismatched = {key: (tuple(value.shape), tuple(own[key].shape))
                  for key, value in state_dict.items()
                  if key in own and value.shape != own[key].shape}
    retyped = {key: (value.dtype, own[key].dtype) for key, value in state_dict.items()
               if key in own and key not in mismatched
               and value.is_floating_point() != own[key].is_floating_point()}
    return StateDictFit(
        missing=[key for key in own if key not in state_dict
                 and not _matches(key, allowed_missing)],
        unexpected=[key for key in state_dict if key not in own
                    and not _matches(key, allowed_unexpected)],
        mismatched=mismatched,
        num_fitting=sum(key in own and key not in mismatched and key not in retyped
                        for key in state_dict),
        parts=({key.split('.')[0] for key in state_dict}, {key.split('.')[0] for key in own}),
        retyped=retyped)


def check_fit(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
              fix: str = '', partial: bool = False, allowed_missing: Iterable[str] = (),
              allowed_unexpected: Iterable[str] = ()) -> StateDictFit:
    """Raises unless ``state_dict`` fits ``module`` key by key and shape by shape.

    The one fit check of the project: CLIP towers, DenseCLIP checkpoints (``load_from``,
    ``tools/test.py``, ``init_model``, the inferencer) and converted checkpoints all use it.

    Args:
        module: The receiving module.
        state_dict: Weights, with the module's key names.
        source: The file (``"checkpoint 'x.pth'"``), named first in the message.
        fix: What the user can do, appended to the message.
        partial: Do not raise; the caller loads what fits and reports :meth:`summary`.
        allowed_missing: Glob patterns of module keys that the state dict may lack.
        allowed_unexpected: Glob patterns of state-dict keys the module may ignore.

    Raises:
        CheckpointError: a key is missing, unexpected or of another shape (unless ``partial``):
            the counts, the first keys of each kind, the likely cause and ``fix``.
    """
    fit = _compare(module.state_dict(), state_dict, allowed_missing, allowed_unexpected)
    if not fit.fits and not partial:
        raise fit.error(source, type(module).__name__, fix)
    return fit
