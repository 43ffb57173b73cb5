"""mmseg's ``MMSegInferencer`` for DenseCLIP configs."""
from typing import Optional

from mmseg.apis import MMSegInferencer
from torch import nn

from denseclip.utils import fill_class_names


class DenseCLIPInferencer(MMSegInferencer):
    """``MMSegInferencer`` that takes DenseCLIP configs as they are.

    The only difference: ``model.class_names`` left ``None`` in a config is filled from its
    dataset's metainfo before the model is built (as ``tools/train.py`` does), so a config path
    works directly. Everything else, results, pictures (``out_dir=...``) and batching, is
    mmseg's::

        inferencer = DenseCLIPInferencer(CONFIG, weights=CHECKPOINT, device='cpu')
        result = inferencer('demo.jpg', out_dir='outputs')   # {'predictions', 'visualization'}
        sample = inferencer('demo.jpg', return_datasamples=True)   # SegDataSample
    """

    def _init_model(self, cfg, weights: Optional[str], device: str = 'cpu') -> nn.Module:
        fill_class_names(cfg)
        return super()._init_model(cfg, weights, device)
