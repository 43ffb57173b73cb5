"""The console filters of ``denseclip.engine.console``, in-process: checked against the real
sources of the messages (mmseg's loss, mmengine's metric, file client and optimiser
constructor), and shown to let everything else through. What the tools print with them is
checked in tests/test_tools/test_console.py.
"""
import logging
import warnings

import pytest
import torch
from mmengine.fileio import FileClient
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.models.losses import CrossEntropyLoss
from torch import nn

from denseclip.engine import KnownLogRecords, ignore_known_warnings, quiet_imports


@pytest.fixture
def recorded_warnings():
    """Every warning issued in the test (none is shown once only), known ones filtered."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ignore_known_warnings()
        yield caught


def test_known_warnings_are_ignored_at_their_source(recorded_warnings):
    CrossEntropyLoss()  # avg_non_ignore=False, as the configs keep it
    PixelData(data=torch.zeros(4, 5))  # a 2-D map, as mmseg's SegTTAModel stores it
    assert [str(w.message) for w in recorded_warnings] == []


def test_other_warnings_still_show(recorded_warnings):
    known = 'Default ``avg_non_ignore`` is False, if you would like to ...'
    warnings.warn_explicit(known, UserWarning, 'elsewhere.py', 1, module='denseclip.models')
    warnings.warn_explicit('Something else', UserWarning, 'cross_entropy_loss.py', 1,
                           module='mmseg.models.losses.cross_entropy_loss')
    warnings.warn_explicit(known, DeprecationWarning, 'cross_entropy_loss.py', 1,
                           module='mmseg.models.losses.cross_entropy_loss')
    assert [str(w.message) for w in recorded_warnings] == [known, 'Something else', known]


def test_quiet_imports_restores_the_warnings_filters():
    before = list(warnings.filters)
    with quiet_imports():
        assert warnings.filters != before
    assert warnings.filters == before


class Records(logging.Handler):
    """Keeps the messages of the WARNING records that pass the logger's filters."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def logged():
    """Messages reaching the handlers of a fresh, current mmengine logger with the filter."""
    logger = MMLogger.get_instance(f'test_console_{id(object())}', log_level='WARNING')
    logger.addFilter(KnownLogRecords())
    records = Records()
    logger.addHandler(records)
    yield records.messages
    logger.removeHandler(records)


class Segmentor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.text_encoder = nn.Module()
        self.text_encoder.ln_final = nn.LayerNorm(2)
        self.text_encoder.requires_grad_(False)


def test_known_log_records_are_dropped(logged, tmp_path):
    IoUMetric(iou_metrics=['mIoU'])
    FileClient.infer_client(None, str(tmp_path))
    DefaultOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4)),
        dict(norm_decay_mult=0.))(Segmentor())
    assert logged == []


def test_other_log_records_still_show(logged):
    model = Segmentor()
    model.backbone.bias.requires_grad_(False)  # frozen by mistake: still reported
    DefaultOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4)),
        dict(norm_decay_mult=0.))(model)
    logger = MMLogger.get_current_instance()
    logger.warning('The prefix is not set in metric class MyMetric.')
    logger.warning('The prefix is not set in metric class IoUMetric. And something else.')
    assert logged == ['backbone.bias is skipped since its requires_grad=False',
                      'The prefix is not set in metric class MyMetric.',
                      'The prefix is not set in metric class IoUMetric. And something else.']
