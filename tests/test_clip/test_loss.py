"""CLIP's contrastive loss in one process: the global-batch loss reduces to the hand-computed
symmetric cross-entropy, with the learnable temperature."""
import math

import pytest
import torch
import torch.nn.functional as F

from denseclip.clip import contrastive_loss
from denseclip.clip.loss import gather_features, gathered_contrastive_loss, world


def features(batch: int = 4, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(batch, dim, generator=generator, dtype=torch.float64), dim=1)
    texts = F.normalize(torch.randn(batch, dim, generator=generator, dtype=torch.float64), dim=1)
    return images, texts


def hand_loss(images: torch.Tensor, texts: torch.Tensor, scale: float) -> float:
    """Mean over images of -log softmax over texts at the pair, and the same for texts."""
    n = images.shape[0]
    sim = [[scale * float(images[i] @ texts[j]) for j in range(n)] for i in range(n)]
    rows = sum(math.log(sum(math.exp(s) for s in sim[i])) - sim[i][i] for i in range(n)) / n
    cols = sum(math.log(sum(math.exp(sim[i][j]) for i in range(n))) - sim[j][j]
               for j in range(n)) / n
    return (rows + cols) / 2


def test_single_process_world():
    assert world() == (0, 1)
    images, _ = features()
    assert gather_features(images) is images


def test_loss_matches_hand_computation_and_contrastive_loss():
    images, texts = features()
    logit_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    result = gathered_contrastive_loss(images, texts, logit_scale)
    assert result['loss'].item() == pytest.approx(hand_loss(images, texts, 1 / 0.07), rel=1e-12)
    reference = contrastive_loss(logit_scale.exp() * images @ texts.t())
    torch.testing.assert_close(result['loss'], reference, rtol=1e-12, atol=0)


def test_accuracy_counts_pairs_that_win_both_ways():
    images = torch.eye(4, dtype=torch.float64)
    texts = images[[0, 1, 3, 2]]  # pairs 2 and 3 swapped: half of the images and texts match
    result = gathered_contrastive_loss(images, texts, torch.tensor(0., dtype=torch.float64))
    assert result['accuracy'].item() == pytest.approx(0.5)
    assert not result['accuracy'].requires_grad


def test_temperature_gradient_sharpens_matching_pairs():
    """Perfectly matching pairs: a larger scale lowers the loss, so d loss / d logit_scale < 0."""
    images = torch.eye(4, dtype=torch.float64)
    logit_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    gathered_contrastive_loss(images, images.clone(), logit_scale)['loss'].backward()
    assert logit_scale.grad.item() < 0


@pytest.mark.parametrize('shapes', [((4, 8), (3, 8)), ((4, 8), (4, 6)), ((8, ), (8, ))])
def test_rejects_mismatched_features(shapes):
    with pytest.raises(ValueError, match='must both be'):
        gathered_contrastive_loss(torch.zeros(shapes[0]), torch.zeros(shapes[1]),
                                  torch.tensor(0.))
