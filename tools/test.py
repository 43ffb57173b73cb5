"""Test a segmentor: ``python tools/test.py CONFIG CHECKPOINT [--tta] [--show-dir DIR] ...``.

Single-scale evaluation by default; ``--tta`` evaluates with the config's multi-scale + flip
``tta_pipeline``. Distributed: ``tools/dist_test.sh`` or ``tools/slurm_test.sh``. The config is
prepared as for every entry point (``denseclip.engine.config.prepare_config``). For a zero-shot
config (``configs/zero_shot/``) CHECKPOINT is the CLIP archive itself (``pretrained/RN50.pt``).
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from denseclip.apis.inference import load_clip_archive, takes_clip_archive
from denseclip.engine import KnownLogRecords, ignore_known_warnings
from denseclip.engine.config import prepare_config
from denseclip.engine.device import warn_if_bf16_emulated
from denseclip.engine.checks import check_writable
from denseclip.engine.cli import run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save logs and the metrics (json)')
    parser.add_argument(
        '--out', help='the dir to save the predictions for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show the predictions in a window')
    parser.add_argument(
        '--show-dir',
        help='save painted predictions in DIR (relative to the work dir)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each image is shown')
    parser.add_argument(
        '--tta', action='store_true', help='multi-scale + flip test-time augmentation')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed-precision inference (autocast: fp16 on GPU, bfloat16 on CPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs such as '
        'test_dataloader.dataset.data_root=DIR (no white space)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint {args.checkpoint!r} does not exist')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    """Turn on the ``SegVisualizationHook`` of ``cfg.default_hooks``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show/--show-dir need `default_hooks.visualization = '
                           "dict(type='SegVisualizationHook')` in the config")
    hook.draw = True
    hook.interval = 1  # every test image (upstream mmseg 1.2.2's hook otherwise draws every 50th)
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time
    if args.show_dir:
        cfg.visualizer.save_dir = osp.join(cfg.work_dir, args.show_dir)


def main() -> dict:
    """Run the test loop; returns the metrics, e.g. ``{'mIoU': ...}``."""
    args = parse_args()

    # class names, safe loading, a checkpoint that must fit, --tta, checked datasets, the CPU
    # fallbacks, the work dir
    cfg = prepare_config(args.config, args.cfg_options, launcher=args.launcher,
                         work_dir=args.work_dir, tta=args.tta, check_data=True)
    # a zero-shot segmentor's CHECKPOINT is the CLIP archive itself, loaded into both towers
    clip_archive = takes_clip_archive(cfg)
    cfg.load_from = None if clip_archive else args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.show_dir:
        check_writable(cfg.visualizer.save_dir, '--show-dir')
        print(f'pictures of the predictions go to {cfg.visualizer.save_dir}/vis_data/vis_image')
    if args.amp:
        cfg.test_cfg.fp16 = True  # mmengine's TestLoop runs the model under autocast
        if not torch.cuda.is_available():  # CUDA autocasts to fp16; a CPU to bfloat16
            warn_if_bf16_emulated('cpu', '--amp')
    if args.out is not None:
        check_writable(args.out, '--out')
        cfg.test_evaluator.output_dir = args.out
        cfg.test_evaluator.keep_results = True

    ignore_known_warnings()  # known-harmless mmseg/mmengine messages, denseclip/engine/console.py
    runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(KnownLogRecords())
    if clip_archive:
        load_clip_archive(runner.model, args.checkpoint)
    return runner.test()


if __name__ == '__main__':
    run_tool(main)
