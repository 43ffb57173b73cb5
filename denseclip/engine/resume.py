"""Choosing the checkpoint that ``tools/train.py --resume`` continues from."""
import glob
import logging
import math
import os.path as osp
import re
import zipfile
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from denseclip.clip import CheckpointError

from .safe_load import weights_only_load

#: Names of CheckpointHook's periodic checkpoints (``best_*`` ones are not resumed from).
STEP = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (missing, truncated, corrupt), or None if it can.

    Zip-format checkpoints (``torch.save``'s default) are checked member by member against
    their CRCs without unpickling; other files are loaded.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            return f'member {damaged} is corrupt' if damaged else None
        weights_only_load(path, map_location='cpu')
    except (OSError, zipfile.BadZipFile, CheckpointError) as err:
        return str(err)
    return None


def _inside(path: str, folder: str) -> bool:
    folder = osp.realpath(folder)
    return osp.commonpath([osp.realpath(path), folder]) == folder


def last_checkpoint(work_dir: str) -> Optional[str]:
    """Where ``work_dir/last_checkpoint`` points, which must be inside ``work_dir``.

    A pointer elsewhere (a work dir copied from another run or another machine, a file
    edited by hand) would resume another run's state without a word, so it is refused.

    Raises:
        CheckpointError: the pointer names a file outside ``work_dir``.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        last = f.read().strip() or None
    if last is None:
        return None
    last = osp.join(work_dir, last)  # a relative pointer is relative to the work dir
    if not _inside(last, work_dir):
        own = sorted(glob.glob(osp.join(glob.escape(work_dir), '*.pth')), key=osp.getmtime)
        instead = (f'; this work dir\'s own newest checkpoint is {own[-1]}' if own else
                   '; this work dir holds no checkpoint')
        raise CheckpointError(
            f'{pointer} points to {last}, outside the work dir {work_dir!r}: --resume would '
            f'continue another run{instead}. To continue from that file on purpose, name it: '
            f'tools/train.py CONFIG --resume {last}; otherwise delete {pointer}.')
    return last


def _candidates(work_dir: str) -> list[str]:
    """Checkpoints in ``work_dir``, newest first; the target of ``last_checkpoint`` included."""
    paths = glob.glob(osp.join(glob.escape(work_dir), '*.pth'))
    last = last_checkpoint(work_dir)

    def step(path: str) -> float:
        match = STEP.fullmatch(osp.basename(path))
        return float(match.group(1)) if match else (math.inf if path == last else -1)

    ordered = sorted({*paths, *([last] if last else [])}, key=step, reverse=True)
    return [path for path in ordered if step(path) >= 0]


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest intact checkpoint of a run, or None when the run has not saved any.

    Newest means the highest iteration (epoch) in the file name, which is ``last_checkpoint``'s
    target unless the job was killed between writing a checkpoint and updating the pointer.
    Damaged files are skipped with a warning that names them.

    Raises:
        CheckpointError: there are checkpoints, but none of them can be read, or
            ``last_checkpoint`` points outside the work dir (:func:`last_checkpoint`).
    """
    candidates = _candidates(work_dir)
    problems = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            for bad, why in problems:
                print_log(f'skipping checkpoint {bad}: {why}', logger='current',
                          level=logging.WARNING)
            return path
        problems.append((path, problem))
    if problems:
        raise CheckpointError(
            f'cannot resume: none of the checkpoints in {work_dir!r} can be read: ' +
            '; '.join(f'{path} ({why})' for path, why in problems) +
            '. Restore one from a backup, or start again without --resume.')
    return None


def configure_resume(cfg: Config, resume: str) -> None:
    """Sets ``cfg`` up to resume from ``resume`` (a path, or ``'auto'``: the newest intact
    checkpoint in ``cfg.work_dir``; a run without checkpoints starts from scratch).

    The random seed is taken from the checkpoint: mmengine builds the training sampler before
    it reads the checkpoint, so a seed chosen at random for this process (the default,
    ``randomness.seed=None``) would draw another sample order than the killed run did.
    """
    if resume == 'auto':
        path = find_resume_checkpoint(cfg.work_dir)
        if path is None:
            print_log(f'--resume: no checkpoint in {cfg.work_dir}, starting from scratch',
                      logger='current')
            cfg.resume = False
            return
    else:
        path = resume
        problem = checkpoint_problem(path)
        if problem is not None:
            raise CheckpointError(f'cannot resume from --resume {path!r}: {problem}')
    print_log(f'--resume: continuing from {path}', logger='current')
    cfg.resume = True
    cfg.load_from = path
    seed = weights_only_load(path, map_location='cpu', mmap=zipfile.is_zipfile(path),
                             finite=False).get(
        'meta', {}).get('seed')
    randomness = dict(cfg.get('randomness') or {})
    if seed is not None and randomness.get('seed') != seed:
        if randomness.get('seed') is not None:
            print_log(f'--resume: randomness.seed={randomness["seed"]} replaced by the seed '
                      f'of the checkpoint, {seed}', logger='current',
                      level=logging.WARNING)
        cfg.randomness = dict(randomness, seed=seed)
