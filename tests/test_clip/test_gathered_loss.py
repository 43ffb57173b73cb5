"""The global-batch loss on 2 processes equals one process's loss on the concatenated batch,
and so do the gradients after DDP's averaging.

Each of the two gloo processes (CPU) embeds half of an 8-pair batch in a tiny float64 CLIP
wrapped in ``DistributedDataParallel``. Its loss covers its own rows of the 8 x 8 logit matrix
(images against all texts, texts against all images), so the mean of the two losses is the
single-process loss. The gather's backward sums over both ranks' losses the gradient of each
rank's features, and DDP averages the parameter gradients over the ranks: for the towers
``1/2 sum_r sum_q dL_q/df_r df_r/dθ`` and for ``logit_scale`` ``1/2 sum_r dL_r/ds``, both the
gradient of ``L = 1/2 (L_0 + L_1)``, the single-process loss.
"""
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.structures import BaseDataElement
from torch.nn.parallel import DistributedDataParallel

import denseclip.models.clip_contrastive  # noqa: F401  (registers CLIPContrastive)
from denseclip.models.clip_contrastive import CLIPContrastive

WORLD = 2
BATCH = 8  # pairs in the global batch; 4 per rank
#: A ViT tower (no BatchNorm, whose batch statistics would differ between the halves and the
#: whole batch), a one-layer text transformer and a small vocabulary: ~0.1 M parameters.
ARCH = dict(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64,
            vision_patch_size=16, context_length=8, vocab_size=100, transformer_width=32,
            transformer_heads=1, transformer_layers=1)


def make_model() -> CLIPContrastive:
    torch.manual_seed(0)
    model = CLIPContrastive(ARCH).double()
    with torch.no_grad():  # away from the initial temperature: its gradient is not special
        model.clip.logit_scale.fill_(math.log(20.))
    return model


def make_batch() -> tuple[torch.Tensor, list[BaseDataElement]]:
    """Images ``[8, 3, 32, 32]`` and samples with token ids (end-of-text = the largest id)."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, 32, 32, generator=generator, dtype=torch.float64)
    tokens = torch.randint(1, 90, (BATCH, ARCH['context_length']), generator=generator)
    tokens[:, 0] = 98  # start of text
    lengths = torch.randint(3, ARCH['context_length'] + 1, (BATCH, ), generator=generator)
    for row, length in enumerate(lengths):
        tokens[row, length - 1] = 99  # end of text
        tokens[row, length:] = 0
    samples = [BaseDataElement(text=row) for row in tokens]
    return images, samples


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.grad.detach().clone() for name, param in model.named_parameters()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=WORLD)
    try:
        model = DistributedDataParallel(make_model())
        images, samples = make_batch()
        share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        losses = model(images[share], samples[share], mode='loss')
        losses['loss_contrastive'].backward()  # DDP all-reduces (averages) the gradients
        torch.save(dict(loss=losses['loss_contrastive'].detach(),
                        grads=gradients(model.module)), f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def ranks(tmp_path_factory) -> list[dict]:
    """What each of the two processes computed (losses, DDP-averaged gradients)."""
    out_dir = tmp_path_factory.mktemp('ranks')
    mp.spawn(_worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f'rank{rank}.pt') for rank in range(WORLD)]


@pytest.fixture(scope='module')
def single() -> dict:
    """Loss and gradients of one process on the whole batch."""
    model = make_model()
    images, samples = make_batch()
    loss = model(images, samples, mode='loss')['loss_contrastive']
    loss.backward()
    return dict(loss=loss.detach(), grads=gradients(model))


def test_mean_of_rank_losses_is_the_global_batch_loss(ranks, single):
    mean = (ranks[0]['loss'] + ranks[1]['loss']) / 2
    torch.testing.assert_close(mean, single['loss'], rtol=1e-12, atol=0)
    # each rank's loss is its own share, not a copy of the whole
    assert not torch.allclose(ranks[0]['loss'], ranks[1]['loss'])


def test_averaged_gradients_equal_the_single_process_gradients(ranks, single):
    assert ranks[0]['grads'].keys() == single['grads'].keys()
    assert 'clip.logit_scale' in single['grads']
    for name, expected in single['grads'].items():
        assert expected.abs().max() > 0 or name.startswith('clip.token_embedding'), name
        for rank in ranks:
            torch.testing.assert_close(rank['grads'][name], expected, rtol=1e-9, atol=1e-12,
                                       msg=lambda m, name=name: f'{name}: {m}')
