"""Plot the training curves of a run: loss terms and validation mIoU against the iteration.

    python tools/plot_logs.py WORK_DIR --out curves.png

Reads mmengine's JSON logs, WORK_DIR/TIMESTAMP/vis_data/TIMESTAMP.json, of every run directly
under WORK_DIR (a resumed run continues the curves; a step logged twice keeps its latest
value), or one such JSON file given instead of WORK_DIR. For live curves use TensorBoard:
train with --cfg-options visualizer.tensorboard=True.
"""
import argparse
import os
import os.path as osp
import sys

from denseclip.analysis.training_curves import find_json_logs, plot_curves, read_curves
from denseclip.engine.cli import run_tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir', help='work dir of a training run, or a JSON log')
    parser.add_argument('--out', default='curves.png', help='picture to write')
    parser.add_argument('--title', help='title (default: the work dir)')
    args = parser.parse_args()
    logs = find_json_logs(args.work_dir)
    curves = read_curves(logs)
    if not curves.losses and not curves.metrics:
        sys.exit(f'error: {", ".join(map(str, logs))} hold no losses or metrics')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    title = args.title if args.title is not None else osp.basename(osp.abspath(args.work_dir))
    plot_curves(curves, args.out, title)
    print(f'read {len(logs)} log(s): {", ".join(map(str, logs))}')
    print(f'wrote {args.out}: {", ".join(curves.losses)} and {", ".join(curves.metrics)}')


if __name__ == '__main__':
    run_tool(main)
