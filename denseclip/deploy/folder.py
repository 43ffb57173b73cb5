"""Segmenting a folder, a glob or a video: three files per image, resumable (``tools/infer.py``).

For each input image named ``NAME`` (its path relative to the folder, or to the fixed part of
the glob, without the extension; ``frame_000001``, ... for the frames of a video) three files
are written under the output folder:

- ``NAME.png``: the predicted labels, a palette PNG (PIL mode ``'P'``) in the dataset's
  colours, so it opens as a colour picture and reads back as labels;
- ``NAME_overlay.jpg``: the image blended with the colours of its labels;
- ``NAME.json``: the share of the image each predicted class covers (only the classes present;
  they sum to 1), the image's size, and the config, checkpoint and backend that made it.

Each file is written atomically (:func:`denseclip.engine.atomic_write`). The JSON marks a
finished image: before an image's files are (re)written its old JSON is deleted, and the new
one is written last. A killed run therefore leaves complete files only (and hidden ``.partial``
files, deleted on the next start), an image whose JSON exists has all three files from one
prediction (also after a killed ``--overwrite`` run, which may have replaced the PNG only), and
a re-run skips exactly the images whose JSON (and the two other files) exist. An image that
cannot be read is named and counted as failed; the run goes on.

The model is behind a small interface, :class:`~.predictors.Predictor` (images -> labels),
made in :mod:`.predictors` from a PyTorch model or an ONNX file.
"""
import glob
import io
import itertools
import json
import os
import os.path as osp
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, Optional, Union

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from denseclip.clip.preprocess import read_image
from denseclip.clip.zero_shot import IMAGE_SUFFIXES
from denseclip.engine.atomic_io import atomic_write, remove_partial_files

from .predictors import Predictor

#: File name endings read as videos (lower case); every other input file must be an image.
VIDEO_SUFFIXES = ('.avi', '.m4v', '.mkv', '.mov', '.mp4', '.mpeg', '.mpg', '.webm')
#: Images of many sizes: at most this many batches' worth of images wait for a full batch.
PENDING_BATCHES = 4
LABELS_SUFFIX, OVERLAY_SUFFIX, SUMMARY_SUFFIX = '.png', '_overlay.jpg', '.json'


# ------------------------------------------------------------------------------ inputs
class Inputs(NamedTuple):
    """What to segment: image files ``(name, path)`` in order, or one video."""
    images: list[tuple[str, str]]
    video: Optional[str] = None


class Item(NamedTuple):
    """One image to segment: its output name, its source for messages, and a reader that
    returns it as BGR ``uint8`` ``[H, W, 3]`` or raises ``ValueError``. Call ``load`` before
    taking the next item (a video's frame is decoded from the current position)."""
    name: str
    source: str
    load: Callable[[], np.ndarray]


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def _inside(path: str, folder: Optional[str]) -> bool:
    return folder is not None and osp.realpath(path).startswith(osp.realpath(folder) + os.sep)


def _glob_root(pattern: str) -> str:
    """The folder a pattern's matches are named relative to: its parts before the first one
    with a wildcard (``data/*/img_*.jpg`` -> ``data``)."""
    parts = pattern.replace(os.sep, '/').split('/')[:-1]
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts))
    return '/'.join(fixed) or ('/' if pattern.startswith('/') else '.')


def _named(paths: Sequence[str], root: str) -> list[tuple[str, str]]:
    """``(name, path)`` sorted by name, where a name is the path relative to ``root`` without
    its extension; two files that would share a name (``a.jpg``, ``a.png``) are refused."""
    named = {}
    for path in sorted(paths):
        name = osp.splitext(osp.relpath(path, root))[0]
        if name in named:
            raise ValueError(f'{named[name]} and {path} would both write {name}{LABELS_SUFFIX}; '
                             'rename one of them or segment them in two runs')
        named[name] = path
    return sorted(named.items())


def list_inputs(source: Union[str, os.PathLike], exclude: Optional[str] = None) -> Inputs:
    """The images a source names: a folder (searched recursively for image files), a glob
    pattern (``**`` matches any depth), one image file, or a video file.

    Args:
        source: The folder, pattern, image or video.
        exclude: A folder whose files are never inputs (the output folder, which may lie inside
            the input folder).

    Raises:
        FileNotFoundError: ``source`` is no file or folder and no pattern.
        ValueError: no image found, a file that is neither image nor video, a video OpenCV
            cannot read, or two images that would write the same outputs.
    """
    source = os.fspath(source)
    endings = ', '.join(IMAGE_SUFFIXES)
    if osp.isdir(source):
        paths = [osp.join(folder, file) for folder, subfolders, files in os.walk(source)
                 for file in files if _is_image(file)]
        paths = [path for path in paths if not _inside(path, exclude)]
        if not paths:
            raise ValueError(f'{source}: no image files ({endings}) in this folder or below')
        return Inputs(_named(paths, source))
    if osp.isfile(source):
        if source.lower().endswith(VIDEO_SUFFIXES):
            _check_video(source)
            return Inputs([], video=source)
        if not _is_image(source):
            raise ValueError(f'{source}: neither an image ({endings}) nor a video '
                             f'({", ".join(VIDEO_SUFFIXES)}) by its name')
        return Inputs(_named([source], osp.dirname(source)))
    if not glob.has_magic(source):
        raise FileNotFoundError(f'{source}: no such file or folder (expected a folder, a glob '
                                'pattern, an image or a video)')
    paths = [path for path in glob.glob(source, recursive=True)
             if osp.isfile(path) and _is_image(path) and not _inside(path, exclude)]
    if not paths:
        raise ValueError(f'{source}: the pattern matches no image files ({endings})')
    return Inputs(_named(paths, _glob_root(source)))


def iter_items(inputs: Inputs) -> Iterator[Item]:
    """The images of :func:`list_inputs` one by one; a video's frames are decoded only when
    loaded (skipped frames are only demultiplexed)."""
    for name, path in inputs.images:
        yield Item(name, path, lambda path=path: read_image(path, 'bgr'))
    if inputs.video is None:
        return
    capture = cv2.VideoCapture(inputs.video)
    try:
        index = 0
        while capture.grab():
            index += 1
            yield Item(f'frame_{index:06d}', f'{inputs.video} frame {index}',
                       lambda index=index: _retrieve(capture, index))
    finally:
        capture.release()


def _check_video(path: str) -> None:
    """Raises ``ValueError`` unless OpenCV opens the video and reads a first frame."""
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise ValueError(f'{path}: OpenCV cannot open this video (codec or container not '
                             'supported, or not a video)')
        if not capture.grab():
            raise ValueError(f'{path}: OpenCV reads no frame from this video')
    finally:
        capture.release()


def _retrieve(capture: cv2.VideoCapture, index: int) -> np.ndarray:
    ok, frame = capture.retrieve()
    if not ok or frame is None:
        raise ValueError(f'frame {index} cannot be decoded')
    return frame


def count_items(inputs: Inputs) -> Optional[int]:
    """How many images there are; for a video the count its header gives (None if none)."""
    if inputs.video is None:
        return len(inputs.images)
    capture = cv2.VideoCapture(inputs.video)
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return frames or None


# ----------------------------------------------------------------------------- outputs
class OutputPaths(NamedTuple):
    labels: str
    overlay: str
    summary: str

    def finished(self) -> bool:
        """Whether the image is done: its JSON, which :func:`write_outputs` deletes first and
        writes last, exists (and so do the two other files, unless removed by hand)."""
        return all(osp.isfile(path) for path in self)


def output_paths(out_dir: str, name: str) -> OutputPaths:
    """Where the three files of the image named ``name`` go."""
    stem = osp.join(out_dir, name)
    return OutputPaths(stem + LABELS_SUFFIX, stem + OVERLAY_SUFFIX, stem + SUMMARY_SUFFIX)


def class_fractions(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """The share of the pixels of each class present, largest first (they sum to 1)."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    order = np.argsort(-counts, kind='stable')
    return {class_names[i].strip(): float(counts[i] / labels.size) for i in order if counts[i]}


def overlay(image_bgr: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            opacity: float) -> np.ndarray:
    """``(1 - opacity) * image + opacity * colour of the label``, BGR ``uint8``."""
    colours = palette[labels][..., ::-1].astype(np.float32)  # RGB palette -> BGR
    blended = (1 - opacity) * image_bgr.astype(np.float32) + opacity * colours
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def labels_png(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """Labels ``[H, W]`` as a palette PNG whose colour ``i`` is the palette's ``i``."""
    picture = Image.fromarray(labels.astype(np.uint8))  # mode 'L' ...
    picture.putpalette(palette.astype(np.uint8).ravel().tolist())  # ... becomes 'P'
    buffer = io.BytesIO()
    picture.save(buffer, format='PNG')
    return buffer.getvalue()


def write_outputs(paths: OutputPaths, image_bgr: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str], palette: np.ndarray, opacity: float,
                  info: dict) -> None:
    """Writes the three files of one image, each atomically; deletes its old JSON first and
    writes the new one last, so that an existing JSON means a finished image."""
    if osp.isfile(paths.summary):  # from here until the end, the image counts as unfinished
        os.remove(paths.summary)
    atomic_write(paths.labels, labels_png(labels, palette))
    ok, jpeg = cv2.imencode('.jpg', overlay(image_bgr, labels, palette, opacity))
    if not ok:
        raise RuntimeError(f'OpenCV could not encode {paths.overlay}')
    atomic_write(paths.overlay, jpeg.tobytes())
    summary = dict(height=int(labels.shape[0]), width=int(labels.shape[1]),
                   fractions=class_fractions(labels, class_names), **info)
    atomic_write(paths.summary, (json.dumps(summary, indent=2) + '\n').encode())


# --------------------------------------------------------------------------------- loop
class Summary(NamedTuple):
    written: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]  # (source, reason)


def segment_inputs(predictor: Predictor, inputs: Inputs, out_dir: str, *,
                   opacity: float = 0.5, overwrite: bool = False,
                   info: Optional[dict] = None, progress: bool = True) -> Summary:
    """Segments every input image and writes its three files under ``out_dir``.

    Finished images (their JSON and the two other files exist) are skipped (unless
    ``overwrite``); images that cannot be read
    are reported as they come (by name, above the progress bar) and listed in the summary.
    Images of one size are batched up to ``predictor.batch_size``; a batch goes through the
    model when full, when more than ``PENDING_BATCHES`` batches' worth of images of several
    sizes wait (the oldest batch), and at the end. An error of the model itself is raised
    (with the images it was given): it is no fault of one image.

    Args:
        info: Written into every JSON (the config, checkpoint and backend used).
        progress: Show a tqdm progress bar (images per second) on stderr.
    """
    for folder, _, _ in os.walk(out_dir):
        for path in remove_partial_files(folder):
            tqdm.write(f'removed {path}, left by a killed run')
    written, skipped, failed = [], [], []
    if not overwrite:  # image files: counted out before the bar starts, so it shows the rest
        skipped = [name for name, _ in inputs.images if output_paths(out_dir, name).finished()]
        done = set(skipped)
        inputs = inputs._replace(images=[image for image in inputs.images
                                         if image[0] not in done])
    pending: dict[tuple[int, ...], list[tuple[Item, np.ndarray]]] = {}
    bar = tqdm(total=count_items(inputs), unit='img', disable=not progress, dynamic_ncols=True)

    def flush(shape: tuple[int, ...]) -> None:
        batch = pending.pop(shape)
        try:
            labels = predictor.predict([image for _, image in batch])
        except Exception as err:
            sources = ', '.join(item.source for item, _ in batch)
            raise RuntimeError(f'the model failed on {sources}: {err}') from err
        for (item, image), item_labels in zip(batch, labels):
            write_outputs(output_paths(out_dir, item.name), image, item_labels,
                          predictor.class_names, predictor.palette, opacity,
                          dict(image=item.source, **(info or {})))
            written.append(item.name)
        bar.update(len(batch))

    with bar:
        for item in iter_items(inputs):
            if not overwrite and output_paths(out_dir, item.name).finished():
                skipped.append(item.name)
                bar.update()
                continue
            try:
                image = item.load()
            except ValueError as err:  # an ImageError, or a video frame that does not decode
                reason = getattr(err, 'reason', str(err))
                failed.append((item.source, reason))
                tqdm.write(f'{item.source}: {reason}; going on without it')
                bar.update()
                continue
            pending.setdefault(image.shape, []).append((item, image))
            if len(pending[image.shape]) >= predictor.batch_size:
                flush(image.shape)
            elif sum(map(len, pending.values())) > PENDING_BATCHES * predictor.batch_size:
                flush(next(iter(pending)))  # many sizes: the oldest part-filled batch goes
        for shape in list(pending):
            flush(shape)
    return Summary(written, skipped, failed)
