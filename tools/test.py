"""Test a segmentor: ``python tools/test.py CONFIG CHECKPOINT [--tta] [--show-dir DIR] ...``.

Single-scale evaluation by default; ``--tta`` evaluates with the config's multi-scale + flip
``tta_pipeline``. Distributed: ``tools/dist_test.sh`` or ``tools/slurm_test.sh``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

try:
    import denseclip  # noqa: F401  (registers the DenseCLIP modules)
except ImportError:  # a checkout that is not pip-installed
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    import denseclip  # noqa: F401
from denseclip.datasets import check_class_names, wrap_datasets
from denseclip.engine.safe_load import require_checkpoint_fit
from denseclip.utils import (KnownLogRecords, adapt_cfg_to_cpu, fill_class_names,
                             ignore_known_warnings)


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
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time
    if args.show_dir:
        cfg.visualizer.save_dir = osp.join(cfg.work_dir, args.show_dir)


def main() -> dict:
    """Run the test loop; returns the metrics, e.g. ``{'mIoU': ...}``."""
    args = parse_args()

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    fill_class_names(cfg)  # DenseCLIP: class names from the dataset metainfo
    check_class_names(cfg)

    # work_dir priority: CLI > config > ./work_dirs/CONFIG_NAME
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    require_checkpoint_fit(cfg)  # a checkpoint that does not fit the model is an error

    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.amp:
        cfg.test_cfg.fp16 = True  # mmengine's TestLoop runs the model under autocast
    if args.out is not None:
        cfg.test_evaluator.output_dir = args.out
        cfg.test_evaluator.keep_results = True
    wrap_datasets(cfg)  # clear errors for missing, unpaired, corrupt or mislabelled data
    adapt_cfg_to_cpu(cfg)

    ignore_known_warnings()  # known-harmless mmseg/mmengine messages, denseclip/utils/console.py
    runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(KnownLogRecords())
    return runner.test()


if __name__ == '__main__':
    main()
