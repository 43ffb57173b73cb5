"""Sliding-window inference with the crops run in batches instead of one at a time.

mmseg's ``EncoderDecoder.slide_inference`` runs ``encode_decode`` once per crop. The crops of
one image all have the same size (``min(crop, image)`` on each side), so they can be stacked
and decoded several at a time; the logits are then summed into the same prediction and count
maps, crop by crop in the same order, and divided by the counts. Only the batch size of each
forward pass changes, so the result equals mmseg's up to floating-point reassociation inside
batched kernels (the tests check this, edge crops included).
"""
from typing import Optional

import torch
from torch import Tensor


def slide_windows(image_size: tuple[int, int], crop_size: tuple[int, int],
                  stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The crops ``(y1, y2, x1, x2)`` of mmseg's slide inference, in its order.

    The last row and column of windows are shifted back to end at the border, so every crop
    has the size ``min(crop, image)`` along each side.
    """
    (h_img, w_img), (h_crop, w_crop), (h_stride, w_stride) = image_size, crop_size, stride
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * h_stride + h_crop, h_img)
            x2 = min(w_idx * w_stride + w_crop, w_img)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


def batched_slide_inference(segmentor, inputs: Tensor, batch_img_metas: list[dict],
                            crops_per_batch: int) -> Tensor:
    """Slide inference of an mmseg ``EncoderDecoder`` with ``crops_per_batch`` crops per pass.

    Args:
        segmentor: The segmentor; its ``test_cfg`` gives ``crop_size`` and ``stride``.
        inputs: Images ``[N, C, H, W]``.
        batch_img_metas: Their meta information (not modified).
        crops_per_batch: Crops decoded per forward pass; each pass sees
            ``crops_per_batch * N`` images.

    Returns:
        Logits ``[N, out_channels, H, W]``, the mean over the crops covering each pixel.
    """
    if crops_per_batch < 1:
        raise ValueError(f'crops_per_batch must be >= 1, got {crops_per_batch}')
    batch_size, _, h_img, w_img = inputs.shape
    windows = slide_windows((h_img, w_img), segmentor.test_cfg.crop_size,
                            segmentor.test_cfg.stride)
    preds = inputs.new_zeros((batch_size, segmentor.out_channels, h_img, w_img))
    count_mat = inputs.new_zeros((batch_size, 1, h_img, w_img))
    for start in range(0, len(windows), crops_per_batch):
        chunk = windows[start:start + crops_per_batch]
        # every crop has the same size: [len(chunk) * N, C, h, w], crop-major
        crops = torch.cat([inputs[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        # as in mmseg, a torch.Size img_shape makes the head resize the logits to the crop
        metas = [dict(meta, img_shape=crops.shape[2:]) for meta in batch_img_metas]
        logits = segmentor.encode_decode(crops, metas)
        for index, (y1, y2, x1, x2) in enumerate(chunk):
            preds[:, :, y1:y2, x1:x2] += logits[index * batch_size:(index + 1) * batch_size]
            count_mat[:, :, y1:y2, x1:x2] += 1
    if (count_mat == 0).any():
        raise RuntimeError('slide inference left pixels uncovered; check test_cfg.stride')
    return preds / count_mat


class BatchedSlideMixin:
    """Makes an ``EncoderDecoder``'s slide inference batch its crops when asked to.

    ``test_cfg.slide_batch_size = N`` decodes ``N`` crops (of every image) per forward pass;
    unset (or ``None``) keeps mmseg's crop-by-crop loop. Put the mixin before
    ``EncoderDecoder`` among the bases.
    """

    def slide_inference(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        crops_per_batch: Optional[int] = self.test_cfg.get('slide_batch_size')
        if crops_per_batch is None:
            return super().slide_inference(inputs, batch_img_metas)
        return batched_slide_inference(self, inputs, batch_img_metas, crops_per_batch)
