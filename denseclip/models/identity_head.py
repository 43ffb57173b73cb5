"""The parameter-free head of DenseCLIP's auxiliary pixel-text matching loss."""
from collections.abc import Sequence

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import ConfigType


@MODELS.register_module()
class IdentityHead(BaseDecodeHead):
    """A decode head whose logits are its input: the pixel-text score map divided by ``tau``.

    It exists to reuse mmseg's loss machinery (``loss -> forward -> loss_by_feat``: bilinear
    upsampling to the label size, the configured ``loss_decode`` with ``ignore_index``, and
    ``acc_seg``) for a score map that the segmentor has already computed. Unlike every other
    :class:`BaseDecodeHead` it has no parameters at all: ``conv_seg`` and the dropout are
    removed, so the released DenseCLIP checkpoints (which hold no ``identity_head`` keys) load
    as they are.

    ``forward`` accepts the score map ``[B, K, h, w]`` itself, or -- as mmseg's heads do -- a
    list or tuple of maps, of which the ``in_index``-th is taken.

    Args:
        num_classes: Number ``K`` of classes, i.e. channels of the score map.
        in_index: Which element to take when given a list or tuple of maps.
        loss_decode: Config of the loss (or a list of configs); its ``loss_weight`` is the
            weight of the auxiliary loss (0.4 in DenseCLIP).
        ignore_index: Label value that is ignored by the loss and the accuracy.
        align_corners: ``align_corners`` of the bilinear upsampling.
    """

    def __init__(self, num_classes: int, in_index: int = -1,
                 loss_decode: ConfigType | Sequence[ConfigType] = dict(
                     type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4),
                 ignore_index: int = 255, align_corners: bool = False):
        # the base class insists on building conv_seg; in/out channels are placeholders
        super().__init__(
            in_channels=num_classes,
            channels=num_classes,
            num_classes=num_classes,
            dropout_ratio=0.0,
            in_index=in_index,
            loss_decode=loss_decode,
            ignore_index=ignore_index,
            align_corners=align_corners,
            init_cfg=None)
        del self.conv_seg
        if any(True for _ in self.parameters()):
            raise ValueError('IdentityHead must have no parameters; loss_decode '
                             f'{loss_decode} adds some')

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Returns the score map unchanged.

        Args:
            inputs: The score map divided by ``tau``, ``[B, K, h, w]``, or a list/tuple of
                maps of which the ``in_index``-th is taken.

        Returns:
            The logits ``[B, K, h, w]`` (the same tensor object).
        """
        if isinstance(inputs, torch.Tensor):
            return inputs
        return inputs[self.in_index]

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """There is no classifier: the features already are the logits."""
        return feat
