"""The main job on the embedded default: data, untrained baseline, training, SS/MS test, picture.

Run through ``bash tools/quickstart.sh`` (which sets up the environment first). Every step calls
the project's own tools, so the log shows the commands to reuse on real data.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from denseclip.apis import inference_model, init_model, save_picture
from denseclip.apis.visualization import draw_labels, render_grid
from denseclip.datasets import generate_synthetic_ade20k
from denseclip.engine import ignore_known_warnings
from denseclip.engine.cli import run_tool

CONFIG = 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
#: Label value of pixels that are no class ("other" in the synthetic label files).
IGNORE_INDEX = 255


def run(*command: str) -> None:
    print('+ ' + ' '.join(command), flush=True)
    subprocess.run([sys.executable, *command], check=True)


def test_miou(checkpoint: str, work_dir: str, *extra: str) -> float:
    """Runs ``tools/test.py`` and reads the mIoU from the metrics json it writes."""
    run('tools/test.py', CONFIG, checkpoint, '--work-dir', work_dir, *extra)
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    if not logs:
        raise RuntimeError(f'tools/test.py wrote no metrics json under {work_dir}')
    with open(logs[-1]) as f:
        return float(json.loads(f.readlines()[-1])['mIoU'])


def save_untrained(cfg: Config, path: str) -> None:
    """Saves the initialised, untrained model as a checkpoint for the baseline evaluation.

    mmengine reports the initialisation of every parameter (hundreds of lines); as in a
    training run, the report goes to a log file (``untrained_init.log`` beside ``path``), not
    to the console.
    """
    torch.manual_seed(0)
    model = init_model(cfg, None)
    MMLogger.get_instance('quickstart', log_file=osp.splitext(path)[0] + '_init.log')
    model.init_weights()
    dataset_meta = dict(cfg.train_dataloader.dataset.metainfo)
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dataset_meta}}, path)


def draw_predictions(cfg: Config, checkpoint: str, data_root: str, out: str,
                     num_images: int = 4) -> None:
    """Rows of (input | ground truth | prediction) for the first validation images, the
    classes in the palette's colours over the image, "other" (not scored) dark."""
    model = init_model(cfg, checkpoint)
    metainfo = cfg.train_dataloader.dataset.metainfo
    classes, palette = metainfo['classes'], metainfo['palette']
    rows = []
    images = sorted(glob.glob(osp.join(data_root, 'images', 'validation', '*.jpg')))
    for image_path in images[:num_images]:
        label_path = image_path.replace('images', 'annotations').replace('.jpg', '.png')
        image = mmcv.imread(image_path, channel_order='rgb')
        label = mmcv.imread(label_path, flag='unchanged').astype(np.int64) - 1  # 0 -> -1
        label[label < 0] = IGNORE_INDEX  # "other" is not a class: not trained on, not scored
        pred = inference_model(model, image_path).pred_sem_seg.data[0].numpy()
        pred[label == IGNORE_INDEX] = IGNORE_INDEX
        rows.append([image, *(draw_labels(image, labels, classes, palette, opacity=0.7)
                              for labels in (label, pred))])
    legend = [(name.strip(), tuple(channel / 255 for channel in colour))
              for name, colour in zip(classes, palette)] + [('other (not scored)', (0, 0, 0))]
    picture = render_grid(rows, ('input', 'ground truth', 'prediction'), legend, scale=2)
    save_picture(picture, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--work-dir', default='work_dirs/quickstart')
    parser.add_argument('--data-root', default='data/synthetic')
    args = parser.parse_args()
    ignore_known_warnings()  # as the tools it runs do (denseclip/engine/console.py)
    start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)
    cfg = Config.fromfile(CONFIG)

    # regenerates a synthetic dataset that its own marker shows to be of another format version
    # or parameters; a folder without that marker is never touched
    data_dir = str(generate_synthetic_ade20k(args.data_root, overwrite=True))
    print(f'synthetic data: {data_dir}', flush=True)

    untrained = osp.join(args.work_dir, 'untrained.pth')
    save_untrained(cfg, untrained)
    miou_untrained = test_miou(untrained, osp.join(args.work_dir, 'test_untrained'))

    run('tools/train.py', CONFIG, '--work-dir', args.work_dir)
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    miou_ss = test_miou(checkpoint, osp.join(args.work_dir, 'test_ss'))
    miou_ms = test_miou(checkpoint, osp.join(args.work_dir, 'test_ms'), '--tta')

    picture = osp.join(args.work_dir, 'predictions.png')
    draw_predictions(cfg, checkpoint, data_dir, picture)

    print('\n' + '=' * 72)
    print(f'DenseCLIP quickstart on synthetic ADE20K-layout data ({time.time() - start:.0f} s)')
    print(f'  data:                {data_dir}')
    print(f'  config:              {CONFIG}')
    print(f'  checkpoint:          {checkpoint}')
    print(f'  seed:                {cfg.randomness.seed} (randomness.seed; same seed, machine and '
          'threads: same numbers)')
    print(f'  mIoU untrained:      {miou_untrained:6.2f}')
    print(f'  mIoU single-scale:   {miou_ss:6.2f}')
    print(f'  mIoU multi-scale+flip: {miou_ms:6.2f}')
    print(f'  picture:             {picture}  (input | ground truth | prediction)')
    print(f'  logs:                {args.work_dir}')
    print('=' * 72)


if __name__ == '__main__':
    run_tool(main)
