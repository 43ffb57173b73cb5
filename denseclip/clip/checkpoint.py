"""Reading, converting and loading CLIP weights: the one place that handles checkpoints.

Pure functions over state dicts. Supported inputs: OpenAI's TorchScript archives (``RN50.pt``,
``ViT-B-16.pt``; read with ``torch.jit.load``), ``.safetensors`` files, plain state dicts and
mmengine checkpoints (``{'state_dict': ...}``), read with ``torch.load(weights_only=True)`` so
that a file cannot run code when loaded. Nothing here touches the network.
"""
import fnmatch
import os
import pickle
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import safetensors.torch
import torch
from mmengine.logging import MMLogger
from torch import nn

from .layers import resize_grid_embedding
from .model import CLIP

#: int64 scalars that OpenAI's archives store next to the weights.
ARCHIVE_METADATA = ('input_resolution', 'context_length', 'vocab_size')

#: Where users are told to get the weights from when a file is missing.
WEIGHTS_HINT = ('Download the OpenAI CLIP archives (RN50.pt, RN101.pt, ViT-B-16.pt) as described '
                'in pretrained/README.md and place them in pretrained/.')

#: What to do about a damaged weights file.
REREAD_HINT = ('Download or copy it again; for CLIP weights see pretrained/README.md.')

#: What to do when CLIP weights do not fit a tower.
TOWER_FIX = ('Use the CLIP weights of the architecture that the config describes '
             '(model.backbone, model.text_encoder), or change those settings to match them.')

StateDict = dict[str, torch.Tensor]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


#: torch's words when its weights-only unpickler refuses an object (matched case-insensitively);
#: it words damaged files ("Unsupported operand 60") as "Weights only load failed" too.
WEIGHTS_ONLY_REFUSALS = ('unsupported global', 'unrecognized function', 'can only build',
                         'can only create new object', 'is not allowed', 'must be imported to load')

#: Told to users whose file is refused because unpickling it could run code.
CONVERT_HINT = (
    'If you trust the file, convert it once to a plain state dict: python -c "import torch; '
    "c = torch.load('IN', weights_only=False); torch.save({'state_dict': c.get('state_dict', "
    "c)}, 'OUT')\"")


def is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('constants.pkl') for name in archive.namelist())


def _pickled_globals(path: str, err: Exception) -> list[str]:
    """The Python objects (``module.name``) a pickle that torch refused would import."""
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001  (a damaged archive: fall back to torch's text)
            pass
    return re.findall(r'GLOBAL (\S+?)(?:\s|$)', str(err))  # torch names the first it met


def _torch_detail(err: Exception) -> str:
    """What torch found wrong, without its advice (which is to load with weights_only=False)."""
    match = re.search(r'WeightsUnpickler error:\s*(.+?)\s*(?:Check the documentation|$)',
                      str(err), re.DOTALL)
    lines = str(err).strip().splitlines()
    detail = match.group(1) if match else lines[0] if lines else ''
    return f'{type(err).__name__}: {detail}' if detail else type(err).__name__


def _what_the_file_is(path: str) -> tuple[str, str] | None:
    """What a file that torch cannot read is instead, and what to do, if its first bytes tell."""
    if not os.path.isfile(path):  # a stream
        return None
    with open(path, 'rb') as f:
        head = f.read(256)
    if not head:
        return 'the file is empty (0 bytes)', ''
    if head[:1] == pickle.PROTO and head[1:2] >= b'\x03':  # torch.save: protocol 2 or a zip
        return (f'it is a plain Python pickle (protocol {head[1]}), not a file torch.save wrote',
                'If you trust it, unpickle it yourself and torch.save its tensors.')
    text = head.decode('utf-8', errors='ignore')
    if b'\0' not in head and len(text) >= len(head) - 3 and all(
            char.isprintable() or char in '\t\r\n' for char in text):
        first_line = text.strip().splitlines()[0] if text.strip() else ''
        return (f'it is a text file, not a checkpoint (it begins {first_line[:60]!r})',
                'Check the path; text in place of weights is usually a failed download (an '
                'HTML page) or a Git LFS pointer (run git lfs pull).')
    return None


def unreadable(path: str, err: Exception, hint: str) -> CheckpointError:
    """The error to raise when torch cannot read ``path``, in the project's words.

    Args:
        path: The file.
        err: What ``torch.load`` (``weights_only=True``) raised.
        hint: What to do about a damaged file (download it again, ...).

    Returns:
        A :class:`CheckpointError` that says what the file is instead (empty, text, a plain
        pickle), or that it would run code when loaded (and how to convert a trusted one), or
        that it is damaged. torch's advice to load with ``weights_only=False`` is left out.
    """
    found_instead = _what_the_file_is(path)
    if found_instead is not None:
        what, remedy = found_instead
        return CheckpointError(f'cannot read checkpoint {path!r}: {what}. {remedy or hint}')
    found = _pickled_globals(path, err) if isinstance(err, pickle.UnpicklingError) else []
    if found or isinstance(err, pickle.UnpicklingError) and any(
            phrase in str(err).lower() for phrase in WEIGHTS_ONLY_REFUSALS):
        objects = (f'it would import {", ".join(found)}' if found else
                   'it holds objects other than tensors and plain containers')
        return CheckpointError(
            f'refusing to load checkpoint {path!r}: {objects}, and unpickling such objects can '
            'run arbitrary code. DenseCLIP loads checkpoints with torch.load(weights_only=True) '
            f'only (see docs/robustness.md). {CONVERT_HINT}')
    return CheckpointError(f'cannot read checkpoint {path!r}: the file is truncated, corrupt or '
                           f'not a PyTorch checkpoint ({_torch_detail(err)}). {hint}')


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Reads a CLIP archive, a state dict or an mmengine checkpoint as an fp32 state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where to get CLIP weights).
        CheckpointError: the file is truncated, not a checkpoint, or would run code on loading.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist. {WEIGHTS_HINT}')
    try:
        if is_torchscript(path):
            state_dict = torch.jit.load(path, map_location='cpu').state_dict()
        elif path.endswith('.safetensors'):
            state_dict = safetensors.torch.load_file(path, device='cpu')
        else:
            state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise unreadable(path, err, REREAD_HINT) from None  # torch advises the unsafe load
    if isinstance(state_dict, Mapping) and 'state_dict' in state_dict:
        state_dict = state_dict['state_dict']
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{path!r} does not hold a state dict (a mapping of names to '
                              'tensors)')
    return {key: value.float() if value.is_floating_point() else value
            for key, value in state_dict.items()}


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The entries under ``prefix`` (e.g. ``'visual.'``) with the prefix stripped."""
    return {key[len(prefix):]: value for key, value in state_dict.items()
            if key.startswith(prefix)}


def visual_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The image tower of a CLIP state dict (``visual.*``)."""
    return select_prefix(state_dict, 'visual.')


def text_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The text tower of a CLIP state dict: all but ``visual.*``, ``logit_scale`` and metadata."""
    skip = ('logit_scale',) + ARCHIVE_METADATA
    return {key: value for key, value in state_dict.items()
            if not key.startswith('visual.') and key not in skip}


def truncate_text_positions(embedding: torch.Tensor,
                            target_shape: tuple[int, ...]) -> torch.Tensor:
    """Keeps the first ``target_shape[0]`` positions of a text positional embedding ``[L, C]``."""
    length = target_shape[0]
    if embedding.ndim != 2 or embedding.shape[1] != target_shape[1] or embedding.shape[0] < length:
        raise CheckpointError(f'text positional embedding {tuple(embedding.shape)} cannot be '
                              f'truncated to {tuple(target_shape)}')
    return embedding[:length]


def resize_grid_positions(embedding: torch.Tensor,
                          target_shape: tuple[int, ...]) -> torch.Tensor:
    """Fits an image positional embedding ``[1 + S*S, C]`` to ``target_shape``.

    The class/global position is kept; the grid is resized bilinearly.
    """
    if tuple(embedding.shape) == tuple(target_shape):
        return embedding
    side = int(round((target_shape[0] - 1) ** 0.5))
    if embedding.ndim != 2 or embedding.shape[1] != target_shape[1] or (
            side * side + 1 != target_shape[0]):
        raise CheckpointError(f'image positional embedding {tuple(embedding.shape)} cannot be '
                              f'resized to {tuple(target_shape)} (1 + a square grid of the same '
                              'width)')
    try:
        return resize_grid_embedding(embedding, 1, (side, side))
    except ValueError as err:
        raise CheckpointError(
            f'image positional embedding {tuple(embedding.shape)}: {err}') from err


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
    """
    missing: list[str]
    unexpected: list[str]
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    num_fitting: int
    parts: tuple[set[str], set[str]]

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def counts(self) -> str:
        plural = '' if len(self.mismatched) == 1 else 'es'
        return (f'{len(self.mismatched)} shape mismatch{plural}, {len(self.missing)} missing and '
                f'{len(self.unexpected)} unexpected keys')

    def details(self) -> list[str]:
        """The first few keys of each kind, one line each."""
        lines = []
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
        causes, explained = [], set()
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
        kept = [*self.mismatched, *self.missing]
        return (f'partial load of {source} into {target}: {self.num_fitting} tensors loaded; '
                f'{len(self.mismatched)} of another shape and {len(self.missing)} missing keep '
                f'their initial weights ({_listed(kept, 4)}); {len(self.unexpected)} unexpected '
                'ignored' + (f' ({_listed(self.unexpected, 4)})' if self.unexpected else ''))


def _compare(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor],
             allowed_missing: Iterable[str], allowed_unexpected: Iterable[str]) -> StateDictFit:
    mismatched = {key: (tuple(value.shape), tuple(own[key].shape))
                  for key, value in state_dict.items()
                  if key in own and value.shape != own[key].shape}
    return StateDictFit(
        missing=[key for key in own if key not in state_dict
                 and not _matches(key, allowed_missing)],
        unexpected=[key for key in state_dict if key not in own
                    and not _matches(key, allowed_unexpected)],
        mismatched=mismatched,
        num_fitting=sum(key in own and key not in mismatched for key in state_dict),
        parts=({key.split('.')[0] for key in state_dict}, {key.split('.')[0] for key in own}))


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


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
              allowed_missing: Iterable[str] = (), allowed_unexpected: Iterable[str] = (),
              text_positions: tuple[str, ...] = (),
              grid_positions: tuple[str, ...] = ()) -> None:
    """Loads ``state_dict`` into ``module`` and asserts exactly which keys may differ.

    Args:
        module: The receiving module.
        state_dict: Weights, already stripped of any prefix.
        source: The file name (or a description), used in messages.
        allowed_missing: Glob patterns of module keys that the checkpoint may lack (new layers).
        allowed_unexpected: Glob patterns of checkpoint keys the module may ignore.
        text_positions: Keys of text positional embeddings to truncate to the module's length.
        grid_positions: Keys of image positional embeddings to resize to the module's grid.

    Raises:
        CheckpointError: a parameter has the wrong shape, or keys are missing/unexpected beyond
            the allowed patterns (the checkpoint is of another architecture).
    """
    own = module.state_dict()
    state_dict = dict(state_dict)
    for keys, fit in ((text_positions, truncate_text_positions),
                      (grid_positions, resize_grid_positions)):
        for key in keys:
            if key in state_dict and key in own:
                try:
                    state_dict[key] = fit(state_dict[key], own[key].shape)
                except CheckpointError as err:
                    raise CheckpointError(f'{source} does not fit {type(module).__name__} (wrong '
                                          f'architecture or settings?): {key}: {err}') from err
    check_fit(module, state_dict, source, fix=TOWER_FIX, allowed_missing=allowed_missing,
              allowed_unexpected=allowed_unexpected)
    result = module.load_state_dict(
        {key: value for key, value in state_dict.items() if key in own}, strict=False)
    logger = MMLogger.get_current_instance()
    logger.info(f'loaded {len(own) - len(result.missing_keys)} tensors from {source} into '
                f'{type(module).__name__}')
    if result.missing_keys:
        logger.info(f'newly initialised (not in {source}): {", ".join(result.missing_keys)}')
    ignored = [key for key in state_dict if key not in own]
    if ignored:
        logger.info(f'ignored from {source}: {len(ignored)} keys')


def infer_clip_config(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Recovers :class:`~denseclip.clip.CLIP`'s constructor arguments from its weights.

    Covers OpenAI's ResNets (RN50, RN101, RN50x4, ...) and ViTs (B/32, B/16, L/14, ...).
    """
    required = ('text_projection', 'positional_embedding', 'token_embedding.weight',
                'ln_final.weight')
    absent = [key for key in required if key not in state_dict]
    if absent or not any(key.startswith('visual.') for key in state_dict):
        raise CheckpointError('not a CLIP state dict: it lacks ' +
                              ', '.join(absent or ['visual.*']))
    if 'visual.proj' in state_dict:  # ViT
        vision_width = state_dict['visual.conv1.weight'].shape[0]
        vision_layers = len({key.split('.')[3] for key in state_dict
                             if key.startswith('visual.transformer.resblocks.')
                             and key.endswith('.attn.in_proj_weight')})
        patch_size = state_dict['visual.conv1.weight'].shape[-1]
        grid = round((state_dict['visual.positional_embedding'].shape[0] - 1) ** 0.5)
        image_resolution = patch_size * grid
    else:  # ModifiedResNet
        vision_layers = tuple(
            len({key.split('.')[2] for key in state_dict
                 if key.startswith(f'visual.layer{stage}.')}) for stage in (1, 2, 3, 4))
        vision_width = state_dict['visual.layer1.0.conv1.weight'].shape[0]
        patch_size = None
        grid = round((state_dict['visual.attnpool.positional_embedding'].shape[0] - 1) ** 0.5)
        image_resolution = 32 * grid
    width = state_dict['ln_final.weight'].shape[0]
    return dict(
        embed_dim=state_dict['text_projection'].shape[1],
        image_resolution=image_resolution,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=patch_size,
        context_length=state_dict['positional_embedding'].shape[0],
        vocab_size=state_dict['token_embedding.weight'].shape[0],
        transformer_width=width,
        transformer_heads=width // 64,
        transformer_layers=len({key.split('.')[2] for key in state_dict
                                if key.startswith('transformer.resblocks.')}),
    )


def build_model(state_dict: Mapping[str, torch.Tensor]) -> CLIP:
    """Builds a :class:`CLIP` of the right architecture and loads ``state_dict`` exactly."""
    model = CLIP(**infer_clip_config(state_dict))
    load_into(model, {key: value.float() if value.is_floating_point() else value
                      for key, value in state_dict.items()},
              source='CLIP state dict', allowed_unexpected=ARCHIVE_METADATA)
    return model.eval()


def load(path: str | os.PathLike, device: str | torch.device = 'cpu') -> CLIP:
    """Loads an OpenAI CLIP archive or a CLIP state dict as an fp32 model in eval mode."""
    return build_model(read_state_dict(path)).to(device)


def load_tower(module: nn.Module, path: str | os.PathLike, part: str,
               allowed_missing: Iterable[str] = (), allowed_unexpected: Iterable[str] = ()) -> None:
    """Loads the ``'visual'`` or ``'text'`` part of a CLIP checkpoint into a tower.

    Positional embeddings are fitted to the tower: image grids are resized bilinearly to its
    ``input_resolution``, text positions truncated to its ``context_length``.
    """
    if part not in ('visual', 'text'):
        raise ValueError(f"part must be 'visual' or 'text', got {part!r}")
    full = read_state_dict(path)
    if part == 'visual':
        state_dict = visual_state_dict(full)
        positions = dict(grid_positions=('positional_embedding', 'attnpool.positional_embedding'))
    else:
        state_dict = text_state_dict(full)
        positions = dict(text_positions=('positional_embedding',))
    if not state_dict:
        raise CheckpointError(f'{os.fspath(path)!r} holds no {part} tower of a CLIP model '
                              f'(no {part} keys found)')
    load_into(module, state_dict, source=os.fspath(path), allowed_missing=allowed_missing,
              allowed_unexpected=allowed_unexpected, **positions)
