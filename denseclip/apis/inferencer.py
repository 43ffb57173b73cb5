"""mmseg's ``MMSegInferencer`` for DenseCLIP configs."""
import inspect
import os
from typing import Optional, Union

from mmengine.config import Config, ConfigDict
from mmseg.apis import MMSegInferencer
from torch import nn

from denseclip.clip.preprocess import read_image
from denseclip.engine.config import prepare_config
from denseclip.engine.safe_load import fit_checkpoint


#: Whether this mmseg's inferencer takes ``show_progress`` (OneDL's does; upstream mmseg 1.2.2's
#: does not, although mmengine's base inferencer, which reads it, does).
FORWARDS_SHOW_PROGRESS = 'show_progress' in inspect.signature(MMSegInferencer.__init__).parameters


class DenseCLIPInferencer(MMSegInferencer):
    """``MMSegInferencer`` that takes DenseCLIP configs as they are.

    Two differences: the config is prepared as for every entry point before the model is built
    (:func:`~denseclip.engine.config.prepare_config`: ``model.class_names`` left ``None`` is
    filled from its dataset's metainfo, SyncBN becomes BN, checkpoints are read safely), so a
    config path works directly; and ``weights`` that do not fit the model are refused (a
    :class:`~denseclip.clip.CheckpointError` that counts and lists the keys) instead of loaded
    in part. Everything else, results, pictures (``out_dir=...``) and batching, is mmseg's::

        inferencer = DenseCLIPInferencer(CONFIG, weights=CHECKPOINT, device='cpu')
        result = inferencer('demo.jpg', out_dir='outputs')   # {'predictions', 'visualization'}
        sample = inferencer('demo.jpg', return_datasamples=True)   # SegDataSample
    """

    def __init__(self, model: Union[str, dict, Config, ConfigDict], weights: Optional[str] = None,
                 classes: Optional[Union[str, list]] = None,
                 palette: Optional[Union[str, list]] = None, dataset_name: Optional[str] = None,
                 device: Optional[str] = None, scope: Optional[str] = 'mmseg',
                 show_progress: bool = True) -> None:
        progress = dict(show_progress=show_progress) if FORWARDS_SHOW_PROGRESS else {}
        super().__init__(model, weights, classes, palette, dataset_name, device, scope,
                         **progress)
        self.show_progress = show_progress  # what mmengine's __call__ reads, on every stack

    def _init_model(self, cfg, weights: Optional[str], device: str = 'cpu') -> nn.Module:
        prepare_config(cfg, device=device)  # in place: mmseg's inferencer keeps this config
        self._weights = weights  # named by the fit check
        return super()._init_model(cfg, weights, device)

    def _inputs_to_list(self, inputs) -> list:
        """mmengine's list of inputs, each image file checked by the one image reader
        (:func:`~denseclip.clip.preprocess.read_image`) so that a bad file is named."""
        listed = super()._inputs_to_list(inputs)
        for item in listed:
            if isinstance(item, (str, os.PathLike)):
                read_image(item, 'bgr')
        return listed

    def _load_weights_to_model(self, model: nn.Module, checkpoint: Optional[dict],
                               cfg) -> None:
        if checkpoint is not None:
            fit_checkpoint(model, checkpoint, f'checkpoint {self._weights!r}')
        super()._load_weights_to_model(model, checkpoint, cfg)
