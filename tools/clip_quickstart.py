"""A tiny CLIP trained contrastively on the synthetic captions, judged zero-shot before and after.

Run through ``bash tools/clip_quickstart.sh`` (which sets up the environment first). Every step
calls the project's own tools, so the log shows the commands to reuse: the data
(make_synthetic_data.py), zero-shot classification of the held-out ImageFolder images
(zero_shot.py --folder) and zero-shot segmentation of the held-out scenes (test.py with the
zero-shot config of the tiny CLIP's shape), both for the untrained (randomly
initialised) model and after training (train.py).
"""
import argparse
import glob
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

import denseclip  # noqa: F401  (registers CLIPContrastive)

from denseclip.engine.cli import run_tool

CONFIG = 'configs/clip/clip_tiny-r_1xb32-0.3k_synthetic-captions-128x128.py'
ZERO_SHOT_CONFIG = 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py'  # CONFIG's towers


def run(*command: str) -> None:
    print('+ python ' + shlex.join(command), flush=True)
    subprocess.run([sys.executable, *command], check=True)


def classify(checkpoint: str, folder: str, out_dir: str) -> dict:
    """Runs ``tools/zero_shot.py --folder`` and reads the summary json it writes."""
    run('tools/zero_shot.py', checkpoint, '--folder', folder, '--out-dir', out_dir)
    with open(osp.join(out_dir, 'summary.json')) as f:
        return json.load(f)


def segment(checkpoint: str, work_dir: str, options: list[str]) -> float:
    """Runs ``tools/test.py`` with the zero-shot config and reads the mIoU from its json."""
    run('tools/test.py', ZERO_SHOT_CONFIG, checkpoint, '--work-dir', work_dir,
        '--cfg-options', *options)
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    if not logs:
        raise RuntimeError(f'tools/test.py wrote no metrics json under {work_dir}')
    with open(logs[-1]) as f:
        return float(json.loads(f.readlines()[-1])['mIoU'])


def chance_miou(annotation_dir: str, num_classes: int) -> float:
    """The expected mIoU (%) of labelling every scored pixel with a uniformly random class.

    Class ``k`` covering ``n_k`` of ``N`` scored pixels: ``n_k / K`` true positives, ``N / K``
    predicted, so IoU_k = (n_k / K) / (n_k + N / K - n_k / K); a class absent from the labels
    is still predicted, so it scores 0, as in mmseg's IoUMetric. Label 0 ("other") is not scored.
    """
    counts = np.zeros(num_classes + 1)
    for path in sorted(glob.glob(osp.join(annotation_dir, '*.png'))):
        label = mmcv.imread(path, flag='unchanged')
        counts += np.bincount(label.ravel(), minlength=num_classes + 1)[:num_classes + 1]
    if not counts[1:].any():
        raise RuntimeError(f'no labelled pixels in the annotations under {annotation_dir}')
    pixels, total = counts[1:], counts[1:].sum()
    iou = pixels / num_classes / (pixels + total / num_classes - pixels / num_classes)
    return float(100 * iou.mean())


def save_untrained(cfg: Config, path: str) -> None:
    """Saves the tiny CLIP as initialised (OpenAI's initialisation, seed 0), untrained."""
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--work-dir', default='work_dirs/clip_quickstart')
    parser.add_argument('--data-root', default='data/synthetic')
    parser.add_argument('--iters', type=int, help='training iterations (default: the config\'s)')
    parser.add_argument('--scenes', type=int, nargs=2, default=[200, 40],
                        metavar=('N_TRAIN', 'N_VAL'), help='synthetic scenes (with captions)')
    parser.add_argument('--per-class', type=int, nargs=2, default=[40, 20],
                        metavar=('N_TRAIN', 'N_VAL'), help='ImageFolder images per class')
    args = parser.parse_args()
    if args.iters is not None and args.iters < 2:  # a warm-up iteration, then the decay
        parser.error(f'--iters must be at least 2, got {args.iters}')
    start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)
    cfg = Config.fromfile(CONFIG)

    # regenerates synthetic data that its own marker shows to be of other parameters; a folder
    # without that marker is never touched
    run('tools/make_synthetic_data.py', '--root', args.data_root, '--num-train',
        str(args.scenes[0]), '--num-val', str(args.scenes[1]), '--image-folder',
        *map(str, args.per_class), '--overwrite')
    scenes = osp.join(args.data_root, 'ADEChallengeData2016')
    folder = osp.join(args.data_root, 'imagefolder', 'validation')  # held out: not trained on
    seg_options = [f'test_dataloader.dataset.data_root={scenes}']
    train_options = [f'train_dataloader.dataset.data_root={scenes}']
    if args.iters is not None:  # the schedule keeps its shape: warm-up, then cosine to zero
        warmup = max(1, min(cfg.warmup_iters, args.iters // 10))
        train_options += [f'train_cfg.max_iters={args.iters}',
                          f'default_hooks.checkpoint.interval={args.iters}',
                          f'param_scheduler.0.end={warmup}',
                          f'param_scheduler.1.begin={warmup}',
                          f'param_scheduler.1.end={args.iters}',
                          f'param_scheduler.1.T_max={args.iters - warmup}']

    untrained = osp.join(args.work_dir, 'untrained.pth')
    save_untrained(cfg, untrained)
    before = classify(untrained, folder, osp.join(args.work_dir, 'zero_shot_untrained'))
    miou_before = segment(untrained, osp.join(args.work_dir, 'seg_untrained'), seg_options)

    run('tools/train.py', CONFIG, '--work-dir', args.work_dir, '--cfg-options', *train_options)
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    after = classify(checkpoint, folder, osp.join(args.work_dir, 'zero_shot_trained'))
    miou_after = segment(checkpoint, osp.join(args.work_dir, 'seg_trained'), seg_options)
    miou_chance = chance_miou(osp.join(scenes, 'annotations', 'validation'),
                              before['num_classes'])

    print('\n' + '=' * 72)
    print(f'Tiny CLIP on the synthetic data, zero-shot ({time.time() - start:.0f} s)')
    print(f'  config:      {CONFIG}')
    print(f'  checkpoint:  {checkpoint}')
    print(f"  held out:    {before['num_images']} ImageFolder images of {before['num_classes']} "
          f'classes ({folder}); {args.scenes[1]} validation scenes')
    print(f"  {'':34}{'chance':>8}{'untrained':>11}{'trained':>9}")
    print(f"  {'classification top-1 (%)':34}{100 * before['chance']:8.2f}"
          f"{100 * before['top1']:11.2f}{100 * after['top1']:9.2f}")
    top5_chance = 100 * min(1.0, before['topk_used'] * before['chance'])
    print(f"  {'classification top-%d (%%)' % before['topk_used']:34}{top5_chance:8.2f}"
          f"{100 * before['top5']:11.2f}{100 * after['top5']:9.2f}")
    print(f"  {'segmentation mIoU (%)':34}{miou_chance:8.2f}{miou_before:11.2f}"
          f'{miou_after:9.2f}')
    print(f'  logs:        {args.work_dir}')
    print('=' * 72)


if __name__ == '__main__':
    run_tool(main)
