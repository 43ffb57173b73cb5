"""Zero-shot image classification with a CLIP model and class names only.

    python tools/zero_shot.py CHECKPOINT IMAGE [IMAGE ...] --classes "cat,dog,car" [--topk 5]
    python tools/zero_shot.py CHECKPOINT --folder DIR [--classes ... | --classes-file F]
        [--out-dir DIR]
    options: [--templates FILE | --template '{}' ...] [--batch-size 32] [--device cpu]

CHECKPOINT: an OpenAI CLIP archive (RN50.pt, ViT-B-16.pt), a CLIP state dict (.pt, .pth,
.safetensors) or a checkpoint of the contrastive CLIP model written by tools/train.py; the
architecture is read from the weights. Each class is embedded through every prompt template
(default: denseclip.clip.PHOTO_TEMPLATES), averaged (prompt ensembling).

Images given by path: prints the top-k classes of each with their probabilities.
--folder DIR, an ImageFolder tree (one sub-folder per class; classes = sorted folder names, or
--classes, which must name the same folders): prints top-1 / top-5 accuracy, chance level and
per-class accuracy, and writes summary.json and confusion.png to --out-dir. Images that cannot
be read are named and skipped, then listed at the end, and the exit status is 1.
"""
import argparse
import json
import os
import os.path as osp
import sys

import torch

from denseclip.clip import (PHOTO_TEMPLATES, ZeroShotClassifier, build_model, read_clip_weights,
                            read_templates)
from denseclip.clip.zero_shot import accuracy_summary, embed_images, image_folder, read_class_names
from denseclip.engine import ignore_known_warnings
from denseclip.engine.checks import check_writable
from denseclip.engine.device import check_device
from denseclip.engine.cli import class_list, run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='CLIP archive, state dict or tools/train.py checkpoint')
    parser.add_argument('images', nargs='*', help='image files to classify')
    parser.add_argument('--folder', help='ImageFolder tree to evaluate (one folder per class)')
    names = parser.add_mutually_exclusive_group()
    names.add_argument('--classes', type=class_list, metavar='"a,b,c"',
                       help='class names, comma-separated')
    names.add_argument('--classes-file', help='class names, one a line')
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument('--templates', help="prompt templates, one a line, each with '{}'")
    prompts.add_argument('--template', action='append',
                         help="a prompt template with '{}' (repeatable), e.g. 'a photo of a {}.'")
    parser.add_argument('--topk', type=int, default=5, help='classes printed per image')
    parser.add_argument('--batch-size', type=int, default=32, help='images per forward pass')
    parser.add_argument('--out-dir', default='work_dirs/zero_shot',
                        help='where --folder writes summary.json and confusion.png')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda:0'")
    args = parser.parse_args()
    if bool(args.images) == bool(args.folder):
        parser.error('give image files or --folder DIR (one of the two)')
    if args.images and not (args.classes or args.classes_file):
        parser.error('classifying image files needs --classes or --classes-file')
    if args.topk < 1 or args.batch_size < 1:
        parser.error('--topk and --batch-size must be positive')
    if not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint {args.checkpoint!r} does not exist')
    return args


def save_confusion(summary: dict, path: str) -> None:
    """Draws the row-normalised confusion matrix (true class down, predicted across)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    confusion = torch.tensor(summary['confusion'], dtype=torch.float)
    rates = confusion / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    names, size = summary['class_names'], 3 + 0.35 * len(summary['class_names'])
    figure = Figure(figsize=(size + 1, size))
    axes = figure.add_subplot()
    image = axes.imshow(rates.numpy(), cmap='Blues', vmin=0, vmax=1)
    if len(names) <= 20:  # counts in the cells while they stay legible
        for row in range(len(names)):
            for column in range(len(names)):
                axes.text(column, row, int(confusion[row, column]), ha='center', va='center',
                          color='white' if rates[row, column] > 0.5 else 'black')
    axes.set_xticks(range(len(names)), names, rotation=90)
    axes.set_yticks(range(len(names)), names)
    axes.set(xlabel='predicted class', ylabel='true class',
             title=f"top-1 {summary['top1']:.1%} of {summary['num_images']} images")
    figure.colorbar(image, ax=axes, label='share of the true class')
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(path)


def report_folder(summary: dict, out_dir: str) -> None:
    """Prints the accuracies and writes ``summary.json`` and ``confusion.png`` to ``out_dir``."""
    print(f"{summary['num_images']} images, {summary['num_classes']} classes: "
          f"top-1 {summary['top1']:.2%}, top-{summary['topk_used']} {summary['top5']:.2%}, "
          f"chance {summary['chance']:.2%}")
    for name, accuracy in summary['per_class'].items():
        print(f'  {name}: ' + ('no readable image' if accuracy is None else f'{accuracy:.2%}'))
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    save_confusion(summary, osp.join(out_dir, 'confusion.png'))
    print(f'wrote summary.json and confusion.png to {out_dir}')


def main() -> int:
    args = parse_args()
    check_device(args.device)
    if args.folder:
        check_writable(args.out_dir, '--out-dir')
    ignore_known_warnings()
    try:
        classes = read_class_names(args.classes_file) if args.classes_file else None
        if args.classes:
            classes = args.classes
        templates = read_templates(args.templates) if args.templates else (
            args.template or PHOTO_TEMPLATES)
        paths, labels = args.images, None
        if args.folder:
            paths, labels, classes, not_images = image_folder(args.folder, classes)
            for path in not_images:
                print(f'not an image by its name, skipped: {path}')
        model = build_model(read_clip_weights(args.checkpoint)).to(args.device)
        classifier = ZeroShotClassifier.from_clip(model, classes, templates)
    except (OSError, ValueError, RuntimeError) as err:  # CheckpointError is a RuntimeError
        sys.exit(f'error: {err}')
    features, kept, bad = embed_images(model, paths, args.batch_size)
    for _, reason in bad:
        print(f'skipped: {reason}')  # the reason names the file
    logits = classifier(features)  # [N, K]
    if not args.folder:
        for index, row in zip(kept, logits.softmax(dim=-1)):
            top = row.topk(min(args.topk, len(classes)))
            print(f'{paths[index]}: ' + ', '.join(
                f'{classes[i]} {p:.3f}' for p, i in zip(top.values.tolist(), top.indices.tolist())))
    elif kept:
        summary = accuracy_summary(logits, torch.tensor([labels[i] for i in kept]), classes)
        summary.update(checkpoint=args.checkpoint, folder=args.folder,
                       skipped=[path for path, _ in bad])
        report_folder(summary, args.out_dir)
    if bad:
        print(f'{len(bad)} of {len(paths)} images could not be read: '
              + ', '.join(path for path, _ in bad))
        return 1
    return 0


if __name__ == '__main__':
    run_tool(main)
