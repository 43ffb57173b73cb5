"""Inference and training speed of a config's model on synthetic data (no weights, no dataset).

``python tools/benchmark.py CONFIG [--mode infer|train] [--shape H W] [--batch-size N]
[--iters N] [--amp] [--json]``

infer: images/s of ``test_step`` in whole and slide mode (the config's crop size and stride)
on ``--shape`` images (default 512 x 683: an ADE20K photo after the test resize).
train: iterations/s of ``train_step`` at the config's crop size. Warm-up is excluded; rates
are the median of ``--repeats`` runs; peak memory is CUDA's max-allocated or the peak RSS.
The fast paths are switches: ``--no-text-cache``, ``--slide-batch-size``, ``--channels-last``,
``--amp``, ``--compile``. The measuring code is ``denseclip.utils.benchmark``.
"""
import argparse
import contextlib
import json
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

with contextlib.redirect_stdout(sys.stderr):  # mmseg prints import notes on stdout
    try:
        import denseclip  # noqa: F401  (registers the DenseCLIP modules)
    except ImportError:  # a checkout that is not pip-installed
        sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
        import denseclip  # noqa: F401
    from denseclip.utils import compile_submodules, to_channels_last
    from denseclip.utils.benchmark import benchmark_inference, benchmark_training
    from denseclip.utils.build import build_segmentor, load_config

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
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', action='store_true', help='print one JSON object only')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    args = parser.parse_args()
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    return args


def crop_size(cfg) -> tuple[int, int]:
    size = cfg.model.get('data_preprocessor', {}).get('size') or cfg.get('crop_size')
    if size is None:
        raise ValueError('the config gives no crop size (model.data_preprocessor.size); '
                         'pass --shape')
    return tuple(size)


def main() -> None:
    args = parse_args()
    shape = None if args.shape is None else tuple(args.shape * (3 - len(args.shape)))
    with contextlib.redirect_stdout(sys.stderr):
        cfg = load_config(args.config, args.cfg_options)
        model = build_segmentor(cfg).to(args.device)
    settings = dict(config=args.config, device=args.device, amp=args.amp,
                    channels_last=args.channels_last, compile=args.compile,
                    text_cache=not args.no_text_cache, slide_batch_size=args.slide_batch_size,
                    threads=torch.get_num_threads())
    if hasattr(model, 'cache_text'):
        model.cache_text = not args.no_text_cache
    if args.slide_batch_size is not None:
        model.test_cfg.slide_batch_size = args.slide_batch_size
    if args.channels_last:
        to_channels_last(model)
    if args.compile:
        compile_submodules(model)
    timing = dict(warmup=args.warmup, iters=args.iters, repeats=args.repeats, amp=args.amp)
    results = []
    if args.mode == 'infer':
        for mode in args.infer_modes:
            results.append(benchmark_inference(model, mode, shape or ADE20K_TEST_SHAPE,
                                               args.batch_size or 1, **timing))
    else:
        batch_size = args.batch_size or cfg.train_dataloader.batch_size
        results.append(benchmark_training(model, cfg, shape or crop_size(cfg), batch_size,
                                          **timing))
    if args.json:
        print(json.dumps(dict(settings=settings, results=results)))
        return
    print(', '.join(f'{key}={value}' for key, value in settings.items()))
    for result in results:
        rate = (f"{result['iters_per_s']:.3f} iters/s ({result['images_per_s']:.2f} images/s)"
                if result['mode'] == 'train' else f"{result['items_per_s']:.3f} images/s")
        runs = ', '.join(f'{seconds:.3f}' for seconds in result['runs_s_per_iter'])
        print(f"{result['mode']:<6} {result['shape'][0]}x{result['shape'][1]} "
              f"batch {result['batch_size']}: {rate}; s/iter per run: {runs}; peak memory "
              f"{result['peak_memory_mb']:.0f} MiB ({result['peak_memory_kind']})")


if __name__ == '__main__':
    main()
