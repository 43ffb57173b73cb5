"""Check every sample of a config's datasets before a long job.

``python tools/check_dataset.py CONFIG [--num-workers N] [--cfg-options KEY=VALUE ...]``

Runs the checks that ``tools/train.py`` and ``tools/test.py`` make while they load samples
(folders, image/label pairs, decoding, label size, label values; ``denseclip.datasets.checks``)
over every sample of the train, val and test datasets, and prints for each dataset the number
of samples, the class histogram (pixels and label maps per class) and every problem found.
Exits with status 1 when there are problems, 0 otherwise. See docs/custom_dataset.md.
"""
import argparse
import os
import sys

from mmengine.config import DictAction
from mmengine.registry import init_default_scope

from denseclip.datasets import check_class_names, scan_loaders
from denseclip.engine.checks import check_keywords, check_numbers, check_option_keys, read_config
from denseclip.engine.cli import run_tool
from denseclip.engine.config import fill_class_names
from denseclip.models.derive import check_names_fit


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Check every sample of the datasets of a config and summarise them')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--num-workers', type=int, default=min(8, os.cpu_count() or 1),
        help='processes that load the samples (0: load them in this process)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs such as '
        'train_dataloader.dataset.data_root=DIR (no white space)')
    return parser.parse_args()


def report_progress(key: str, done: int, total: int) -> None:
    """A line on stderr at every tenth of a dataset of 100 samples or more, and at its end."""
    if done == total or (total >= 100 and done % (total // 10) == 0):
        print(f'{key}: {done}/{total} samples checked', file=sys.stderr, flush=True)


def main() -> int:
    """Scan the datasets, print the summary; returns the exit status."""
    args = parse_args()
    cfg = read_config(args.config)  # the config checks of every entry point
    if args.cfg_options is not None:
        check_option_keys(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    check_numbers(cfg)
    check_keywords(cfg)
    init_default_scope(cfg.get('default_scope', 'mmseg'))

    config_problems = []
    try:  # the class-name steps of prepare_config and the model, listed with the data's
        fill_class_names(cfg)
        check_class_names(cfg)
        model = cfg.get('model') or {}
        if model.get('class_names') and model.get('context_length'):
            check_names_fit(model['class_names'], model['context_length'])
    except (KeyError, TypeError, ValueError) as err:
        config_problems.append(f'config: {err}')
    reports = scan_loaders(cfg, args.num_workers, report_progress)
    for report in reports:
        print(report.summary())
    for problem in config_problems:
        print(problem)
    num_problems = len(config_problems) + sum(len(report.problems) for report in reports)
    samples = sum(report.samples for report in reports)
    scanned = sum(1 for report in reports if not report.same_as)
    found = (f'{num_problems} problem{"" if num_problems == 1 else "s"} (listed above)'
             if num_problems else 'no problems found')
    print(f'Checked {scanned} datasets, {samples} samples: {found}.')
    return 1 if num_problems else 0


if __name__ == '__main__':
    run_tool(main)
