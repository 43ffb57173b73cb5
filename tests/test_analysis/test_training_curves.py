"""Training curves from mmengine's JSON logs (``denseclip.analysis.training_curves``): a resumed
run continues the curves, and missing logs are named (a real run's log:
tests/test_tools/test_plot_logs.py)."""
import json

import pytest

from denseclip.analysis.training_curves import find_json_logs, plot_curves, read_curves


def test_resumed_runs_continue_the_curves(tmp_path):
    for run, steps in (('20240101_000000', (1, 2, 3)), ('20240102_000000', (3, 4))):
        (tmp_path / run / 'vis_data').mkdir(parents=True)
        lines = [json.dumps(dict(lr=0.1, loss=float(step) + (run == '20240102_000000'), step=step))
                 for step in steps]
        lines.append(json.dumps(dict(mIoU=10.0 * len(steps), step=steps[-1])))
        (tmp_path / run / 'vis_data' / f'{run}.json').write_text('\n'.join(lines) + '\n')
    (tmp_path / 'test_ss' / '20240103_000000' / 'vis_data').mkdir(parents=True)  # not a run
    curves = read_curves(find_json_logs(tmp_path))
    assert curves.losses['loss'] == ([1, 2, 3, 4], [1.0, 2.0, 4.0, 5.0])  # later run wins
    assert curves.metrics['mIoU'] == ([3, 4], [30.0, 20.0])
    plot_curves(curves, tmp_path / 'curves.png')
    assert (tmp_path / 'curves.png').is_file()


def test_missing_logs_say_where_they_are_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match='vis_data'):
        find_json_logs(tmp_path)
