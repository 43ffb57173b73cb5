"""Tests of the parameter-free head of the auxiliary pixel-text matching loss."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from denseclip.models.identity_head import IdentityHead

LOSS = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)


def _samples(labels: torch.Tensor) -> list[SegDataSample]:
    samples = []
    for label in labels:  # [H, W] each
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label[None])
        samples.append(sample)
    return samples


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    """A score map at 1/4 of the label size and labels with some ignored pixels."""
    torch.manual_seed(0)
    score = torch.randn(2, 3, 4, 4) / 0.07  # [B, K, h, w], already divided by tau
    labels = torch.randint(0, 3, (2, 16, 16))
    labels[0, :3] = 255
    labels[1, :, -2:] = 255
    return score, labels


def test_has_no_parameters():
    head = MODELS.build(dict(type='IdentityHead', num_classes=3, loss_decode=LOSS,
                             align_corners=False))
    assert isinstance(head, IdentityHead)
    assert list(head.parameters()) == [] and head.state_dict() == {}
    assert not hasattr(head, 'conv_seg') and head.dropout is None
    head.init_weights()  # must not look for conv_seg
    assert head.num_classes == head.out_channels == 3


def test_forward_is_identity():
    head = IdentityHead(num_classes=3, loss_decode=LOSS)
    score = torch.randn(2, 3, 4, 4)
    assert head(score) is score
    other = torch.randn(2, 3, 2, 2)
    assert head([other, score]) is score  # in_index -1 by default
    assert IdentityHead(num_classes=3, in_index=0, loss_decode=LOSS)((other, score)) is other


def test_loss_matches_hand_computation():
    head = IdentityHead(num_classes=3, loss_decode=LOSS, align_corners=False)
    score, labels = _example()
    losses = head.loss(score, _samples(labels), train_cfg=None)
    assert set(losses) == {'loss_ce', 'acc_seg'}

    logits = F.interpolate(score, size=(16, 16), mode='bilinear', align_corners=False)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction='none')
    # mmseg's default (avg_non_ignore=False, as the released code was trained): the mean is
    # taken over all pixels, ignored ones counting as zero
    torch.testing.assert_close(losses['loss_ce'], per_pixel.mean() * 0.4)
    valid = labels != 255
    accuracy = (logits.argmax(1) == labels)[valid].float().mean() * 100
    torch.testing.assert_close(losses['acc_seg'].reshape(()), accuracy)


def test_loss_averaged_over_valid_pixels():
    loss = dict(LOSS, avg_non_ignore=True)
    head = IdentityHead(num_classes=3, loss_decode=loss, align_corners=False)
    score, labels = _example()
    losses = head.loss([score], _samples(labels), train_cfg=None)
    logits = F.interpolate(score, size=(16, 16), mode='bilinear', align_corners=False)
    expected = F.cross_entropy(logits, labels, ignore_index=255) * 0.4
    torch.testing.assert_close(losses['loss_ce'], expected)


def test_loss_backpropagates_to_score_map():
    head = IdentityHead(num_classes=3, loss_decode=LOSS)
    score, labels = _example()
    score.requires_grad_(True)
    head.loss(score, _samples(labels), train_cfg=None)['loss_ce'].backward()
    assert score.grad is not None and score.grad.abs().sum() > 0


@pytest.mark.parametrize('align_corners', [False, True])
def test_predict_upsamples_to_image(align_corners):
    head = IdentityHead(num_classes=3, loss_decode=LOSS, align_corners=align_corners)
    score = torch.randn(1, 3, 4, 4)
    out = head.predict(score, [dict(img_shape=(16, 16), pad_shape=(16, 16))], test_cfg=None)
    expected = F.interpolate(score, size=(16, 16), mode='bilinear',
                             align_corners=align_corners)
    torch.testing.assert_close(out, expected)
