"""Throughput and peak memory of a segmentor on synthetic inputs (no weights, no dataset).

Inference runs mmseg's ``test_step`` (data preprocessor, whole or slide inference, the
post-processing to the original size) under ``torch.no_grad``; training runs ``train_step``
(forward, losses, backward, optimiser step) with the optimiser wrapper that the config's
``optim_wrapper`` builds. Warm-up iterations are excluded; the reported rate is the median over
``repeats`` timed runs of ``iters`` iterations each. Peak memory is CUDA's max-allocated on a
GPU and the process's peak resident set size (``VmHWM``, reset before each measurement where
the kernel allows it) on a CPU. :func:`apply_fast_paths` puts a model in one fast-path state
(the switches of ``tools/benchmark.py``); ``compare_*`` time the fast paths against the
default, interleaved round-robin so that a drifting machine load affects every state alike;
:func:`compare_onnxruntime` times an ONNX export (``denseclip.deploy``) against eager
PyTorch the same way.
"""
import contextlib
import copy
import re
import resource
import statistics
import time
from typing import Callable, Optional

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner.amp import autocast
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from denseclip.engine import enable_amp
from denseclip.engine.device import bf16_flags, cpu_model_and_flags
from denseclip.models.slide import slide_windows

_STATUS = '/proc/self/status'


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def describe_device(device: torch.device) -> dict:
    """What the figures were measured on: the GPU's name, or the CPU's model; and what gives
    it native bfloat16 (:func:`denseclip.engine.device.bf16_flags`, read, not assumed: without
    ``amx_bf16`` or ``avx512_bf16`` a CPU emulates bfloat16, usually slower than float32)."""
    device = torch.device(device)
    name = (torch.cuda.get_device_name(device) if device.type == 'cuda'
            else cpu_model_and_flags()[0])
    return dict(device_name=name, bf16_flags=bf16_flags(device))


def kernel_rates(device: torch.device, size: int = 2048, repeats: int = 3) -> dict:
    """GFLOP/s (2 per multiply-add) of a square matmul and a 3x3 conv in float32 and bfloat16.

    The two dtypes are timed interleaved, ``repeats`` rounds, median taken; this says whether
    ``--amp`` (bfloat16 on a CPU) can pay on this machine before a model is timed.
    """
    device = torch.device(device)
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    image = torch.randn(1, 256, 128, 128, device=device)
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device)
    kernels = {
        'matmul': (lambda dtype: a.to(dtype) @ b.to(dtype), 2 * size ** 3),
        'conv3x3': (lambda dtype: conv.to(dtype)(image.to(dtype)), 2 * 256 * 256 * 9 * 128 ** 2),
    }
    rates = {}
    for name, (kernel, flops) in kernels.items():
        runs = {dtype: [] for dtype in (torch.float32, torch.bfloat16)}
        with torch.no_grad():
            for _ in range(repeats + 1):  # the first round warms up
                for dtype, seconds in runs.items():
                    start = time.perf_counter()
                    kernel(dtype)
                    _synchronize(device)
                    seconds.append(time.perf_counter() - start)
        rates[name] = {str(dtype).replace('torch.', ''):
                       flops / statistics.median(seconds[1:]) / 1e9
                       for dtype, seconds in runs.items()}
    return rates


def _reset_peak_rss() -> bool:
    """Resets the kernel's high-water mark of this process's RSS; False if not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as file:
            file.write('5')
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open(_STATUS) as file:
            return int(re.search(r'VmHWM:\s+(\d+)', file.read()).group(1)) / 1024
    except (OSError, AttributeError):  # no procfs: the lifetime peak (KiB on Linux)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Context manager measuring peak memory in MiB (``.mb``) and its kind (``.kind``)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.mb = 0.0
        self.kind = ''

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = 'cuda_max_allocated'
        else:
            self.kind = 'peak_rss' if _reset_peak_rss() else 'peak_rss_since_start'
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = _peak_rss_mb()


def synthetic_batch(batch_size: int, size: tuple[int, int], num_classes: int,
                    with_labels: bool, seed: int = 0) -> dict:
    """A batch as mmseg's ``PackSegInputs`` makes it: uint8 images ``[3, H, W]`` and samples."""
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, *size), generator=generator, dtype=torch.uint8))
        sample = SegDataSample()
        sample.set_metainfo(dict(img_shape=size, ori_shape=size, pad_shape=size))
        if with_labels:
            label = torch.randint(0, num_classes, (1, *size), generator=generator)
            sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def time_runs(step: Callable[[], object], warmup: int, iters: int, repeats: int,
              device: torch.device) -> list[float]:
    """Seconds per iteration of ``step`` in each of ``repeats`` runs, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    runs = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            step()
        _synchronize(device)
        runs.append((time.perf_counter() - start) / iters)
    return runs


def _summary(runs: list[float], per_iter_items: int, memory: PeakMemory) -> dict:
    median = statistics.median(runs)
    return dict(s_per_iter=median, items_per_s=per_iter_items / median,
                runs_s_per_iter=runs, peak_memory_mb=memory.mb, peak_memory_kind=memory.kind)


def _amp_context(enabled: bool, device: torch.device):
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type == 'cpu' else torch.float16
    return autocast(device_type=device.type, dtype=dtype)


def inference_step(model: nn.Module, mode: str, size: tuple[int, int], batch_size: int = 1,
                   amp: bool = False) -> Callable[[], object]:
    """One ``test_step`` on a synthetic batch, in ``mode`` (the model's ``test_cfg`` is
    switched to it and left so)."""
    if mode not in ('whole', 'slide'):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    device = next(model.parameters()).device
    data = synthetic_batch(batch_size, size, getattr(model, 'num_classes', 1), with_labels=False)
    model.test_cfg.mode = mode
    model.eval()

    def step():
        with torch.no_grad(), _amp_context(amp, device):
            return model.test_step(data)
    return step


def benchmark_inference(model: nn.Module, mode: str, size: tuple[int, int],
                        batch_size: int = 1, warmup: int = 1, iters: int = 3,
                        repeats: int = 3, amp: bool = False) -> dict:
    """Images per second of ``model.test_step`` in ``'whole'`` or ``'slide'`` mode.

    The model's ``test_cfg`` is switched to ``mode`` for the measurement and restored after.
    """
    device = next(model.parameters()).device
    test_cfg = copy.deepcopy(model.test_cfg)
    try:
        step = inference_step(model, mode, size, batch_size, amp)
        with PeakMemory(device) as memory:
            runs = time_runs(step, warmup, iters, repeats, device)
    finally:
        model.test_cfg = test_cfg
    return dict(mode=mode, shape=list(size), batch_size=batch_size, amp=amp,
                **_summary(runs, batch_size, memory))


def build_train_optim_wrapper(model: nn.Module, cfg: Config, amp: bool = False):
    """The optimiser wrapper of ``cfg.optim_wrapper`` (``paramwise_cfg`` included); with
    ``amp``, the one ``tools/train.py --amp`` would use (fp16 on GPUs, bfloat16 on CPUs)."""
    cfg = copy.deepcopy(cfg)
    if amp:
        enable_amp(cfg)
    # the wrapper types (BFloat16OptimWrapper ...) are looked up in the config's scope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmseg')):
        return build_optim_wrapper(model, cfg.optim_wrapper)


def benchmark_training(model: nn.Module, cfg: Config, size: tuple[int, int],
                       batch_size: int = 2, warmup: int = 1, iters: int = 3,
                       repeats: int = 3, amp: bool = False,
                       optim_wrapper: Optional[object] = None) -> dict:
    """Training iterations per second of ``model.train_step`` at crop ``size``."""
    device = next(model.parameters()).device
    optim_wrapper = optim_wrapper or build_train_optim_wrapper(model, cfg, amp)
    num_classes = getattr(model, 'num_classes', 1)
    data = synthetic_batch(batch_size, size, num_classes, with_labels=True)
    model.train()
    try:
        with PeakMemory(device) as memory:
            runs = time_runs(lambda: model.train_step(data, optim_wrapper), warmup, iters,
                             repeats, device)
    finally:
        model.eval()
    result = _summary(runs, 1, memory)
    result['iters_per_s'] = result.pop('items_per_s')
    return dict(mode='train', shape=list(size), batch_size=batch_size, amp=amp,
                images_per_s=batch_size * result['iters_per_s'], **result)


#: The fast paths ``compare_fast_paths`` switches, each against the default (all off but the
#: text cache, which is on by default and so is measured switched off).
FAST_PATHS = ('text_cache', 'slide_batch_size', 'channels_last', 'amp')


def apply_fast_paths(model: nn.Module, text_cache: bool = True,
                     slide_batch_size: Optional[int] = None, channels_last: bool = False) -> None:
    """Puts the model in one fast-path state (all switches, so states do not leak).

    Args:
        model: The segmentor; the text cache is switched only where it has one (DenseCLIP).
        text_cache: Run the text encoder once for all images and crops at inference.
        slide_batch_size: Crops per forward pass in slide inference (``None``: one).
        channels_last: Store the 4-D weights channels-last (NHWC), else contiguous.
    """
    if hasattr(model, 'cache_text'):
        model.cache_text = text_cache  # a filled cache stays valid across the switches
    model.test_cfg.slide_batch_size = slide_batch_size
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def compare_fast_paths(model: nn.Module, states: dict[str, dict], step_for: Callable,
                       rounds: int = 5, warmup: int = 1) -> dict[str, dict]:
    """Times several fast-path states of one model, interleaved round-robin.

    On a shared machine the load drifts over minutes; timing state A for a minute and then
    state B compares the load as much as the states. Here every round times one iteration of
    each state in turn, and each state's figure is the median over the rounds.

    Args:
        model: The segmentor.
        states: Name -> keyword arguments of the state (``text_cache``,
            ``slide_batch_size``, ``channels_last``, ``amp``).
        step_for: ``step_for(amp) -> step()``, building the timed step (with or without
            mixed precision); called once per state.
        rounds: Timed iterations per state.
        warmup: Untimed iterations per state before the first round.

    Returns:
        Name -> ``dict(s_per_iter=median, runs_s_per_iter=[...], peak_memory_mb=...)``.
    """
    steps = {}
    for name, state in states.items():
        state = dict(state)
        steps[name] = (step_for(state.pop('amp', False)), state)
    return _round_robin(model, steps, rounds, warmup)


def _round_robin(model: nn.Module, steps: dict[str, tuple[Callable, dict]], rounds: int,
                 warmup: int) -> dict[str, dict]:
    """Times ``name -> (step, fast-path state)`` interleaved: ``rounds`` rounds of one
    iteration of each step, the model put in the step's state before each."""
    device = next(model.parameters()).device
    runs, memory = {name: [] for name in steps}, {}
    for name, (step, state) in steps.items():
        apply_fast_paths(model, **state)
        with PeakMemory(device) as peak:
            time_runs(step, warmup, 0, 0, device)
        memory[name] = peak
    for _ in range(rounds):
        for name, (step, state) in steps.items():
            apply_fast_paths(model, **state)
            runs[name] += time_runs(step, 0, 1, 1, device)
    apply_fast_paths(model)
    return {name: dict(s_per_iter=statistics.median(runs[name]), runs_s_per_iter=runs[name],
                       peak_memory_mb=memory[name].mb, peak_memory_kind=memory[name].kind)
            for name in steps}


def compare_inference(model: nn.Module, mode: str, size: tuple[int, int], batch_size: int = 1,
                      slide_batch_size: Optional[int] = None, rounds: int = 5,
                      warmup: int = 1) -> dict:
    """:func:`compare_fast_paths` for ``test_step`` in ``mode``: the default, the text cache
    off, batched crops (slide mode; all crops of an image per pass unless
    ``slide_batch_size``), channels-last and mixed precision."""
    states = {'default': {}}
    is_denseclip = hasattr(model, 'cache_text')
    if is_denseclip:
        states['no text cache'] = dict(text_cache=False)
    if mode == 'slide' and is_denseclip:
        crops = slide_batch_size or len(slide_windows(size, model.test_cfg.crop_size,
                                                      model.test_cfg.stride))
        states[f'slide batch {crops}'] = dict(slide_batch_size=crops)
    states.update({'channels last': dict(channels_last=True), 'amp': dict(amp=True)})
    test_cfg = copy.deepcopy(model.test_cfg)
    try:
        result = compare_fast_paths(
            model, states, lambda amp: inference_step(model, mode, size, batch_size, amp),
            rounds, warmup)
    finally:
        model.test_cfg = test_cfg
    return dict(mode=mode, shape=list(size), batch_size=batch_size, states=result)


def compare_training(model: nn.Module, cfg: Config, size: tuple[int, int], batch_size: int = 2,
                     rounds: int = 3, warmup: int = 1) -> dict:
    """:func:`compare_fast_paths` for ``train_step``: the default, channels-last and mixed
    precision (each with its own optimiser wrapper, built from ``cfg``)."""
    data = synthetic_batch(batch_size, size, getattr(model, 'num_classes', 1), with_labels=True)
    wrappers = {amp: build_train_optim_wrapper(model, cfg, amp) for amp in (False, True)}
    states = {'default': {}, 'channels last': dict(channels_last=True), 'amp': dict(amp=True)}
    model.train()
    try:
        result = compare_fast_paths(
            model, states, lambda amp: lambda: model.train_step(data, wrappers[amp]), rounds,
            warmup)
    finally:
        model.eval()
    return dict(mode='train', shape=list(size), batch_size=batch_size, states=result)


def onnxruntime_step(runtime, mode: str, size: tuple[int, int],
                     batch_size: int = 1) -> Callable[[], list]:
    """``runtime.predict`` (a :class:`~denseclip.deploy.ort.OrtSegmentor`) of the images of
    :func:`inference_step`, one by one, without the test resize (they are at the test size):
    normalisation, whole or slide inference (``mode``; the runtime is switched to it and left
    so), the logits back at the image's size."""
    if mode not in ('whole', 'slide'):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    data = synthetic_batch(batch_size, size, len(runtime.class_names), with_labels=False)
    images = [image.permute(1, 2, 0).numpy() for image in data['inputs']]  # CHW -> HWC
    runtime.meta['test_cfg']['mode'] = mode
    return lambda: [runtime.predict(image, resize=False) for image in images]


#: ``relative_error_note`` of :func:`compare_onnxruntime` when the weights are not the same.
OTHER_WEIGHTS_NOTE = ('not measured: the ONNX file was not exported from the eager model (its '
                      'weights differ), so the logits are not comparable')


def compare_onnxruntime(model: nn.Module, runtime, mode: str, size: tuple[int, int],
                        batch_size: int = 1, rounds: int = 5, warmup: int = 1,
                        same_weights: bool = True) -> dict:
    """Eager ``test_step`` against ONNX Runtime on the same images, interleaved round-robin.

    States: ``'pytorch'`` (the model as it is), in slide mode ``'pytorch, slide batch N'``
    (all crops of an image per pass, as the runtime runs them) and ``'onnxruntime'``. The
    result also holds ``relative_error``: ``max|ort - torch| / max|torch|`` over the logits
    of the first image, or ``None`` with a ``relative_error_note`` unless ``same_weights``.

    Args:
        model: The segmentor timed against ``runtime``.
        runtime: A :class:`~denseclip.deploy.ort.OrtSegmentor`.
        same_weights: Whether ``runtime`` runs an export of ``model`` itself; if not (an ONNX
            file of a trained checkpoint next to a model of random weights), the logits are
            not compared.
    """
    test_cfg = copy.deepcopy(model.test_cfg)
    try:
        torch_step = inference_step(model, mode, size, batch_size)
        ort_step = onnxruntime_step(runtime, mode, size, batch_size)
        steps = {'pytorch': (torch_step, {})}
        if mode == 'slide' and hasattr(model, 'cache_text'):
            crops = len(slide_windows(size, model.test_cfg.crop_size, model.test_cfg.stride))
            steps[f'pytorch, slide batch {crops}'] = (torch_step, dict(slide_batch_size=crops))
        steps['onnxruntime'] = (ort_step, {})
        error = dict(relative_error=None, relative_error_note=OTHER_WEIGHTS_NOTE)
        if same_weights:
            expected = torch_step()[0].seg_logits.data.numpy()
            actual = ort_step()[0]
            error = dict(relative_error=float(abs(actual - expected).max()
                                              / abs(expected).max()))
        result = _round_robin(model, steps, rounds, warmup)
    finally:
        model.test_cfg = test_cfg
    return dict(mode=mode, shape=list(size), batch_size=batch_size, **error, states=result)
