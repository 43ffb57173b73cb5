"""Convert checkpoints offline, and verify the result.

    # OpenAI CLIP archive (TorchScript) -> plain weights, so TorchScript is never loaded again
    python tools/convert_checkpoint.py clip pretrained/RN50.pt pretrained/RN50.safetensors
    python tools/convert_checkpoint.py clip pretrained/RN50.pt pretrained/RN50.pth

    # released DenseCLIP checkpoint (mmseg 0.x) -> this project's format
    python tools/convert_checkpoint.py denseclip denseclip_fpn_res50.pth \\
        work_dirs/denseclip_r50_converted.pth \\
        --config configs/denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py

`clip` keeps every key and value (checked after writing); `denseclip.clip.load` reads the .pth
output (``torch.load(weights_only=True)``); the .safetensors output is read with
``safetensors.torch.load_file`` (then ``denseclip.clip.build_model``). `denseclip` strips
wrapper prefixes, turns meta CLASSES/PALETTE into dataset_meta, drops the optimizer state and
other training state, reports every renamed key and dropped entry (the released names are this
project's: normally "no renaming needed"), writes tensors and plain values only, and checks that
the result loads into the model of --config with no missing or unexpected key.
"""
import argparse

from denseclip.apis import init_model
from denseclip.clip.convert import convert_clip_file, convert_denseclip_file
from denseclip.engine import ignore_known_warnings
from denseclip.engine.checks import check_output_file
from denseclip.engine.cli import run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest='kind', required=True)
    clip = kinds.add_parser('clip', help='OpenAI CLIP archive -> .safetensors or .pth')
    clip.add_argument('src', help='CLIP archive (RN50.pt, ViT-B-16.pt, ...) or state dict')
    clip.add_argument('dst', help='output file: .safetensors, else a torch.save state dict')
    dense = kinds.add_parser('denseclip', help='released DenseCLIP checkpoint -> this format')
    dense.add_argument('src', help='released (mmseg 0.x) checkpoint')
    dense.add_argument('dst', help='output .pth')
    dense.add_argument('--config', required=True,
                       help='config of the same model: the result must load into it')
    dense.add_argument('--trust-pickle', action='store_true',
                       help='load a source holding Python objects beyond tensors and plain '
                       'values (can run code from the file: trusted sources only)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    check_output_file(args.dst, 'the output file')
    ignore_known_warnings()  # harmless mmcv/mmseg warnings, see denseclip/engine/console.py
    if args.kind == 'clip':
        report = convert_clip_file(args.src, args.dst)
        verified = 'identical keys and values, loads as a CLIP model'
    else:
        model = init_model(args.config)  # random weights: only the keys and shapes matter
        report = convert_denseclip_file(args.src, args.dst, model, args.trust_pickle)
        verified = (f'loads with weights_only=True into the model of {args.config} with no '
                    'missing or unexpected keys')
    print('\n'.join(report.lines()))
    print(f'wrote {args.dst}: {verified}')


if __name__ == '__main__':
    run_tool(main)
