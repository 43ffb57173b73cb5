"""The console messages of mmcv, mmseg and mmengine that are known to be harmless here.

Every entry gives the message (its start, or a pattern for the whole of it), the module that
emits it where Python's ``warnings`` can tell, and why it can be ignored in this project. The
filters match exactly these, so every other warning still reaches the console. The
import-time ones are dropped by ``import denseclip`` for the duration of its own import
(:func:`quiet_imports`); the run-time ones only where a tool asks for it:
:func:`ignore_known_warnings` before the runner is built (the model's loss warns when it is
built) and :class:`KnownLogRecords` on the runner's logger.
"""
import contextlib
import io
import logging
import re
import sys
import warnings
from collections.abc import Iterator

#: Python warnings issued while mmseg's packages are imported: (module, text, why harmless).
IMPORT_WARNINGS = (
    ('mmcv.cnn.bricks.transformer', 'Fail to import ``MultiScaleDeformableAttention``',
     'mmcv is installed without its compiled ops; no DenseCLIP model uses deformable '
     'attention'),
)
#: Lines that mmseg's packages ``print`` when imported: (module, text, why harmless).
IMPORT_PRINTS = (
    ('mmseg.datasets', 'Could not import OneDL',
     "mmseg's optional OneDL dataset and transform need the `onedl` package; the message is "
     'meant as a DEBUG log but printed by mmseg.datasets and mmseg.datasets.transforms'),
)
#: Python warnings issued while a model is built or run: (module, text, why harmless).
RUN_WARNINGS = (
    ('mmseg.models.losses.cross_entropy_loss', 'Default ``avg_non_ignore`` is False',
     "the configs keep mmseg 0.x's averaging over all pixels, with which the released models "
     'were trained; the warning is issued whatever the config says'),
    ('mmengine.structures.pixel_data', 'The shape of value will convert from',
     "mmseg's SegTTAModel stores 2-D predictions, which PixelData gives their channel axis; "
     'one line per image size (hundreds on ADE20K) otherwise'),
    ('mmseg.models.builder', '``build_loss`` would be deprecated soon',
     "upstream mmseg 1.2.2's own decode heads build their losses with its deprecated "
     'build_loss (once per head); nothing in a config can avoid it'),
)
#: Records of mmengine's logger (``print_log``) during a run: (pattern, why harmless); the
#: pattern must match the whole message.
LOG_RECORDS = (
    (r'The prefix is not set in metric class IoUMetric\.',
     "mmseg's IoUMetric has no default prefix; metrics keep the plain names (mIoU) that the "
     'logs, checkpoints and tools use'),
    (r'"FileClient" will be deprecated in future\. .*',
     "mmengine's own CheckpointHook still creates a FileClient; no config key avoids it"),
    (r'"HardDiskBackend" is the alias of "LocalBackend" .*',
     'the backend of that FileClient (see above)'),
    (r'text_encoder\.\S+ is skipped since its requires_grad=False',
     'DenseCLIP freezes its text encoder by design (one line per tensor, ~150 for CLIP\'s); '
     'any other frozen parameter is still reported'),
)


def _ignore(entries: tuple) -> None:
    """``warnings.filterwarnings('ignore')`` for exactly these (module, text) pairs."""
    for module, text, _ in entries:
        warnings.filterwarnings('ignore', message=re.escape(text), category=UserWarning,
                                module=re.escape(module) + '$')


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
    """Drops :data:`IMPORT_WARNINGS` and :data:`IMPORT_PRINTS` while the block runs.

    Warnings filters are restored afterwards and every other line printed in the block is
    written to ``sys.stdout`` when it ends, so nothing else is hidden or lost. Use it around
    the first import of mmseg's packages (``import denseclip`` does).
    """
    printed = io.StringIO()
    with warnings.catch_warnings():
        _ignore(IMPORT_WARNINGS)
        try:
            with contextlib.redirect_stdout(printed):
                yield
        finally:
            known = {text for _, text, _ in IMPORT_PRINTS}
            sys.stdout.write(''.join(line for line in printed.getvalue().splitlines(True)
                                     if line.rstrip('\n') not in known))


def ignore_known_warnings() -> None:
    """Ignores :data:`RUN_WARNINGS` (and :data:`IMPORT_WARNINGS`) in this process from now on.

    The tools call it before they build the runner; a library import never does.
    """
    _ignore(IMPORT_WARNINGS + RUN_WARNINGS)


class KnownLogRecords(logging.Filter):
    """Drops the records of :data:`LOG_RECORDS` from the logger it is added to:
    ``runner.logger.addFilter(KnownLogRecords())``."""

    patterns = [re.compile(pattern, re.DOTALL) for pattern, _ in LOG_RECORDS]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.fullmatch(message) for pattern in self.patterns)
