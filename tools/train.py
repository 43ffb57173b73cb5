"""Train a segmentor: ``python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] ...``.

Distributed: ``tools/dist_train.sh`` (torchrun) or ``tools/slurm_train.sh``. Without CUDA the
run falls back to gloo, BN and bfloat16 autocast (see ``denseclip/engine/dist.py``).
``--resume`` continues a killed run exactly where its newest intact checkpoint left it, and
every dataset is checked for missing, unpaired and corrupt files (``docs/robustness.md``).
The config is prepared as for every entry point (``denseclip.engine.config.prepare_config``).
"""
import argparse
import os
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from denseclip.engine import KnownLogRecords, configure_resume, ignore_known_warnings
from denseclip.engine.config import prepare_config
from denseclip.engine.schedulers import scale_schedule
from denseclip.engine.cli import run_tool


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
        '--max-iters', type=int, metavar='N',
        help='train for N iterations with the whole schedule scaled to them (warm-up, '
        'scheduler ends, validation, checkpoint and log intervals): a short first run of a '
        'long recipe')
    parser.add_argument(
        '--seed', type=int,
        help='random seed (default: the config\'s randomness.seed, 0 in every config here); '
        'the same config, seed, machine and thread count give bit-identical weights')
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

    options = dict(args.cfg_options or {})
    if args.seed is not None:
        options['randomness.seed'] = args.seed
    # checked numbers and arguments, class names, safe loading, checked datasets, --amp, the
    # CPU fallbacks, the work dir
    cfg = prepare_config(args.config, options, launcher=args.launcher,
                         work_dir=args.work_dir, amp=args.amp, partial_load=args.partial_load,
                         check_data=True)
    if args.max_iters is not None:
        for change in scale_schedule(cfg, args.max_iters):
            print(f'--max-iters {args.max_iters}: {change}')
    if args.partial_load and not cfg.get('load_from'):
        sys.exit('error: --partial-load needs a checkpoint to fine-tune from: set load_from in '
                 'the config or pass --cfg-options load_from=PATH')
    if args.resume:
        configure_resume(cfg, args.resume)  # the newest intact checkpoint and its seed
    else:
        cfg.resume = False

    ignore_known_warnings()  # known-harmless mmseg/mmengine messages, denseclip/engine/console.py
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(KnownLogRecords())
    runner.train()
    last = runner.message_hub.get_info('last_ckpt')
    print(f'done: {runner.iter} iterations, seed {runner.seed}, work dir {runner.work_dir}'
          + (f', last checkpoint {last}' if last else ''))


if __name__ == '__main__':
    run_tool(main)
