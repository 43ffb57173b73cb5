"""Activation checkpointing (``with_cp``) changes memory, not numbers or parameter names.

Each tower is built twice from the same seed, with and without ``with_cp``, and trained for one
forward/backward pass: outputs, input and parameter gradients and BatchNorm running statistics
must be equal, and the checkpointed pass must keep fewer bytes of activations for backward.
"""
from collections.abc import Callable

import pytest
import torch
from mmseg.registry import MODELS

from denseclip.clip.layers import forward_block

IMAGE_SIZE = (64, 96)  # a 2 x 3 grid at stride 32
NUM_CLASSES = 4
RESNET = dict(type='CLIPResNetWithAttention', layers=(1, 2, 1, 1), width=8, output_dim=32,
              input_resolution=64)
# drop_path: the recomputation must draw the same stochastic-depth masks
VIT = dict(type='CLIPVisionTransformer', input_resolution=64, patch_size=16, width=32, layers=4,
           heads=2, output_dim=16, out_indices=(0, 1, 2, 3), drop_path_rate=0.3,
           get_embeddings=True)
TEXT = dict(type='CLIPTextContextEncoder', context_length=9, transformer_width=32,
            transformer_heads=2, transformer_layers=2, embed_dim=16)


@pytest.fixture
def build(randomize) -> Callable[[dict, bool], torch.nn.Module]:
    """``build(cfg, with_cp)``: the tower from seed 0, randomised, in training mode."""
    def make(cfg: dict, with_cp: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        return randomize(MODELS.build(dict(cfg, with_cp=with_cp))).train()
    return make


def flat_outputs(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for output in outputs for tensor in flat_outputs(output)]


def saved_bytes(step: Callable[[], list[torch.Tensor]]) -> tuple[list[torch.Tensor], int]:
    """Runs ``step`` and counts the bytes autograd keeps for backward (each storage once)."""
    storages = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = step()
    return outputs, sum(storages.values())


def train_step(model: torch.nn.Module, inputs: list[torch.Tensor]) -> dict:
    """Forward, a weighted sum of every output, backward; returns all that must agree."""
    inputs = [tensor.clone().requires_grad_(tensor.is_floating_point()) for tensor in inputs]
    torch.manual_seed(1)  # the drop-path draws
    outputs, kept = saved_bytes(lambda: flat_outputs(model(*inputs)))
    generator = torch.Generator().manual_seed(2)
    loss = sum((output * torch.randn(output.shape, generator=generator)).sum()
               for output in outputs)
    loss.backward()
    return dict(
        outputs=[output.detach() for output in outputs],
        input_grads=[tensor.grad for tensor in inputs if tensor.requires_grad],
        grads={name: param.grad for name, param in model.named_parameters()
               if param.requires_grad},
        buffers=dict(model.named_buffers()),
        kept=kept)


def assert_all_close(first: list | dict, second: list | dict) -> None:
    if isinstance(first, dict):
        assert first.keys() == second.keys()
        first, second = list(first.values()), list(second.values())
    assert len(first) == len(second)
    for one, other in zip(first, second):
        torch.testing.assert_close(one, other, rtol=1e-5, atol=1e-6)


CASES = {
    'resnet': (RESNET, lambda: [torch.randn(2, 3, *IMAGE_SIZE)]),
    'vit': (VIT, lambda: [torch.randn(2, 3, *IMAGE_SIZE)]),
    'text': (TEXT, lambda: [torch.randint(1, 400, (NUM_CLASSES, 5)),
                            torch.randn(2, 4, 32)]),
}


@pytest.mark.parametrize('kind', sorted(CASES))
def test_with_cp_gives_the_same_outputs_gradients_and_statistics(kind: str, build):
    cfg, make_inputs = CASES[kind]
    torch.manual_seed(3)
    inputs = make_inputs()
    plain = train_step(build(cfg, with_cp=False), inputs)
    checkpointed = train_step(build(cfg, with_cp=True), inputs)
    assert plain['outputs'] and plain['input_grads']  # the frozen text tower: the contexts'
    for key in ('outputs', 'input_grads', 'grads', 'buffers'):
        assert_all_close(plain[key], checkpointed[key])
    # activations of all but each block's input are recomputed in backward
    assert checkpointed['kept'] < 0.7 * plain['kept'], (checkpointed['kept'], plain['kept'])


def test_batch_norm_statistics_are_updated_once(build):
    """The recomputation in backward would update the running statistics a second time."""
    model = build(RESNET, with_cp=True)
    block = model.layer2[0]
    before = block.bn1.running_mean.clone(), int(block.bn1.num_batches_tracked)
    model(torch.randn(2, 3, *IMAGE_SIZE))[-1][1].sum().backward()
    reference = build(RESNET, with_cp=False)
    reference(torch.randn(2, 3, *IMAGE_SIZE))  # not the same images: only the count matters
    assert int(block.bn1.num_batches_tracked) == before[1] + 1
    assert int(reference.layer2[0].bn1.num_batches_tracked) == before[1] + 1
    assert not torch.equal(block.bn1.running_mean, before[0])


@pytest.mark.parametrize('kind', sorted(CASES))
def test_parameter_names_do_not_change(kind: str, build):
    cfg, _ = CASES[kind]
    assert (list(build(cfg, with_cp=True).state_dict())
            == list(build(cfg, with_cp=False).state_dict()))


def test_checkpointing_only_in_training_with_grad(build):
    """In eval mode or without grad the block runs plainly (no recomputation machinery)."""
    model = build(RESNET, with_cp=True)
    block = model.layer2[1]  # 64 -> 64 channels
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    _, train_kept = saved_bytes(lambda: forward_block(block, x, with_cp=True))
    _, plain_kept = saved_bytes(lambda: forward_block(block, x, with_cp=False))
    _, eval_kept = saved_bytes(lambda: forward_block(block.eval(), x, with_cp=True))
    _, eval_plain_kept = saved_bytes(lambda: forward_block(block, x, with_cp=False))
    assert train_kept < 0.5 * plain_kept and eval_kept == eval_plain_kept
    with torch.no_grad():
        out, no_grad_kept = saved_bytes(lambda: forward_block(block.train(), x, with_cp=True))
    assert no_grad_kept == 0 and not out.requires_grad


def test_denseclip_loss_and_gradients_match_with_cp(build_denseclip, batch):
    """Config keys ``backbone.with_cp`` and ``text_encoder.with_cp`` reach the towers."""
    def losses(with_cp: bool) -> tuple[torch.Tensor, dict]:
        model = build_denseclip(
            backbone=dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8,
                          output_dim=32, input_resolution=64, with_cp=with_cp),
            text_encoder=dict(type='CLIPTextContextEncoder', context_length=9,
                              transformer_width=32, transformer_heads=2, transformer_layers=1,
                              with_cp=with_cp)).train()
        assert model.backbone.with_cp == model.text_encoder.transformer.with_cp == with_cp
        inputs, samples = batch
        loss = sum(value for key, value in model.loss(inputs, samples).items()
                   if 'loss' in key)
        loss.backward()
        return loss.detach(), {name: param.grad for name, param in model.named_parameters()
                               if param.grad is not None}

    plain_loss, plain_grads = losses(False)
    cp_loss, cp_grads = losses(True)
    torch.testing.assert_close(cp_loss, plain_loss)
    assert 'contexts' in cp_grads and any(name.startswith('backbone.') for name in cp_grads)
    assert_all_close(plain_grads, cp_grads)
