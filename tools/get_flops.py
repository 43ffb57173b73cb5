"""FLOPs and parameters of a config's model, as the DenseCLIP paper counted them (fvcore).

``python tools/get_flops.py CONFIG [--shape 1024 [1024]] [--json] [--legacy-fvcore]``

Runs on the CPU with random weights and no dataset (class names come from the config or its
dataset's metainfo). The conventions (what is counted, what is left out) are printed with the
numbers and explained in docs/flops.md; the counting itself is ``denseclip.analysis.flops``.
"""
import argparse
import contextlib
import json
import sys

from mmengine.config import DictAction


# mmseg prints notes on stdout when imported; --json must print nothing but the JSON object
with contextlib.redirect_stdout(sys.stderr):
    from denseclip.analysis.flops import count_flops
    from denseclip.engine.cli import run_tool
    from denseclip.engine.config import build_segmentor, prepare_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Count the FLOPs and parameters of a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs='+', default=[1024, 1024],
                        help='input size: H [W] (default 1024 1024, as in the paper)')
    parser.add_argument('--json', action='store_true', help='print one JSON object only')
    parser.add_argument('--legacy-fvcore', action='store_true',
                        help='count transposed convolutions over their output positions, as '
                        "the fvcore behind the paper's ViT-B numbers did (4x too many)")
    parser.add_argument('--count-elementwise', action='store_true',
                        help='also count element-wise ops, activations, poolings and softmax '
                        '(1 FLOP per element; free by default, as in fvcore and the paper)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    args = parser.parse_args()
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    return args


def print_report(config: str, report: dict) -> None:
    height, width = report['input_shape'][1:]
    print(f'{config}\ninput 1x3x{height}x{width}')
    print(f"{'part':<20}{'GFLOPs':>10}{'params (M)':>12}")
    flops, params = report['per_module_gflops'], report['per_module_params_m']
    for name in [*flops, *(name for name in params if name not in flops)]:
        note = '  (excluded)' if name in report['excluded'] else ''
        gflops = f'{flops[name]:.2f}' if name in flops else '-'
        million = f'{params[name]:.2f}' if name in params else '-'
        print(f'{name:<20}{gflops:>10}{million:>12}{note}')
    digits = 1 if report['gflops'] >= 10 else 4  # the paper's precision for full-size models
    print(f"\nGFLOPs: {report['gflops']:.{digits}f}   "
          f"(traced: {report['gflops_traced']:.{digits}f})")
    print(f"Params: {report['params_m']:.1f} M   (total {report['params_m_total']:.1f} M, "
          f"trainable {report['params_m_trainable']:.1f} M)")
    print('\nConventions:')
    for line in report['conventions']:
        print(f'- {line}')


def main() -> None:
    args = parse_args()
    size = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    with contextlib.redirect_stdout(sys.stderr):
        cfg = prepare_config(args.config, args.cfg_options, device='cpu')
        model = build_segmentor(cfg)
        report = count_flops(model, size, legacy_fvcore=args.legacy_fvcore,
                             count_elementwise=args.count_elementwise).to_dict()
    conventions = list(report['conventions'])
    if report['legacy_fvcore']:
        conventions.append('--legacy-fvcore: transposed convolutions counted over their '
                           'output positions (as the fvcore behind the paper\'s ViT-B rows)')
    if report['count_elementwise']:
        conventions[2] = ('--count-elementwise: element-wise ops, activations and softmax '
                          'count 1 per output element, poolings and reductions 1 per input '
                          'element')
    report['conventions'] = conventions
    report['config'] = args.config
    if args.json:
        print(json.dumps(report))
    else:
        print_report(args.config, report)


if __name__ == '__main__':
    run_tool(main)
