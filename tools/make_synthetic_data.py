"""Write the synthetic ADE20K-layout dataset used by the quick start and tests.

Example::

    python tools/make_synthetic_data.py --root data
    # -> data/ADEChallengeData2016/{images,annotations}/{training,validation}
"""
import argparse

from denseclip.datasets import generate_synthetic_ade20k


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Generate a deterministic synthetic dataset laid out '
        'like ADE20K (ADEChallengeData2016).')
    parser.add_argument(
        '--root', default='data',
        help='folder that will contain ADEChallengeData2016')
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
        '--overwrite', action='store_true',
        help='regenerate a synthetic dataset with other parameters')
    return parser.parse_args()


def main() -> None:
    """Generate the dataset and say where it is."""
    args = parse_args()
    if len(args.size) not in (1, 2):
        raise SystemExit(f'--size takes 1 or 2 integers, got {args.size}')
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    try:
        data_dir = generate_synthetic_ade20k(
            args.root,
            num_classes=args.num_classes,
            num_train=args.num_train,
            num_val=args.num_val,
            image_size=size,
            seed=args.seed,
            overwrite=args.overwrite)
    except (FileExistsError, ValueError) as err:
        raise SystemExit(f'error: {err}') from err
    print(f'Synthetic ADE20K-layout dataset ({args.num_classes} classes, '
          f'{args.num_train} train / {args.num_val} val images) is in '
          f'{data_dir}')


if __name__ == '__main__':
    main()
