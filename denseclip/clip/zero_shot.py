"""Zero-shot classification: a linear classifier whose weights are CLIP text embeddings.

Each class name is written into several prompt templates ("a photo of a {}."); the normalised
text embeddings of the prompts are averaged and normalised again (prompt ensembling, as in
CLIP's paper). The classifier is built once and applied to any number of image embeddings.

Also here: what ``tools/zero_shot.py`` needs around it, as functions: class names and
templates from files, an ImageFolder tree, image embeddings with bad files skipped, and the
accuracy summary. CLIP weights come from :func:`denseclip.clip.reading.read_clip_weights`.
"""
import math
import os
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .class_names import check_class_names
from .model import CLIP
from .preprocess import preprocess, read_image_rgb
from .tokenizer import tokenize

#: Default prompt templates for photographs; each holds ``{}`` exactly once.
PHOTO_TEMPLATES: tuple[str, ...] = (
    'a photo of a {}.',
    'a photo of the {}.',
    'a close-up photo of a {}.',
    'a blurry photo of a {}.',
    'a bright photo of a {}.',
    'a dark photo of a {}.',
    'a cropped photo of a {}.',
    'a photo of a small {}.',
    'a photo of a large {}.',
    'a good photo of a {}.',
    'a low resolution photo of a {}.',
    'a photo of one {}.',
    'a picture of a {}.',
    'an image showing a {}.',
)

#: The largest logit scale CLIP uses (its training clamps the learned scale at 100).
MAX_LOGIT_SCALE = 100.0


class TextModel(Protocol):
    """What :func:`build_classifier` needs: a CLIP text tower or anything shaped like one."""

    context_length: int

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Token ids ``[N, L]`` -> text embeddings ``[N, D]``."""


def check_template(template: str, where: str) -> None:
    """Raises ``ValueError`` unless ``template`` holds ``{}`` exactly once (``where`` names it)."""
    count = template.count('{}')
    if count != 1:
        raise ValueError(f'{where}: a prompt template must contain "{{}}" (the place of the '
                         f'class name) exactly once, found {count} in {template!r}')


def read_templates(path: str | os.PathLike) -> list[str]:
    """Prompt templates from a text file: one a line; blank lines and ``#`` comments skipped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line does not hold ``{}`` exactly once (file and line are named), or the
            file holds no template.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'templates file {path!r} does not exist')
    templates = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith('#'):
                continue
            check_template(text, f'{path}, line {number}')
            templates.append(text)
    if not templates:
        raise ValueError(f'templates file {path!r} holds no template (one a line, each with '
                         '"{}" where the class name goes)')
    return templates


def _device_of(model: TextModel) -> torch.device:
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return parameter.device if parameter is not None else torch.device('cpu')


def build_classifier(text_model: TextModel, class_names: Sequence[str],
                     templates: Sequence[str] = PHOTO_TEMPLATES,
                     batch_size: int = 256) -> torch.Tensor:
    """The zero-shot weights ``[K, D]``: one ensembled, normalised text embedding per class.

    Args:
        text_model: Has ``encode_text(token_ids [N, L]) -> [N, D]`` and ``context_length``
            (:class:`~denseclip.clip.CLIP`, :class:`~denseclip.clip.TextTransformer`, ...).
        class_names: The ``K`` class names, written into every template.
        templates: Prompt templates, each holding ``{}`` once.
        batch_size: Prompts encoded per forward pass.

    Returns:
        float32 ``[K, D]`` on the model's device, each row of unit length.

    Raises:
        ValueError: no class names or templates, a bad template, or a prompt longer than the
            model's context length.
    """
    class_names = check_class_names(class_names, 'class_names')
    if isinstance(templates, str) or not templates:
        raise ValueError(f'templates must be a non-empty sequence of templates, got {templates!r}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    for index, template in enumerate(templates):
        check_template(template, f'template {index}')
    prompts = [template.replace('{}', name) for name in class_names for template in templates]
    tokens = tokenize(prompts, context_length=text_model.context_length)  # [K * T, L]
    device = _device_of(text_model)
    was_training = getattr(text_model, 'training', False)
    if isinstance(text_model, nn.Module):
        text_model.eval()
    try:
        with torch.no_grad():
            embeddings = torch.cat([
                text_model.encode_text(tokens[start:start + batch_size].to(device)).float()
                for start in range(0, len(tokens), batch_size)])  # [K * T, D]
    finally:
        if isinstance(text_model, nn.Module):
            text_model.train(was_training)
    embeddings = F.normalize(embeddings, dim=-1).view(len(class_names), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=-1)  # [K, T, D] -> [K, D]


class ZeroShotClassifier(nn.Module):
    """Logits ``logit_scale * cos(feature, class embedding)`` for every class.

    Args:
        weight: Class embeddings ``[K, D]``, used as given: rows of unit length (as
            :func:`build_classifier` returns) make the logits scaled cosine similarities.
        logit_scale: The temperature's inverse; CLIP's trained models use 100.
        class_names: The ``K`` names, kept for reporting.
    """

    def __init__(self, weight: torch.Tensor, logit_scale: float = MAX_LOGIT_SCALE,
                 class_names: Sequence[str] | None = None):
        super().__init__()
        if weight.ndim != 2 or weight.shape[0] == 0:
            raise ValueError(f'weight must be [K, D] with K >= 1, got {tuple(weight.shape)}')
        if class_names is not None and len(class_names) != weight.shape[0]:
            raise ValueError(f'{len(class_names)} class names for {weight.shape[0]} classes '
                             '(rows of weight)')
        if not math.isfinite(logit_scale) or logit_scale <= 0:
            raise ValueError(f'logit_scale must be a positive number, got {logit_scale}')
        self.register_buffer('weight', weight.detach().float().clone())
        self.logit_scale = float(logit_scale)
        self.class_names = tuple(class_names) if class_names is not None else None

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[..., D]`` -> logits ``[..., K]``."""
        if features.shape[-1] != self.weight.shape[1]:
            raise ValueError(f'features of width {features.shape[-1]} do not fit class '
                             f'embeddings of width {self.weight.shape[1]}')
        features = F.normalize(features.to(self.weight.dtype), dim=-1)
        return self.logit_scale * features @ self.weight.t()

    def dense(self, features: torch.Tensor) -> torch.Tensor:
        """Dense embeddings ``[B, D, h, w]`` -> logits ``[B, K, h, w]`` at every position."""
        if features.ndim != 4:
            raise ValueError(f'dense features must be [B, D, h, w], got {tuple(features.shape)}')
        return self(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # BDhw -> BhwD -> BKhw

    @classmethod
    def from_clip(cls, model: CLIP, class_names: Sequence[str],
                  templates: Sequence[str] = PHOTO_TEMPLATES) -> 'ZeroShotClassifier':
        """The classifier of a CLIP model: its text tower's classes, its (clamped) logit scale."""
        logit_scale = min(float(model.logit_scale.detach().exp()), MAX_LOGIT_SCALE)
        return cls(build_classifier(model, class_names, templates), logit_scale, class_names)


# ------------------------------------------------------------------ around the classifier
#: File name endings taken as images in an ImageFolder tree (lower case).
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                  '.pgm')

def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a text file: one a line; blank lines and ``#`` comments skipped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no name, or a name given twice (the file and the names are named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'class names file {path!r} does not exist')
    try:
        with open(path, encoding='utf-8') as f:
            lines = [(number, line.strip()) for number, line in enumerate(f, start=1)
                     if line.strip() and not line.strip().startswith('#')]
    except UnicodeDecodeError as err:
        raise ValueError(f'class names file {path!r} is not UTF-8 text ({err.reason} at byte '
                         f'{err.start})') from None
    if not lines:
        raise ValueError(f'class names file {path!r} holds no name (one a line)')
    return check_class_names([name for _, name in lines], f'class names file {path!r}',
                             [f'line {number}' for number, _ in lines])


def image_folder(root: str | os.PathLike, class_names: Sequence[str] | None = None
                 ) -> tuple[list[str], list[int], list[str], list[str]]:
    """The images of an ImageFolder tree ``root/CLASS/**/IMAGE`` and their labels.

    Args:
        root: One sub-folder per class.
        class_names: The classes in label order; each must be a sub-folder's name and every
            sub-folder a class. Default: the sub-folders' names, sorted.

    Returns:
        ``(paths, labels, class_names, not_images)``: image paths sorted by class, then path;
        their labels; the class names; and files skipped because their names do not end as an
        image's (:data:`IMAGE_SUFFIXES`).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no sub-folders, sub-folders and ``class_names`` differ, or a class folder
            holds no image.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f'image folder {root!r} does not exist or is not a folder')
    folders = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith('.'))
    if not folders:
        raise ValueError(f'{root!r} has no sub-folders; an ImageFolder tree has one sub-folder '
                         'of images per class')
    if class_names is None:
        class_names = folders
    elif set(folders) != set(class_names):
        no_class = sorted(set(folders) - set(class_names))
        no_folder = [name for name in class_names if name not in folders]
        raise ValueError(f'the sub-folders of {root!r} must be the class names: folders that '
                         f'are no class: {no_class}; classes without a folder: {no_folder}')
    paths, labels, not_images = [], [], []
    for label, name in enumerate(class_names):
        found = []
        for folder, subfolders, files in os.walk(os.path.join(root, name)):
            subfolders.sort()
            for file in sorted(files):
                path = os.path.join(folder, file)
                if file.lower().endswith(IMAGE_SUFFIXES):
                    found.append(path)
                elif not file.startswith('.'):
                    not_images.append(path)
        if not found:
            raise ValueError(f'class folder {os.path.join(root, name)!r} holds no image '
                             f'(files ending in {", ".join(IMAGE_SUFFIXES)})')
        paths += found
        labels += [label] * len(found)
    return paths, labels, list(class_names), not_images


def embed_images(model: CLIP, paths: Sequence[str], batch_size: int = 32
                 ) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """CLIP image embeddings of image files, preprocessed at the model's input resolution.

    Returns:
        ``(features [N, D], kept, bad)``: embeddings of the images that could be read, the
        indices into ``paths`` of those images, and ``(path, reason)`` of the others.
    """
    resolution = model.visual.input_resolution
    device = model.text_projection.device
    features, kept, bad, batch = [], [], [], []
    for index, path in enumerate(paths):
        try:
            batch.append(preprocess(read_image_rgb(path), resolution))
            kept.append(index)
        except (OSError, ValueError) as err:
            bad.append((path, str(err)))
        if batch and (len(batch) == batch_size or index == len(paths) - 1):
            with torch.no_grad():
                features.append(model.encode_image(torch.stack(batch).to(device)).float())
            batch = []
    if not features:
        return torch.empty(0, model.embed_dim, device=device), kept, bad
    return torch.cat(features), kept, bad


def accuracy_summary(logits: torch.Tensor, labels: torch.Tensor,
                     class_names: Sequence[str]) -> dict:
    """Top-1 / top-5 accuracy, chance level, per-class accuracy and the confusion matrix.

    Args:
        logits: ``[N, K]``.
        labels: True classes ``[N]``.
        class_names: The ``K`` names.

    Returns:
        A JSON-ready dict. ``top5`` is the top-``min(5, K)`` accuracy (``topk_used`` says
        which); ``per_class`` maps each name to its top-1 accuracy (``None`` without images);
        ``confusion[i][j]`` counts images of class ``i`` predicted as ``j``.
    """
    num, num_classes = logits.shape
    if num == 0 or labels.shape != (num,) or num_classes != len(class_names):
        raise ValueError(f'need logits [N, K] with N >= 1, labels [N] and K names; got '
                         f'{tuple(logits.shape)}, {tuple(labels.shape)}, {len(class_names)}')
    labels = labels.to(logits.device)
    k = min(5, num_classes)
    top = logits.topk(k, dim=1).indices  # [N, k]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels.cpu(), top[:, 0].cpu()), torch.ones(num, dtype=torch.long),
                         accumulate=True)
    counts = confusion.sum(dim=1)
    per_class = {name: (confusion[i, i].item() / counts[i].item() if counts[i] else None)
                 for i, name in enumerate(class_names)}
    return dict(num_images=num, num_classes=num_classes,
                top1=(top[:, 0] == labels).float().mean().item(),
                top5=(top == labels[:, None]).any(dim=1).float().mean().item(),
                topk_used=k, chance=1 / num_classes, per_class=per_class,
                class_names=list(class_names), confusion=confusion.tolist())
