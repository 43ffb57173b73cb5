"""Draw what DenseCLIP sees in one image: the predicted classes and pixel-text score maps.

    python tools/demo.py CONFIG CHECKPOINT IMAGE --out OUT.png [--score-maps [CLASS ...]]
        [--classes "a,b,c"] [--opacity 0.5] [--softmax] [--scale 1] [--device cpu]

CONFIG and CHECKPOINT come first, as in every tool (mmseg's order); the old order
IMAGE CONFIG CHECKPOINT is still understood, with a notice.

OUT.png is one picture of panels side by side, each panel the image's size (times --scale):
the input; the decoder's prediction over it in the dataset palette with a legend of the
predicted classes and their share of the image; then, for each requested name, a heat-map of its
pixel-text score map (cosine similarity between every pixel's embedding and the name's text
embedding, upsampled to the image) with the name as title and a colour bar. Titles, legend and
colour bars lie outside the panels. Score maps come from the same preprocessed input as the
prediction, computed over the whole input in one pass even for sliding-window configs.

A zero-shot config (configs/zero_shot/) takes the CLIP archive as CHECKPOINT and classifies
every pixel by text, so --classes sets the classes of the prediction panel too.
"""
import argparse
import sys

from mmengine.config import DictAction

from denseclip.apis import demo_picture, init_model, save_picture
from denseclip.clip.preprocess import read_image
from denseclip.engine import ignore_known_warnings
from denseclip.engine.checks import check_output_file
from denseclip.engine.cli import class_list, run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument(
        '--score-maps', nargs='*', metavar='CLASS',
        help='names whose score maps to draw: trained classes, or names given to --classes. '
        'Without names: the classes the decoder predicted (largest first), or every --classes '
        'name. Not given: no heat-maps, except with --classes')
    parser.add_argument(
        '--classes', type=class_list,
        metavar='"a,b,c"',
        help='open-vocabulary question: run the text branch for these names (at most 3 BPE '
        'tokens each) and draw their score maps. The decoder is NOT affected: its input '
        'channels are tied to the trained classes, so the prediction panel still shows the '
        'trained classes. The context decoder lets the names attend to each other, so a '
        "name's map depends a little on the other names asked with it. A zero-shot config "
        '(configs/zero_shot/, CHECKPOINT = the CLIP archive) predicts these names instead: '
        'the prediction panel shows them')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='opacity of the class colours over the image, in (0, 1]')
    parser.add_argument('--softmax', action='store_true',
                        help='draw softmax(s / tau) over all the names (trained classes or '
                        '--classes) instead of cosine similarities: the probabilities the '
                        'pixel-text loss trains')
    parser.add_argument('--scale', type=int, default=1,
                        help='enlarge every panel by this integer factor (small images)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda:0'")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    args = parser.parse_args()
    if args.checkpoint.endswith('.py') and not args.config.endswith('.py'):  # the old order
        args.image, args.config, args.checkpoint = args.config, args.checkpoint, args.image
        print('notice: tools/demo.py takes CONFIG CHECKPOINT IMAGE now, as every tool takes '
              'CONFIG CHECKPOINT first; IMAGE CONFIG CHECKPOINT is understood for one more '
              'release', file=sys.stderr)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    if args.scale < 1:
        parser.error(f'--scale must be a positive integer, got {args.scale}')
    return args


def main() -> None:
    args = parse_args()
    check_output_file(args.out, '--out')
    image = read_image(args.image, 'bgr')  # the one reader: a bad file is named
    ignore_known_warnings()  # harmless mmcv/mmseg warnings, see denseclip/engine/console.py
    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options)
    picture, boxes, _ = demo_picture(
        model, image, score_classes=args.score_maps, class_names=args.classes,
        opacity=args.opacity, scale=args.scale, softmax=args.softmax)
    save_picture(picture, args.out)
    print(f'wrote {args.out}: {picture.shape[1]}x{picture.shape[0]} pixels, input + '
          f'prediction + {len(boxes) - 2} score map(s), each panel '
          f'{boxes[0].width}x{boxes[0].height}')


if __name__ == '__main__':
    run_tool(main)
