"""Inference and training speed of a config's model on synthetic data (no weights, no dataset).

``python tools/benchmark.py CONFIG [--mode infer|train] [--shape H W] [--batch-size N]
[--iters N] [--amp] [--json] [--backend onnxruntime [--onnx FILE]]``

infer: images/s of ``test_step`` in whole and slide mode (the config's crop size and stride)
on ``--shape`` images (default 512 x 683: an ADE20K photo after the test resize).
train: iterations/s of ``train_step`` at the config's crop size. Warm-up is excluded; rates
are the median of ``--repeats`` runs; peak memory is CUDA's max-allocated or the peak RSS.
The fast paths are switches: ``--no-text-cache``, ``--slide-batch-size``, ``--channels-last``,
``--amp``, ``--compile``. Every result names the device (CPU model and its bfloat16 flags,
read from /proc/cpuinfo); ``--kernels`` adds float32/bfloat16 kernel rates.
``--backend onnxruntime`` times ONNX Runtime next to eager PyTorch on the same images,
interleaved as ``--compare`` does: the model (random weights) is exported with a dynamic shape
first (export time and file size are reported), with as many ONNX Runtime threads as torch's,
and the two outputs' relative error is reported. ``--onnx FILE`` times an existing export (of a
trained checkpoint, say) instead; the eager model still has random weights, so no relative
error is reported then (``null`` with a note in ``--json``). The measuring code,
fast-path switches included, is ``denseclip.analysis.benchmark``.
"""
import argparse
import contextlib
import json
import os.path as osp
import sys
import tempfile

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger


with contextlib.redirect_stdout(sys.stderr):  # mmseg prints import notes on stdout
    from denseclip.analysis.benchmark import (apply_fast_paths, benchmark_inference,
                                              benchmark_training, compare_inference,
                                              compare_onnxruntime, compare_training,
                                              describe_device, kernel_rates)
    from denseclip.engine import compile_submodules
    from denseclip.engine.cli import run_tool
    from denseclip.engine.config import build_segmentor, prepare_config

ADE20K_TEST_SHAPE = (512, 683)  # a 4:3 photo resized to (2048, 512), keep ratio


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark a model on synthetic data')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--mode', choices=['infer', 'train'], default='infer')
    parser.add_argument('--infer-modes', nargs='+', choices=['whole', 'slide'],
                        default=['whole', 'slide'], help='inference modes to measure')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='image H [W]; infer: default 512 683, train: the crop size')
    parser.add_argument('--batch-size', type=int,
                        help='images per step (default: 1 to infer, the config\'s to train)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations first')
    parser.add_argument('--iters', type=int, default=3, help='iterations per timed run')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs (median taken)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 on GPUs, bfloat16 on CPUs')
    parser.add_argument('--channels-last', action='store_true',
                        help='store convolution weights channels-last (NHWC)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile backbone, neck and decode head')
    parser.add_argument('--no-text-cache', action='store_true',
                        help='run the text encoder for every image/crop at inference')
    parser.add_argument('--slide-batch-size', type=int,
                        help='crops per forward pass in slide inference (default: one)')
    parser.add_argument('--compare', action='store_true',
                        help='time the default and each fast path switched, interleaved '
                        'round-robin (--repeats rounds of one iteration); other fast-path '
                        'switches are ignored')
    parser.add_argument('--kernels', action='store_true',
                        help='also time a float32 and a bfloat16 matmul and conv on the device '
                        '(does bfloat16 pay here?)')
    parser.add_argument('--backend', choices=['pytorch', 'onnxruntime'], default='pytorch',
                        help='onnxruntime: time ONNX Runtime next to eager PyTorch (infer only, '
                        'interleaved; fast-path switches are ignored)')
    parser.add_argument('--onnx', help='with --backend onnxruntime: time this existing export '
                        '(default: export the model first). The eager model keeps random '
                        'weights, so its logits are not compared with the file\'s: no '
                        'relative_error is reported (null in --json)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', action='store_true', help='print one JSON object only')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    args = parser.parse_args()
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    if args.backend == 'onnxruntime' and args.mode == 'train':
        parser.error('--backend onnxruntime measures inference only (--mode infer)')
    if args.onnx and args.backend != 'onnxruntime':
        parser.error('--onnx needs --backend onnxruntime')
    return args


def crop_size(cfg) -> tuple[int, int]:
    size = cfg.model.get('data_preprocessor', {}).get('size') or cfg.get('crop_size')
    if size is None:
        raise ValueError('the config gives no crop size (model.data_preprocessor.size); '
                         'pass --shape')
    return tuple(size)


def compare(args, cfg, model, shape) -> list[dict]:
    """``--compare``: the default against each fast path, per inference mode or training."""
    rounds = dict(rounds=args.repeats, warmup=args.warmup)
    if args.mode == 'train':
        return [compare_training(model, cfg, shape or crop_size(cfg),
                                 args.batch_size or cfg.train_dataloader.batch_size, **rounds)]
    return [compare_inference(model, mode, shape or ADE20K_TEST_SHAPE, args.batch_size or 1,
                              args.slide_batch_size, **rounds) for mode in args.infer_modes]


def onnxruntime(args, cfg, model, shape) -> tuple[dict, list[dict]]:
    """``--backend onnxruntime``: export (unless ``--onnx``), then eager against ONNX Runtime."""
    from denseclip.deploy.export import export_model
    from denseclip.deploy.ort import OrtSegmentor
    shape = shape or ADE20K_TEST_SHAPE
    settings = dict(backend='onnxruntime', rounds=args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = args.onnx
        if onnx_file is None:
            export = export_model(model, cfg, osp.join(folder, 'model.onnx'), shape, dynamic=True)
            onnx_file = export['out']
            settings.update(export_s=export['seconds'], onnx_mb=export['size_mb'])
        runtime = OrtSegmentor(onnx_file, threads=torch.get_num_threads())
        results = [compare_onnxruntime(model, runtime, mode, shape, args.batch_size or 1,
                                       args.repeats, args.warmup,
                                       same_weights=args.onnx is None)
                   for mode in args.infer_modes]
    return settings, results


def print_comparison(results: list[dict]) -> None:
    for result in results:
        print(f"\n{result['mode']} {result['shape'][0]}x{result['shape'][1]}, batch "
              f"{result['batch_size']}")
        if result.get('relative_error') is not None:
            print(f"onnxruntime vs pytorch logits: max|a-b|/max|b| = "
                  f"{result['relative_error']:.1e}")
        elif 'relative_error_note' in result:
            print(f"onnxruntime vs pytorch logits: {result['relative_error_note']}")
        states = result['states']
        default = next(iter(states.values()))['s_per_iter']
        print(f"{'state':<24}{'s/iter':>8}{'min':>8}{'speed-up':>10}{'peak MiB':>10}")
        for name, state in states.items():
            print(f"{name:<24}{state['s_per_iter']:>8.2f}{min(state['runs_s_per_iter']):>8.2f}"
                  f"{default / state['s_per_iter']:>9.2f}x{state['peak_memory_mb']:>10.0f}")


def measure(args) -> tuple[dict, list[dict]]:
    """Builds the model, applies the switches and runs the measurements."""
    shape = None if args.shape is None else tuple(args.shape * (3 - len(args.shape)))
    cfg = prepare_config(args.config, args.cfg_options, device=args.device)
    model = build_segmentor(cfg).to(args.device)
    settings = dict(config=args.config, device=args.device, **describe_device(args.device),
                    threads=torch.get_num_threads())
    if args.kernels:
        settings['kernel_gflops'] = kernel_rates(args.device)
    if args.backend == 'onnxruntime':
        extra, results = onnxruntime(args, cfg, model, shape)
        return dict(settings, **extra), results
    if args.compare:
        return dict(settings, rounds=args.repeats), compare(args, cfg, model, shape)
    settings.update(amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                    text_cache=not args.no_text_cache, slide_batch_size=args.slide_batch_size)
    slide_batch_size = (model.test_cfg.get('slide_batch_size') if args.slide_batch_size is None
                        else args.slide_batch_size)  # without the switch: the config's
    apply_fast_paths(model, text_cache=not args.no_text_cache, slide_batch_size=slide_batch_size,
                     channels_last=args.channels_last)
    if args.compile:
        compile_submodules(model)
    timing = dict(warmup=args.warmup, iters=args.iters, repeats=args.repeats, amp=args.amp)
    if args.mode == 'train':
        batch_size = args.batch_size or cfg.train_dataloader.batch_size
        return settings, [benchmark_training(model, cfg, shape or crop_size(cfg), batch_size,
                                             **timing)]
    return settings, [benchmark_inference(model, mode, shape or ADE20K_TEST_SHAPE,
                                          args.batch_size or 1, **timing)
                      for mode in args.infer_modes]


def print_results(settings: dict, results: list[dict]) -> None:
    print(', '.join(f'{key}={value}' for key, value in settings.items()))
    for result in results:
        rate = (f"{result['iters_per_s']:.3f} iters/s ({result['images_per_s']:.2f} images/s)"
                if result['mode'] == 'train' else f"{result['items_per_s']:.3f} images/s")
        runs = ', '.join(f'{seconds:.3f}' for seconds in result['runs_s_per_iter'])
        print(f"{result['mode']:<6} {result['shape'][0]}x{result['shape'][1]} "
              f"batch {result['batch_size']}: {rate}; s/iter per run: {runs}; peak memory "
              f"{result['peak_memory_mb']:.0f} MiB ({result['peak_memory_kind']})")


def main() -> None:
    args = parse_args()
    # mmseg and mmengine's logger write to stdout: send them to stderr, keep stdout for results
    with contextlib.redirect_stdout(sys.stderr):
        # WARNING: no INFO line per parameter from the optimiser constructor
        MMLogger.get_instance('benchmark', log_level='WARNING')
        settings, results = measure(args)
    if args.json:
        print(json.dumps(dict(settings=settings, results=results)))
    elif args.compare or args.backend == 'onnxruntime':
        print(', '.join(f'{key}={value}' for key, value in settings.items()))
        print_comparison(results)
    else:
        print_results(settings, results)


if __name__ == '__main__':
    run_tool(main)
