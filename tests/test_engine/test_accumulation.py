"""The paper's batch on one or two GPUs: gradient accumulation in the small-GPU configs.

Three claims, each against the 8-GPU parent config:

1. Schedule: mmengine steps the lr scheduler once per *data* iteration, so the variants scale
   every count by the accumulation ``n`` and start the scheduler on iteration ``n - 1``;
   optimiser step ``s`` (taken on iteration ``n s + n - 1``) then has the parent's lr of
   iteration ``s``, for every ``s`` of the 80k steps and every parameter group.
2. Update: 8 micro-batches of 4 images with ``accumulative_counts=8`` give the same gradients
   and AdamW updates (the config's lr multipliers) as one batch of 32, on a tiny DenseCLIP with
   its BatchNorms in eval mode. In training mode BatchNorm normalises each micro-batch with its
   own statistics, so the two differ: that is the one inexact part (and the running statistics
   average 4-image batches).
3. The 1-GPU config, made tiny, trains on the CPU through mmengine's runner with one optimiser
   step per 8 iterations.
"""
import copy
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import denseclip  # noqa: F401  (registers WarmupPolyLR and the models)
from denseclip.engine.config import build_segmentor, prepare_config

pytestmark = pytest.mark.usefixtures('single_thread')

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'denseclip'
PARENT = CONFIGS / 'denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
ONE_GPU = CONFIGS / 'denseclip_r50_fpn_1xb4x8-80k_ade20k-512x512.py'
TWO_GPUS = CONFIGS / 'denseclip_r50_fpn_2xb4x4-80k_ade20k-512x512.py'
CROP = (64, 64)
#: The configs' model at test size (as ``--cfg-options`` would give it): ResNet width 8, text
#: width 32 with one layer and 4 contexts, FPN width 16, 64 x 64 crops, random weights.
TINY = {
    'model.pretrained': None,
    'model.backbone.layers': (1, 1, 1, 1), 'model.backbone.width': 8,
    'model.backbone.output_dim': 32, 'model.backbone.input_resolution': 64,
    'model.text_encoder.context_length': 9, 'model.text_encoder.transformer_width': 32,
    'model.text_encoder.transformer_heads': 2, 'model.text_encoder.transformer_layers': 1,
    'model.context_decoder.transformer_width': 16,
    'model.context_decoder.transformer_heads': 2,
    'model.context_decoder.transformer_layers': 1,
    'model.neck.in_channels': [32, 64, 128, 256], 'model.neck.out_channels': 16,
    'model.decode_head.in_channels': [16] * 4, 'model.decode_head.channels': 16,
    'model.data_preprocessor.size': CROP, 'model.test_cfg.mode': 'whole',
    'model.class_names': ['wall', 'building', 'sky', 'floor'],
}


def lrs_at(scheduler_cfgs: list, optim_wrapper_cfg: dict, iterations: int,
           every: int = 1) -> np.ndarray:
    """``[iterations // every, groups]``: the lr in effect on iterations ``every - 1``,
    ``2 every - 1``, ..., with the scheduler stepped after each iteration as
    ``ParamSchedulerHook`` does."""
    model = nn.ModuleDict(dict(backbone=nn.Linear(1, 1, bias=False),
                              head=nn.Linear(1, 1, bias=False)))
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(optim_wrapper_cfg))
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": no gradients
        warnings.simplefilter('ignore', UserWarning)
        schedulers = [PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optim_wrapper))
                      for cfg in copy.deepcopy(scheduler_cfgs)]
        groups = optim_wrapper.optimizer.param_groups
        lrs = np.empty((iterations // every, len(groups)))
        for iteration in range(iterations):
            if iteration % every == every - 1:
                lrs[iteration // every] = [group['lr'] for group in groups]
            for scheduler in schedulers:
                scheduler.step()
    return lrs


@pytest.mark.parametrize('variant', [ONE_GPU, TWO_GPUS], ids=lambda path: path.name)
def test_optimiser_step_s_has_the_8_gpu_lr_of_iteration_s(variant: Path):
    parent, child = Config.fromfile(str(PARENT)), Config.fromfile(str(variant))
    steps = child.optim_wrapper.accumulative_counts
    assert child.train_cfg.max_iters == parent.train_cfg.max_iters * steps
    expected = lrs_at(parent.param_scheduler, parent.optim_wrapper, parent.train_cfg.max_iters)
    got = lrs_at(child.param_scheduler, child.optim_wrapper, child.train_cfg.max_iters, steps)
    assert got.shape == expected.shape == (80000, 2)
    assert expected[2000, 0] != expected[2000, 1]  # the backbone's group and the others'
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_steps_are_taken_on_the_last_iteration_of_each_accumulation():
    """mmengine's wrapper steps on iterations 7, 15, 23 ...: the lrs seen there are the 8-GPU
    run's lrs of its iterations 0, 1, 2 (recorded inside ``optimizer.step``)."""
    parent, child = Config.fromfile(str(PARENT)), Config.fromfile(str(ONE_GPU))
    model = nn.ModuleDict(dict(backbone=nn.Linear(2, 1, bias=False),
                              head=nn.Linear(2, 1, bias=False)))
    optim_wrapper = build_optim_wrapper(model, child.optim_wrapper)
    schedulers = [PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optim_wrapper))
                  for cfg in child.param_scheduler]
    seen = []
    optim_wrapper.optimizer.register_step_pre_hook(
        lambda optimizer, *_: seen.append([group['lr'] for group in optimizer.param_groups]))
    iterations = 3 * 8
    optim_wrapper.initialize_count_status(model, 0, child.train_cfg.max_iters)
    stepped_on = []
    for iteration in range(iterations):
        before = len(seen)
        loss = sum(layer(torch.ones(2)).sum() for layer in model.values())
        optim_wrapper.update_params(loss)
        if len(seen) > before:
            stepped_on.append(iteration)
        for scheduler in schedulers:
            scheduler.step()
    assert stepped_on == [7, 15, 23]
    expected = lrs_at(parent.param_scheduler, parent.optim_wrapper, 3)
    np.testing.assert_allclose(np.array(seen), expected, rtol=1e-12, atol=0)


def tiny_model(cfg_path: Path, batch_norm_training: bool) -> nn.Module:
    """The config's model at test size, training, with dropout off (and BN frozen unless
    ``batch_norm_training``): every randomness of a training step switched off."""
    cfg = prepare_config(cfg_path, dict(TINY), device='cpu')
    torch.manual_seed(0)
    model = build_segmentor(cfg).train()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d)) or (
                isinstance(module, _BatchNorm) and not batch_norm_training):
            module.eval()
    with torch.no_grad():
        model.gamma.fill_(0.5)  # 1e-4 would hide the context decoder
    return model


def images(count: int, seed: int) -> dict:
    """``count`` uint8 images with labels in [0, 4); some pixels ignored (255)."""
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for index in range(count):
        inputs.append(torch.randint(0, 256, (3, *CROP), generator=generator, dtype=torch.uint8))
        label = torch.randint(0, 4, (1, *CROP), generator=generator)
        label[:, :index % 7] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=CROP, ori_shape=CROP, pad_shape=CROP))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def micro_batches(data: dict, size: int) -> list[dict]:
    return [{key: values[start:start + size] for key, values in data.items()}
            for start in range(0, len(data['inputs']), size)]


def train(model: nn.Module, optim_wrapper_cfg: dict, batches: list[dict]) -> list[dict]:
    """Runs ``train_step`` on each batch; returns the gradients seen by each optimiser step."""
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(optim_wrapper_cfg))
    optim_wrapper.initialize_count_status(model, 0, len(batches))
    grads = []
    optim_wrapper.optimizer.register_step_pre_hook(lambda *_: grads.append(
        {name: param.grad.clone() for name, param in model.named_parameters()
         if param.grad is not None}))
    for batch in batches:
        model.train_step(batch, optim_wrapper)
    lrs = sorted({group['lr'] for group in optim_wrapper.optimizer.param_groups})
    assert lrs == pytest.approx([1e-5, 1e-4])  # the paper's lr, the backbone's 0.1 multiplier
    return grads


def accumulated_and_full(batch_norm_training: bool) -> tuple[list, list, nn.Module, nn.Module]:
    cfg = Config.fromfile(str(ONE_GPU))
    steps = cfg.optim_wrapper.accumulative_counts
    per_gpu = cfg.train_dataloader.batch_size
    data = [images(per_gpu * steps, seed) for seed in range(2)]  # two optimiser steps
    accumulated_model = tiny_model(ONE_GPU, batch_norm_training)
    full_model = tiny_model(ONE_GPU, batch_norm_training)
    accumulated = train(accumulated_model, cfg.optim_wrapper,
                        [micro for step in data for micro in micro_batches(step, per_gpu)])
    full = train(full_model, dict(cfg.optim_wrapper, accumulative_counts=1), data)
    return accumulated, full, accumulated_model, full_model


def test_eight_micro_batches_of_4_update_as_one_batch_of_32():
    accumulated, full, accumulated_model, full_model = accumulated_and_full(False)
    assert len(accumulated) == len(full) == 2  # optimiser steps
    for accumulated_grads, full_grads in zip(accumulated, full):
        assert accumulated_grads.keys() == full_grads.keys()
        assert {'contexts', 'gamma', 'backbone.layer1.0.conv1.weight',
                'decode_head.conv_seg.weight'} <= accumulated_grads.keys()
        for name, grad in full_grads.items():
            torch.testing.assert_close(accumulated_grads[name], grad, rtol=1e-4, atol=1e-7,
                                       msg=name)
    for (name, param), reference in zip(accumulated_model.named_parameters(),
                                        full_model.parameters()):
        torch.testing.assert_close(param, reference, rtol=1e-5, atol=1e-7, msg=name)


def test_batch_norm_in_training_makes_accumulation_inexact():
    """Each micro-batch is normalised with its own 4-image statistics: gradients differ."""
    accumulated, full, _, _ = accumulated_and_full(True)
    name = 'backbone.layer1.0.conv1.weight'
    difference = (accumulated[0][name] - full[0][name]).norm() / full[0][name].norm()
    assert difference > 1e-3


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """ADE20K's layout: 8 training and 2 validation 48 x 56 images, labels 1-4 (0 ignored)."""
    rng = np.random.default_rng(0)
    for split, count in (('training', 8), ('validation', 2)):
        (tmp_path / 'images' / split).mkdir(parents=True)
        (tmp_path / 'annotations' / split).mkdir(parents=True)
        for index in range(count):
            label = rng.integers(1, 5, (6, 7), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            image = (label[..., None] * 50 + rng.integers(0, 40, (*label.shape, 3)))
            cv2.imwrite(str(tmp_path / 'images' / split / f'{index}.jpg'), image.astype(np.uint8))
            cv2.imwrite(str(tmp_path / 'annotations' / split / f'{index}.png'), label)
    return tmp_path


def test_one_gpu_config_trains_on_cpu(data_root: Path, tmp_path: Path):
    """16 iterations of the 1-GPU config (tiny model, tiny data) are two optimiser steps."""
    options = dict(TINY)
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = str(data_root)
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    options.update({
        'train_dataloader.dataset.pipeline.2.scale': (96, 64),  # RandomResize
        'train_dataloader.dataset.pipeline.3.crop_size': CROP,  # RandomCrop
        'train_cfg.max_iters': 16,
    })
    cfg = prepare_config(ONE_GPU, options, work_dir=str(tmp_path / 'work'))
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert model.backbone.with_cp and model.text_encoder.transformer.with_cp
    assert not any(isinstance(module, nn.SyncBatchNorm) for module in model.modules())
    before = model.contexts.detach().clone()
    runner.train()
    optimizer = runner.optim_wrapper.optimizer
    assert {int(state['step']) for state in optimizer.state.values()} == {2}
    assert not torch.equal(model.contexts, before)
