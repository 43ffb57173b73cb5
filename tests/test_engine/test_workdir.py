"""One training run per work dir (denseclip.engine.workdir) and where --resume may look."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from denseclip.clip import CheckpointError
from denseclip.engine.resume import find_resume_checkpoint
from denseclip.engine.workdir import (LOCK_NAME, WorkDirBusyError, holds_work_dir,
                                      lock_work_dir, unlock_work_dir)

HOLD = ('import sys, time\nfrom denseclip.engine.workdir import lock_work_dir\n'
        'lock_work_dir(sys.argv[1]); print("locked", flush=True); time.sleep(120)')


def test_the_lock_is_exclusive_between_processes_and_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info['pid'] == holder.pid and info['host'] == socket.gethostname()
        with pytest.raises(WorkDirBusyError, match=rf'PID {holder.pid} on host .*, started '
                           + re.escape(info['started'])):
            lock_work_dir(str(tmp_path))
        assert not holds_work_dir(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    lock_work_dir(str(tmp_path))  # the holder died: the operating system dropped its lock
    try:
        assert holds_work_dir(str(tmp_path))
        assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
        lock_work_dir(str(tmp_path))  # again in the same process: nothing happens
    finally:
        unlock_work_dir(str(tmp_path))
    assert not holds_work_dir(str(tmp_path))


def test_last_checkpoint_must_point_inside_the_work_dir(tmp_path):
    work_dir, other = tmp_path / 'run', tmp_path / 'other'
    work_dir.mkdir()
    other.mkdir()
    (other / 'iter_8.pth').write_bytes(b'x')
    (work_dir / 'last_checkpoint').write_text(str(other / 'iter_8.pth'))
    with pytest.raises(CheckpointError, match='outside the work dir.*holds no checkpoint'):
        find_resume_checkpoint(str(work_dir))
    (work_dir / 'last_checkpoint').write_text(str(work_dir / '..' / 'other' / 'iter_8.pth'))
    with pytest.raises(CheckpointError, match='outside the work dir'):
        find_resume_checkpoint(str(work_dir))
    os.symlink(other / 'iter_8.pth', work_dir / 'linked.pth')  # a link out is outside too
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'linked.pth'))
    with pytest.raises(CheckpointError, match='outside the work dir'):
        find_resume_checkpoint(str(work_dir))
