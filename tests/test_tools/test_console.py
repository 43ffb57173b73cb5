"""What the tools print: progress, the numbers and real warnings, none of the messages of
mmcv/mmseg/mmengine known to be harmless (``denseclip/engine/console.py``), no warning twice.

The tools run the quickstart config for two iterations on a small synthetic dataset; the
filters themselves are checked in-process in tests/test_engine/test_console.py.
"""
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from denseclip.datasets import generate_synthetic_ade20k

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
#: The messages the quickstart printed before they were dealt with, in their own words.
HARMLESS = (
    'Could not import OneDL',  # mmseg.datasets, mmseg.datasets.transforms (print)
    'Fail to import ``MultiScaleDeformableAttention``',  # mmcv.cnn.bricks.transformer
    '`reduce_zero_label` will be deprecated',  # mmseg's LoadAnnotations: config key
    'Default ``avg_non_ignore`` is False',  # mmseg's CrossEntropyLoss
    'The prefix is not set in metric class',  # mmengine's BaseMetric
    '"FileClient" will be deprecated',  # mmengine's CheckpointHook
    '"HardDiskBackend" is the alias',  # mmengine's FileClient
    'has been overridden after parameter value scheduler',  # the NaN guard's wrapped step
    'text_encoder.ln_final.weight is skipped since its requires_grad=False',  # frozen
    'The shape of value will convert from',  # mmengine's PixelData, from mmseg's TTA
)
#: A timestamped log line: the time is dropped before lines are compared.
TIMESTAMP = re.compile(r'^\d\d/\d\d \d\d:\d\d:\d\d - ')


def run_tool(*args: str, cwd: Path) -> str:
    """Runs a tool as the quickstart does; returns what it printed (stdout and stderr)."""
    env = {name: value for name, value in os.environ.items() if name != 'PYTHONWARNINGS'}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**env, 'OMP_NUM_THREADS': '1'})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def warning_lines(output: str) -> list[str]:
    """Lines of Python warnings and of WARNING log records, without their time stamps."""
    return [TIMESTAMP.sub('', line) for line in output.splitlines()
            if re.search(r'\w+Warning: | - WARNING - ', line)]


@pytest.fixture(scope='module')
def tool_outputs(tmp_path_factory) -> list[str]:
    """tools/train.py (two iterations, validation after the second) and tools/test.py --tta
    on its checkpoint: the quickstart's steps on a smaller dataset."""
    root = tmp_path_factory.mktemp('console')
    data_root = generate_synthetic_ade20k(root / 'data', num_train=8, num_val=2, image_size=64)
    data = [f'{split}_dataloader.dataset.data_root={data_root}'
            for split in ('train', 'val', 'test')]
    work_dir = root / 'work'
    train = run_tool('tools/train.py', str(CONFIG), '--work-dir', str(work_dir),
                     '--cfg-options', *data, 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                     'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
                     cwd=root)
    test = run_tool('tools/test.py', str(CONFIG), str(work_dir / 'iter_2.pth'), '--tta',
                    '--work-dir', str(root / 'test'), '--cfg-options', *data, cwd=root)
    return [train, test]


def test_tools_print_progress_and_numbers(tool_outputs):
    train, test = tool_outputs
    assert 'Iter(train) [2/2]' in train
    assert re.search(r'Iter\(val\) \[2/2\] .*mIoU: \d', train)
    assert re.search(r'Iter\(test\) \[2/2\] .*mIoU: \d', test)


@pytest.mark.parametrize('text', HARMLESS)
def test_tools_print_no_known_harmless_message(tool_outputs, text):
    assert [line for output in tool_outputs for line in output.splitlines() if text in line] == []


def test_tools_print_no_warning_twice(tool_outputs):
    counts = Counter(line for output in tool_outputs for line in warning_lines(output))
    assert [line for line, count in counts.items() if count > 1] == []


def test_warning_lines_finds_both_kinds():
    output = ('x.py:3: UserWarning: a\n  warnings.warn(\n'
              '12/01 15:17:27 - mmengine - WARNING - b\n12/01 15:17:27 - mmengine - INFO - c\n')
    assert warning_lines(output) == ['x.py:3: UserWarning: a', 'mmengine - WARNING - b']
