"""Write the synthetic ADE20K-layout dataset used by the quick start and tests.

Example::

    python tools/make_synthetic_data.py --root data
    # -> data/ADEChallengeData2016/{images,annotations}/{training,validation}
    #    data/ADEChallengeData2016/captions/{training,validation}.jsonl
    python tools/make_synthetic_data.py --root data --image-folder 40 20
    # and data/imagefolder/{training,validation}/<class>/0001.jpg (+ .jsonl)
"""
import argparse

from denseclip.datasets.synthetic import (generate_synthetic_ade20k,
                                          generate_synthetic_imagefolder)
from denseclip.engine.cli import run_tool

IMAGE_FOLDER_DEFAULT = [40, 20]  # images per class: training, validation


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Generate a deterministic synthetic dataset laid out '
        'like ADE20K (ADEChallengeData2016), with captions, and optionally '
        'an ImageFolder split of the same classes.')
    parser.add_argument(
        '--root', default='data',
        help='folder that will contain ADEChallengeData2016 (and imagefolder)')
    parser.add_argument(
        '--num-classes', type=int, default=8,
        help='number of foreground classes K (named after ADE20K)')
    parser.add_argument(
        '--num-train', type=int, default=200, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=40, help='validation images')
    parser.add_argument(
        '--size', type=int, nargs='+', default=[128],
        help='image side, or height and width')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--captions', action=argparse.BooleanOptionalAction, default=True,
        help='write captions/{training,validation}.jsonl naming the classes '
        'of each scene')
    parser.add_argument(
        '--image-folder', type=int, nargs='*', metavar='N',
        help='also write ROOT/imagefolder, one object per image, with '
        'N_TRAIN and N_VAL images per class (given without numbers: '
        f'{" ".join(map(str, IMAGE_FOLDER_DEFAULT))})')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='regenerate a synthetic dataset with other parameters')
    return parser.parse_args()


def main() -> None:
    """Generate the dataset(s) and say where they are."""
    args = parse_args()
    if len(args.size) not in (1, 2):
        raise SystemExit(f'--size takes 1 or 2 integers, got {args.size}')
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    per_class = args.image_folder
    if per_class is not None and len(per_class) not in (0, 2):
        raise SystemExit('--image-folder takes no number or two (training '
                         f'and validation images per class), got {per_class}')
    common = dict(num_classes=args.num_classes, image_size=size,
                  seed=args.seed, overwrite=args.overwrite)
    try:
        data_dir = generate_synthetic_ade20k(
            args.root, num_train=args.num_train, num_val=args.num_val,
            captions=args.captions, **common)
        if per_class is not None:
            num_train, num_val = per_class or IMAGE_FOLDER_DEFAULT
            folder_dir = generate_synthetic_imagefolder(
                args.root, num_train=num_train, num_val=num_val, **common)
    except (FileExistsError, ValueError) as err:
        raise SystemExit(f'error: {err}') from err
    print(f'Synthetic ADE20K-layout dataset ({args.num_classes} classes, '
          f'{args.num_train} train / {args.num_val} val images'
          f'{", with captions" if args.captions else ""}) is in {data_dir}')
    if per_class is not None:
        print(f'Synthetic ImageFolder split ({args.num_classes} classes, '
              f'{num_train} train / {num_val} val images per class, with '
              f'captions) is in {folder_dir}')


if __name__ == '__main__':
    run_tool(main)
