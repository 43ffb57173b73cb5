"""A model for inference from a config and a checkpoint, and images through it: mmseg's
``init_model`` and ``inference_model`` made to work with DenseCLIP configs."""
import copy
import os
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmseg.apis import init_model as mmseg_init_model
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from denseclip.clip.preprocess import read_image
from denseclip.engine.config import prepare_config
from denseclip.engine.safe_load import load_checkpoint

ImageType = Union[str, os.PathLike, np.ndarray]
ImagesType = Union[ImageType, Sequence[ImageType]]

#: Test-pipeline steps that need a label file, which an inference image does not have.
ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadDepthAnnotation')


def dataset_meta(meta: dict, model: nn.Module) -> Optional[dict]:
    """The classes and palette of a checkpoint's ``meta`` (mmseg 1.x or 0.x), else the model's
    class names (DenseCLIP) without a palette, else None."""
    if 'dataset_meta' in meta:
        return dict(meta['dataset_meta'])
    if 'CLASSES' in meta:
        return dict(classes=meta['CLASSES'], palette=meta.get('PALETTE'))
    classes = getattr(model, 'class_names', None)
    return dict(classes=classes, palette=None) if classes else None


def takes_clip_archive(cfg: Config) -> bool:
    """Whether the model of ``cfg`` takes every weight from a CLIP archive (the zero-shot
    segmentor says so with ``clip_archive_is_checkpoint``): then the tools' CHECKPOINT is that
    archive, loaded into both towers, instead of an mmengine checkpoint of the segmentor."""
    model = cfg.model
    while model.get('module') is not None:  # tools/test.py --tta: SegTTAModel(module=...)
        model = model.module
    kind = model.get('type')
    model_class = MODELS.get(kind) if isinstance(kind, str) else kind
    return bool(getattr(model_class, 'clip_archive_is_checkpoint', False))


def load_clip_archive(model: nn.Module, path: str) -> None:
    """Loads CLIP weights into a (possibly wrapped: DDP, TTA) zero-shot segmentor.

    ``path`` is an OpenAI CLIP archive, a CLIP state dict, or a checkpoint of the contrastive
    CLIP model written by ``tools/train.py`` (an mmengine checkpoint, keys under ``clip.``),
    read by the one reader of CLIP weights (:func:`~denseclip.clip.reading.read_clip_weights`)
    in the segmentor's ``load_clip``, as ``tools/zero_shot.py`` reads its CHECKPOINT.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file cannot be read safely, holds no CLIP weights (the message
            says which files are expected), or they do not fit the segmentor's towers.
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    model.load_clip(path)


def init_model(config: Union[str, os.PathLike, Config], checkpoint: Optional[str] = None,
               device: str = 'cpu', cfg_options: Optional[dict] = None) -> nn.Module:
    """mmseg's ``init_model`` for DenseCLIP configs, refusing checkpoints that do not fit.

    Prepares (a copy of) the config as every entry point does
    (:func:`~denseclip.engine.config.prepare_config`: class names from the dataset, SyncBN ->
    BN, safe loading); builds the model with ``mmseg.apis.init_model``, which loads no CLIP
    weights (the checkpoint holds every weight), then loads the checkpoint only if it fits the
    model key by key and shape by shape. Use it with :func:`inference_model`. A zero-shot
    segmentor's checkpoint is the CLIP archive itself (:func:`takes_clip_archive`).

    Args:
        config: Config file or object.
        checkpoint: Checkpoint to load; ``None`` keeps the random initialisation.
        device: ``'cpu'`` or ``'cuda:N'``.
        cfg_options: Overrides merged into the config.

    Raises:
        CheckpointError: the checkpoint cannot be read safely or does not fit the model (the
            message counts and lists the keys and names the likely cause).
    """
    if isinstance(config, Config):
        config = copy.deepcopy(config)
    cfg = prepare_config(config, cfg_options, device=device)
    model = mmseg_init_model(cfg, None, device=device)
    if checkpoint is not None and takes_clip_archive(cfg):
        load_clip_archive(model, checkpoint)
        model.dataset_meta = dataset_meta({}, model)
    elif checkpoint is not None:
        meta = load_checkpoint(model, checkpoint).get('meta') or {}
        model.dataset_meta = dataset_meta(meta, model)
    return model


def inference_pipeline(cfg) -> Compose:
    """The config's test pipeline for a BGR array: ``LoadImageFromNDArray``, no label loading."""
    steps = [step for step in copy.deepcopy(cfg.test_pipeline)
             if step['type'] not in ANNOTATION_LOADERS]
    steps[0]['type'] = 'LoadImageFromNDArray'
    return Compose(steps)


def pack_inputs(model: nn.Module, images: Sequence[ImageType]) -> dict:
    """Runs the test pipeline on images (paths, read by :func:`~denseclip.clip.preprocess.
    read_image`, or BGR arrays as OpenCV reads them): ``dict(inputs=[3, H', W'] each,
    data_samples=[...])``, as a data loader gives them."""
    batch = dict(inputs=[], data_samples=[])
    for image in images:
        if not isinstance(image, np.ndarray):  # the one image reader: errors name the file
            image = read_image(image, 'bgr')
        packed = inference_pipeline(model.cfg)(dict(img=image))
        batch['inputs'].append(packed['inputs'])
        batch['data_samples'].append(packed['data_samples'])
    return batch


def inference_model(model: nn.Module,
                    images: ImagesType) -> Union[SegDataSample, list[SegDataSample]]:
    """``mmseg.apis.inference_model`` without its side effect.

    mmseg's rewrites ``model.cfg.test_pipeline`` in place when given an array, after which the
    same model fails on paths; this builds the pipeline afresh for each call. Images are paths
    or BGR arrays (as ``cv2.imread`` returns); a list gives a list of results.
    """
    is_batch = isinstance(images, (list, tuple))
    with torch.no_grad():
        results = model.test_step(pack_inputs(model, images if is_batch else [images]))
    return results if is_batch else results[0]
