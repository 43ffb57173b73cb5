"""For DenseCLIP, the decoder's prediction with the pixel-text score maps of the same
preprocessed input, brought back to the image's original size; the same for the zero-shot
segmentor, whose prediction follows the queried names too."""
import contextlib
from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch
from mmseg.models.utils import resize
from mmseg.structures import SegDataSample
from torch import nn

from .inference import ImageType, pack_inputs


class ScoreMapResult(NamedTuple):
    """What :func:`predict_with_score_maps` returns.

    Attributes:
        data_sample: mmseg's prediction (``pred_sem_seg``, ``seg_logits``) for the trained
            classes, exactly as ``inference_model`` gives it.
        score_maps: Pixel-text cosine similarities ``[K, H, W]`` at the image's original size,
            one per name of ``class_names``.
        class_names: The names the score maps belong to: the trained classes, or the queried
            ones (open vocabulary).
        predicted_classes: The names of the prediction's labels: the trained classes, or for
            a zero-shot segmentor the queried names.
    """
    data_sample: SegDataSample
    score_maps: torch.Tensor
    class_names: tuple[str, ...]
    predicted_classes: tuple[str, ...] = ()


def preprocess(model: nn.Module, image: ImageType) -> dict:
    """One image packed by the test pipeline and run through the model's data preprocessor:
    ``dict(inputs=[1, 3, H', W'], data_samples=[...])``."""
    return model.data_preprocessor(pack_inputs(model, [image]), False)


def to_original_size(maps: torch.Tensor, metainfo: dict,
                     align_corners: bool = False) -> torch.Tensor:
    """Maps ``[1, K, H', W']`` over the padded network input -> ``[K, H, W]`` over the image.

    Undoes what the pipeline and the preprocessor did, as mmseg's ``postprocess_result`` does
    for the logits: crops the padding, undoes a test-time flip, resizes to ``ori_shape``.
    """
    height, width = maps.shape[-2:]
    left, right, top, bottom = metainfo.get('img_padding_size',
                                            metainfo.get('padding_size', [0] * 4))
    maps = maps[:, :, top:height - bottom, left:width - right]
    if metainfo.get('flip'):
        maps = maps.flip(dims=(3,) if metainfo['flip_direction'] == 'horizontal' else (2,))
    return resize(maps, size=metainfo['ori_shape'], mode='bilinear',
                  align_corners=align_corners, warning=False)[0]


@torch.no_grad()
def predict_with_score_maps(model: nn.Module, image: ImageType,
                            class_names: Optional[Sequence[str]] = None) -> ScoreMapResult:
    """The decoder's prediction and the pixel-text score maps of one image.

    Both come from one preprocessed input. The score maps are computed over the whole network
    input in one pass (also for configs that predict by sliding window), upsampled to it,
    stripped of padding and resized to the original image.

    Args:
        model: A DenseCLIP or zero-shot segmentor from ``denseclip.apis.init_model``.
        image: An image path or a BGR ``uint8`` array (as ``cv2.imread`` returns).
        class_names: Names to match the pixels against instead of the trained classes (open
            vocabulary). For DenseCLIP only the text branch sees them: the decoder keeps its
            trained classes, so ``data_sample`` does not change. A zero-shot segmentor (it has
            ``using_classes``) predicts these names instead.
    """
    if not hasattr(model, 'score_maps'):
        raise TypeError(f'{type(model).__name__} has no pixel-text score maps; a DenseCLIP '
                        'or zero-shot (configs/zero_shot/) config is needed')
    data = preprocess(model, image)
    inputs, data_samples = data['inputs'], data['data_samples']
    names = tuple(model.class_names if class_names is None else class_names)
    follows = class_names is not None and hasattr(model, 'using_classes')
    with model.using_classes(names) if follows else contextlib.nullcontext():
        data_sample = model.predict(inputs, data_samples)[0]
        predicted = tuple(model.class_names)
        maps = model.score_maps(inputs, None if class_names is None else names,
                                size=tuple(inputs.shape[-2:]))
    align_corners = getattr(model, 'align_corners', False)  # the decode head's (mmseg)
    return ScoreMapResult(data_sample, to_original_size(maps, data_sample.metainfo, align_corners),
                          names, predicted)
