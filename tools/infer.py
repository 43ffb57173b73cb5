"""Segment every image of a folder, a glob pattern or a video; three files per image.

    python tools/infer.py CONFIG CHECKPOINT INPUT --out DIR [--batch-size N] [--device cpu]
        [--classes "a,b,c"] [--opacity 0.5] [--overwrite] [--cfg-options KEY=VALUE ...]
    python tools/infer.py CONFIG CHECKPOINT INPUT --out DIR --backend onnxruntime --onnx FILE

INPUT: a folder (searched recursively for image files), a glob pattern in quotes
('data/**/*.jpg'), one image, or a video (its frames are named frame_000001, ...). For an image
NAME (its path relative to the folder, or to the pattern's fixed part, without the extension)
DIR receives NAME.png (the labels as a palette PNG in the dataset's colours), NAME_overlay.jpg
(the image blended with them) and NAME.json (the share of the image of each class present, the
image size, and the config, checkpoint and backend used).

Images whose three files exist are skipped: run the same command again to finish a killed run
(--overwrite redoes them). Images that cannot be read are named, skipped and listed at the end,
and the exit status is 1. The progress bar (tqdm) shows images per second.

--backend onnxruntime runs an exported model (--onnx FILE); its classes and palette come from
the file, CONFIG and CHECKPOINT are only recorded in the JSON files.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from denseclip.deploy.folder import list_inputs, segment_inputs
from denseclip.deploy.predictors import ort_predictor, torch_predictor
from denseclip.engine import ignore_known_warnings
from denseclip.engine.checks import check_writable
from denseclip.engine.cli import class_list, run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='folder, glob pattern (quoted), image or video')
    parser.add_argument('--out', required=True, help='folder for the outputs')
    parser.add_argument('--backend', choices=('torch', 'onnxruntime'), default='torch',
                        help='run the PyTorch model, or an ONNX export with ONNX Runtime')
    parser.add_argument('--onnx', help='the ONNX file (--backend onnxruntime)')
    parser.add_argument(
        '--classes', type=class_list,
        metavar='"a,b,c"',
        help='class names in place of model.class_names: any names for a model whose classes '
        'are free (ZeroShotCLIPSegmentor); for DenseCLIP exactly as many as it was trained for')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images of the same size per forward pass (torch backend)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda:0' (torch backend)")
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='opacity of the class colours in the overlay, in (0, 1]')
    parser.add_argument('--overwrite', action='store_true',
                        help='redo images whose outputs exist')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs (torch backend)')
    args = parser.parse_args()
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be a positive integer, got {args.batch_size}')
    if args.backend == 'onnxruntime':
        if not args.onnx:
            parser.error('--backend onnxruntime needs --onnx FILE')
        given = [option for option, value in (
            ('--classes', args.classes), ('--cfg-options', args.cfg_options),
            ('--batch-size', args.batch_size != 1), ('--device', args.device != 'cpu'))
            if value]
        if given:
            parser.error(f'{", ".join(given)}: only for --backend torch (an ONNX file holds '
                         'its classes and runs one image at a time on the CPU)')
    elif args.onnx:
        parser.error('--onnx FILE is read by --backend onnxruntime only')
    return args


def main() -> int:
    args = parse_args()
    ignore_known_warnings()  # harmless mmcv/mmseg warnings, see denseclip/engine/console.py
    inputs = list_inputs(args.input, exclude=args.out)
    check_writable(args.out, '--out')
    if args.backend == 'torch':
        predictor = torch_predictor(args.config, args.checkpoint, args.device, args.classes,
                                    args.cfg_options, args.batch_size)
    else:
        predictor = ort_predictor(args.onnx)
    info = dict(config=osp.abspath(args.config), checkpoint=osp.abspath(args.checkpoint),
                backend=args.backend)
    if args.onnx:
        info['onnx'] = osp.abspath(args.onnx)
    summary = segment_inputs(predictor, inputs, args.out, opacity=args.opacity,
                             overwrite=args.overwrite, info=info,
                             progress=not args.no_progress)
    print(f'{args.out}: wrote {len(summary.written)}, skipped {len(summary.skipped)}, failed '
          f'{len(summary.failed)}' + (' (skipped: outputs exist; --overwrite redoes them)'
                                      if summary.skipped else ''))
    if summary.failed:
        print(f'{len(summary.failed)} image(s) could not be read:')
        for source, reason in summary.failed:
            print(f'  {source}: {reason}')
        return 1
    return 0


if __name__ == '__main__':
    run_tool(main)
