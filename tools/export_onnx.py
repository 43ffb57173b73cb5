"""Export a trained segmentor to ONNX, for inference with ONNX Runtime only.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx [--shape H W]
        [--dynamic-shape] [--opset N] [--cfg-options key=value ...]

The graph maps normalised images [N, 3, H, W] to their logits [N, K, H, W] (backbone, text
branch after the text encoder, score map, neck, head, resize to the input). DenseCLIP's class
embeddings do not depend on the image: they are computed here and stored as constants (the text
encoder is not in the file). Pre-model prompting makes them depend on the image and is refused.
The batch size is free; H x W is --shape (default: the config's slide crop) unless
--dynamic-shape. Class names, palette, normalisation and the test resize / whole-or-slide
settings are stored in the file: denseclip.deploy.ort.OrtSegmentor needs nothing else.
Needs the deploy extra: pip install -e .[deploy].
"""
import argparse
import contextlib
import sys

from mmengine.config import DictAction


with contextlib.redirect_stdout(sys.stderr):  # mmseg prints import notes on stdout
    from denseclip.deploy.export import export_checkpoint
    from denseclip.engine import ignore_known_warnings
    from denseclip.engine.checks import check_output_file
    from denseclip.engine.cli import run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='.onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: model.test_cfg.crop_size); with '
                        '--dynamic-shape, only the size traced')
    parser.add_argument('--dynamic-shape', action='store_true',
                        help='accept any input size (needed for whole inference of resized '
                        'images)')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    check_output_file(args.out, '--out')  # before a minutes-long export
    ignore_known_warnings()
    with contextlib.redirect_stdout(sys.stderr):
        result = export_checkpoint(args.config, args.checkpoint, args.out, args.shape,
                                   args.dynamic_shape, args.opset, args.cfg_options)
    size = 'any size' if result['dynamic_shape'] else 'x'.join(map(str, result['shape']))
    print(f"wrote {result['out']}: {result['num_classes']} classes, input {size}, "
          f"{result['size_mb']:.1f} MiB, exported in {result['seconds']:.1f} s")


if __name__ == '__main__':
    run_tool(main)
