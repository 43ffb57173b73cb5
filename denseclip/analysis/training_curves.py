"""Training curves from mmengine's JSON logs (``WORK_DIR/TIMESTAMP/vis_data/TIMESTAMP.json``).

mmengine's ``LoggerHook`` writes one JSON object a line through ``LocalVisBackend``: training
lines carry ``lr``, the loss terms (``loss``, ``decode.loss_ce``, ``identity.loss_ce``, ...)
and ``step`` (the iteration); validation lines carry the metrics (``mIoU``, ``mAcc``,
``aAcc``) and the ``step`` they were measured at.
"""
import json
import os
from pathlib import Path
from typing import NamedTuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Series = dict[str, tuple[list[int], list[float]]]
#: Keys of a log line that are bookkeeping, not curves.
NOT_CURVES = ('step', 'iter', 'epoch', 'time', 'data_time', 'memory', 'lr', 'base_lr')
VAL_METRICS = ('mIoU', 'mAcc', 'aAcc', 'mDice', 'mFscore')


class Curves(NamedTuple):
    """Loss terms and validation metrics, each ``key -> (steps, values)`` in step order."""
    losses: Series
    metrics: Series


def find_json_logs(work_dir: str | os.PathLike) -> list[Path]:
    """The JSON logs of the runs in ``work_dir`` (or the file itself), oldest run first.

    Only runs directly under ``work_dir`` are read (``WORK_DIR/TIMESTAMP/vis_data``), not
    those of evaluations written into sub-folders of it.
    """
    path = Path(work_dir)
    if path.is_file():
        return [path]
    logs = []
    for run in sorted(child for child in path.glob('*/vis_data') if child.is_dir()):
        own = run / f'{run.parent.name}.json'  # LoggerHook's log of this run
        if own.is_file():
            logs.append(own)
        elif (run / 'scalars.json').is_file():
            logs.append(run / 'scalars.json')
    if not logs:
        raise FileNotFoundError(f'no JSON logs under {path}/*/vis_data: train with the '
                                'LocalVisBackend of configs/_base_/default_runtime.py')
    return logs


def read_curves(logs: list[Path]) -> Curves:
    """Reads the logs in order; a step logged again (a resumed run) keeps its latest value."""
    losses: dict[str, dict[int, float]] = {}
    metrics: dict[str, dict[int, float]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            step = int(record.get('step', record.get('iter', 0)))
            if 'lr' in record:  # a training line
                for key, value in record.items():
                    if 'loss' in key and isinstance(value, (int, float)):
                        losses.setdefault(key, {})[step] = float(value)
            else:
                for key in VAL_METRICS:
                    if isinstance(record.get(key), (int, float)):
                        metrics.setdefault(key, {})[step] = float(record[key])

    def ordered(series: dict[str, dict[int, float]]) -> Series:
        return {key: (sorted(values), [values[step] for step in sorted(values)])
                for key, values in series.items()}

    return Curves(ordered(losses), ordered(metrics))


def plot_curves(curves: Curves, out: str | os.PathLike, title: str = '') -> None:
    """Draws the loss terms (left) and the validation metrics (right) into ``out``."""
    figure = Figure(figsize=(11, 4), dpi=100, facecolor='white')
    loss_axes, metric_axes = figure.subplots(1, 2)
    for key, (steps, values) in sorted(curves.losses.items(), key=lambda item: item[0] != 'loss'):
        loss_axes.plot(steps, values, label=key, linewidth=2 if key == 'loss' else 1.2)
    loss_axes.set(title='training losses', xlabel='iteration', ylabel='loss')
    for key, (steps, values) in curves.metrics.items():
        metric_axes.plot(steps, values, marker='o', label=key,
                         linewidth=2 if key == 'mIoU' else 1, linestyle='-' if key == 'mIoU'
                         else '--')
        if key == 'mIoU':
            metric_axes.annotate(f'{values[-1]:.1f}', (steps[-1], values[-1]),
                                 textcoords='offset points', xytext=(0, 6), ha='center')
    metric_axes.set(title='validation', xlabel='iteration', ylabel='%')
    if not curves.metrics:
        metric_axes.text(0.5, 0.5, 'no validation in the logs', ha='center', va='center',
                         transform=metric_axes.transAxes)
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(os.fspath(out))
