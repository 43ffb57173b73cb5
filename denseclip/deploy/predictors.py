"""The model behind :mod:`.folder` (``tools/infer.py``): a :class:`Predictor` maps BGR
images of one size to their labels and names and colours the classes.

Two make one: :func:`torch_predictor` (a PyTorch model built by
:func:`denseclip.apis.init_model`, which batches images of the same size) and
:func:`ort_predictor` (an ONNX export run by ONNX Runtime, one image at a time). Classes without
colours get :func:`denseclip.datasets.default_palette`'s, as in every tool.
"""
from collections.abc import Callable, Sequence
from typing import NamedTuple, Optional

import numpy as np

#: A palette PNG holds at most this many colours, hence classes.
MAX_PNG_CLASSES = 256


class Predictor(NamedTuple):
    """A model as :mod:`.folder` uses it: BGR images (of one size) -> labels ``[H, W]`` each, at
    the images' sizes; ``class_names`` and RGB ``palette`` ``[K, 3]`` name and colour them."""
    predict: Callable[[list[np.ndarray]], list[np.ndarray]]
    class_names: tuple[str, ...]
    palette: np.ndarray
    batch_size: int = 1


def _checked_palette(class_names: Sequence[str], palette: Optional[Sequence]) -> np.ndarray:
    """``palette`` as ``uint8`` ``[K, 3]`` if it has a colour per class, else the demo's."""
    if len(class_names) > MAX_PNG_CLASSES:
        raise ValueError(f'{len(class_names)} classes do not fit a palette PNG (at most '
                         f'{MAX_PNG_CLASSES})')
    if palette is None or len(palette) != len(class_names):
        from denseclip.datasets import default_palette
        palette = default_palette(len(class_names))
    return np.asarray(palette, dtype=np.uint8).reshape(len(class_names), 3)


def torch_predictor(config: str, checkpoint: str, device: str = 'cpu',
                    class_names: Optional[Sequence[str]] = None,
                    cfg_options: Optional[dict] = None, batch_size: int = 1) -> Predictor:
    """A model built by :func:`denseclip.apis.init_model` (which refuses a checkpoint that
    does not fit), run by :func:`denseclip.apis.inference_model` on up to ``batch_size``
    images of one size at a time.

    Args:
        class_names: Replace ``model.class_names``: any list for a model whose classes are
            free (``ZeroShotCLIPSegmentor``); as many names as trained for DenseCLIP, whose
            decoder is tied to its classes.

    Raises:
        ValueError: ``class_names`` for a model without ``model.class_names``, or a number
            of names the checkpoint was not trained for.
        CheckpointError: the checkpoint cannot be read or does not fit the model.
    """
    from mmengine.config import Config

    from denseclip.apis import inference_model, init_model
    from denseclip.clip.errors import CheckpointError
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if class_names is not None:
        if 'class_names' not in cfg.model:
            raise ValueError(f'--classes: the model of {config} ({cfg.model.get("type")}) '
                             'takes no model.class_names; its classes are fixed')
        cfg.model.class_names = list(class_names)
    try:
        model = init_model(cfg, checkpoint, device=device)
    except CheckpointError as err:
        if class_names is None:
            raise
        raise ValueError(
            f'--classes gives {len(class_names)} names and {checkpoint} does not fit a model '
            f'with them: {err}\nA DenseCLIP decoder is tied to the classes it was trained '
            'for: give exactly as many names (in the trained order), or use a model whose '
            'classes are free (ZeroShotCLIPSegmentor)') from err
    meta = model.dataset_meta or {}
    names = tuple(class_names or meta.get('classes') or getattr(model, 'class_names', ()))
    if not names:
        raise ValueError(f'{checkpoint} names no classes (no dataset_meta) and the model has '
                         'no class_names; give --classes')

    def predict(images: list[np.ndarray]) -> list[np.ndarray]:
        results = inference_model(model, images)
        return [result.pred_sem_seg.data[0].cpu().numpy() for result in results]

    # renamed classes keep the trained colours; a palette of another length is not used
    return Predictor(predict, names, _checked_palette(names, meta.get('palette')), batch_size)


def ort_predictor(onnx_file: str) -> Predictor:
    """An exported model run by ONNX Runtime (:class:`denseclip.deploy.ort.OrtSegmentor`),
    one image at a time; classes and palette come from the file."""
    from denseclip.deploy.ort import OrtSegmentor
    segmentor = OrtSegmentor(onnx_file)
    names = tuple(segmentor.class_names)

    def predict(images: list[np.ndarray]) -> list[np.ndarray]:
        labels = []
        for image in images:
            logits = segmentor.predict(image)  # [K, H, W]
            if logits.shape != (len(names), *image.shape[:2]):
                raise RuntimeError(f'{onnx_file} gave logits of shape {logits.shape} for an '
                                   f'image of {image.shape[:2]}; expected '
                                   f'{(len(names), *image.shape[:2])}')
            labels.append(logits.argmax(axis=0))
        return labels

    return Predictor(predict, names, _checked_palette(names, segmentor.palette))
