"""tools/clip_quickstart.py through its CLI on a tiny setting: a few scenes, one held-out image
per class and two training iterations. It must run every step (data, untrained baseline,
training, both zero-shot evaluations) and print the table with its numbers."""
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # tools as subprocesses: tens of seconds

ROOT = Path(__file__).resolve().parents[2]
#: The table's rows: a label, then the chance, untrained and trained numbers.
ROW = r'\s+{}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\n'


def test_tiny_run_prints_the_table(tmp_path, run_tool):
    work_dir, data_root = tmp_path / 'work', tmp_path / 'data'
    proc = run_tool('clip_quickstart.py', '--work-dir', work_dir, '--data-root', data_root,
                    '--iters', 2, '--scenes', 4, 2, '--per-class', 1, 1, cwd=ROOT)
    assert proc.returncode == 0, proc.output[-3000:]
    rows = {name: [float(value) for value in re.search(ROW.format(re.escape(label)),
                                                        proc.stdout).groups()]
            for name, label in (('top1', 'classification top-1 (%)'),
                                ('top5', 'classification top-5 (%)'),
                                ('miou', 'segmentation mIoU (%)'))}
    assert rows['top1'][0] == 12.5  # 8 classes
    assert rows['top5'][0] == 62.5
    assert 0 < rows['miou'][0] < 100 / 8  # random labels score below 1 / K
    assert all(0 <= value <= 100 for row in rows.values() for value in row)
    # the table's numbers are those the tools wrote
    for stage, column in (('untrained', 1), ('trained', 2)):
        summary = json.loads((work_dir / f'zero_shot_{stage}' / 'summary.json').read_text())
        assert summary['num_images'] == 8
        assert round(100 * summary['top1'], 2) == rows['top1'][column]
        assert round(100 * summary['top5'], 2) == rows['top5'][column]
    assert (work_dir / 'iter_2.pth').is_file() and (work_dir / 'untrained.pth').is_file()
    # every step is shown as the command that a user would type
    for tool in ('make_synthetic_data.py', 'zero_shot.py', 'test.py', 'train.py'):
        assert f'+ python tools/{tool}' in proc.stdout


def test_bad_iteration_count_is_refused(tmp_path, run_tool):
    proc = run_tool('clip_quickstart.py', '--iters', 1, '--work-dir', tmp_path, cwd=ROOT)
    assert proc.returncode == 2
    assert '--iters must be at least 2, got 1' in proc.output
