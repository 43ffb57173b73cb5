"""Train a segmentor: ``python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] ...``.

Distributed: ``tools/dist_train.sh`` (torchrun) or ``tools/slurm_train.sh``. Without CUDA the
run falls back to gloo, BN and bfloat16 autocast (see ``denseclip/utils/dist.py``).
``--resume`` continues a killed run exactly where its newest intact checkpoint left it, and
every dataset is checked for missing, unpaired and corrupt files (``docs/robustness.md``).
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
from denseclip.engine import configure_resume
from denseclip.engine.safe_load import require_checkpoint_fit
from denseclip.utils import (KnownLogRecords, adapt_cfg_to_cpu, enable_amp, fill_class_names,
                             ignore_known_warnings)
from mmseg.registry import RUNNERS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or (without it) from the newest intact checkpoint in '
        'the work_dir; a work_dir without checkpoints starts from scratch')
    parser.add_argument(
        '--partial-load',
        action='store_true',
        help='fine-tune from load_from even where it does not fit the model (another head or '
        'class count): those weights keep their initial values, and a summary says which. '
        'Without it, a load_from that does not fit exactly is an error')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision (fp16 on GPU, bfloat16 on CPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs such as '
        'train_cfg.max_iters=100 or model.backbone.layers="[3,4,6,3]" '
        '(quotes needed around lists; no white space)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes `--local-rank` (torch >= 2.0) or `--local_rank`
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.partial_load and args.resume:
        parser.error('--partial-load is for fine-tuning from load_from; a resumed run must fit '
                     'its checkpoint exactly: drop one of --partial-load and --resume')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    fill_class_names(cfg)  # DenseCLIP: class names from the dataset metainfo
    check_class_names(cfg)
    wrap_datasets(cfg)  # clear errors for missing, unpaired, corrupt or mislabelled data

    # work_dir priority: CLI > config > ./work_dirs/CONFIG_NAME
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        enable_amp(cfg)
    if args.partial_load and not cfg.get('load_from'):
        sys.exit('error: --partial-load needs a checkpoint to fine-tune from: set load_from in '
                 'the config or pass --cfg-options load_from=PATH')
    require_checkpoint_fit(cfg, partial=args.partial_load)
    if args.resume:
        configure_resume(cfg, args.resume)  # the newest intact checkpoint and its seed
    else:
        cfg.resume = False
    adapt_cfg_to_cpu(cfg)

    ignore_known_warnings()  # known-harmless mmseg/mmengine messages, denseclip/utils/console.py
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(KnownLogRecords())
    runner.train()


if __name__ == '__main__':
    main()
