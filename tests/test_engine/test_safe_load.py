"""Every checkpoint mmengine loads goes through ``torch.load(weights_only=True)``.

mmengine's own loader retries with ``weights_only=False`` when the safe load fails;
``denseclip.engine.safe_load.install()``, which the tools call (``import denseclip`` does not),
closes that for local paths (``load_from``, ``--resume``, ``tools/test.py``) and for the remote
schemes. Resume checkpoints (numpy values, ``HistoryBuffer`` message hubs,
optimiser state) still load; TorchScript archives load through ``torch.jit.load``; a pickle
that would run code is refused, and the code does not run.
"""
import os
import pickle
import re
import runpy
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner import load_checkpoint
from torch import nn

from denseclip.clip import CheckpointError
from denseclip.engine import safe_load, weights_only_load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module', autouse=True)
def installed():
    """What the tools do before they load anything."""
    safe_load.install()


class Exploit:
    """Unpickling this creates a directory: code chosen by the file's author."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


class GetattrExploit:
    """Reaches a private attribute of an allowed class through ``getattr``."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def resume_checkpoint(model: nn.Module) -> dict:
    """What ``Runner.save_checkpoint`` writes: meta, weights, message hub, optimiser, schedulers."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    hub = MessageHub.get_instance('test_safe_load')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(1e-3))
    hub.update_info('iter', 7)
    hub.update_info('eta', np.float64(12.5))
    return dict(meta=dict(iter=7, epoch=0, seed=3, cfg='model = dict()',
                          dataset_meta=dict(classes=('wall', 'sky'), palette=[[1, 2, 3]])),
                state_dict=model.state_dict(), message_hub=hub.state_dict(),
                optimizer=optimizer.state_dict(),
                param_schedulers=[dict(last_step=7, base_values=[1e-3], by_epoch=False)])


def test_resume_checkpoint_loads_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / 'iter_7.pth'
    torch.save(resume_checkpoint(model), path)
    with zipfile.ZipFile(path) as archive:  # what plain weights_only=True would refuse:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    assert b'HistoryBuffer' in pickled and b'getattr' in pickled and b'numpy' in pickled

    loaded = mmengine_checkpoint._load_checkpoint(str(path), map_location='cpu')
    assert loaded['meta']['seed'] == 3
    torch.testing.assert_close(loaded['state_dict']['weight'], model.weight, rtol=0, atol=0)
    buffer = loaded['message_hub']['log_scalars']['train/lr']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 1e-3
    assert buffer.statistics('mean') == 1e-3  # the statistics methods came through getattr
    assert loaded['message_hub']['runtime_info']['eta'] == 12.5
    assert loaded['optimizer']['state'][0]['step'] == 1
    MessageHub.get_instance('test_safe_load_restore').load_state_dict(loaded['message_hub'])


def test_import_changes_no_third_party_behaviour():
    """``import denseclip`` registers modules only: mmengine's loaders, torch's safe globals and
    the warnings filters are as before, and no plotting library is imported."""
    code = (
        'import sys, warnings, torch\n'
        'from mmengine.runner import checkpoint as c\n'
        'state = lambda: (c.CheckpointLoader._get_checkpoint_loader("/x.pth"), c.load_url,\n'
        '    getattr(c, "_safe_torch_load", None), c.torch,\n'
        '    list(torch.serialization.get_safe_globals()), list(warnings.filters))\n'
        'before = state()\n'
        'import denseclip\n'
        'after = state()\n'
        'assert before == after, (before, after)\n'
        'assert "matplotlib" not in sys.modules\n'
        'from denseclip.engine import safe_load\n'
        'safe_load.install()\n'
        'assert c.CheckpointLoader._get_checkpoint_loader("/x.pth") is not before[0]\n'
        'assert list(torch.serialization.get_safe_globals()) == before[4]\n'
        'print("ok")\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]


def remote_scheme_loader():
    """What mmengine's remote schemes (pavi, s3, ...) call to read a file: a private
    ``_safe_torch_load`` in OneDL's mmengine, ``torch.load`` of its module in upstream 0.10.x."""
    return getattr(mmengine_checkpoint, '_safe_torch_load', None) or mmengine_checkpoint.torch.load


def remote_scheme_load(path: str):
    return remote_scheme_loader()(path, map_location='cpu')


def test_every_mmengine_path_uses_the_weights_only_loader():
    loader = mmengine_checkpoint.CheckpointLoader._get_checkpoint_loader('/some/iter_1.pth')
    assert loader.__name__ == 'load_from_local_weights_only'
    assert mmengine_checkpoint.load_url.__module__ == 'denseclip.engine.safe_load'
    assert remote_scheme_loader().__module__ == 'denseclip.engine.safe_load'  # no fallback


def test_urls_are_read_weights_only_and_never_downloaded(tmp_path, monkeypatch):
    """``http(s)://`` (and ``open-mmlab://``, ``torchvision://``, which resolve to URLs): a file
    in torch's hub cache is read by the project's loader, not by torch.hub's unsafe default,
    and a URL that is not there is an error, not a download."""
    def no_download(*args, **kwargs):
        raise AssertionError('downloaded at run time')

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    cache = tmp_path / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    target = tmp_path / 'created_by_the_checkpoint'
    torch.save({'state_dict': {'weight': torch.ones(2)}, 'meta': Exploit(str(target))},
               cache / 'evil.pth')
    with pytest.raises(CheckpointError, match=r'refusing to load checkpoint .*evil\.pth'):
        mmengine_checkpoint._load_checkpoint('https://example.invalid/evil.pth')
    assert not target.exists()
    torch.save({'state_dict': {'weight': torch.ones(2)}}, cache / 'good.pth')
    loaded = mmengine_checkpoint._load_checkpoint('https://example.invalid/good.pth')
    assert torch.equal(loaded['state_dict']['weight'], torch.ones(2))
    with pytest.raises(FileNotFoundError, match=r"'https://example.invalid/new.pth' is not on "
                       r'this machine, and DenseCLIP downloads nothing at run time: .*new\.pth'):
        mmengine_checkpoint._load_checkpoint('https://example.invalid/new.pth')


@pytest.mark.parametrize('load', [
    lambda path: mmengine_checkpoint._load_checkpoint(path, map_location='cpu'),
    lambda path: load_checkpoint(nn.Linear(3, 2), path, map_location='cpu'),
    remote_scheme_load,
    lambda path: weights_only_load(path),
], ids=['CheckpointLoader', 'load_checkpoint', 'remote-schemes', 'weights_only_load'])
def test_code_running_pickle_is_refused(tmp_path, load):
    target = tmp_path / 'created_by_the_checkpoint'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'weight': torch.ones(2)}, 'meta': Exploit(str(target))}, path)
    with pytest.raises(CheckpointError, match=r'refusing to load checkpoint .*evil\.pth') as err:
        load(str(path))
    assert 'mkdir' in str(err.value) and 'weights_only=True' in str(err.value)
    assert not target.exists()


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'state_dict': {}, 'x': GetattrExploit()}, path)
    with pytest.raises(CheckpointError, match='refusing to load'):
        mmengine_checkpoint._load_checkpoint(str(path))


def test_the_allowlist_is_the_clip_readers():
    """One allowlist of what mmengine's runner writes, in the clip room, whose reader of CLIP
    weights takes run checkpoints too (tests/test_clip/test_checkpoint.py)."""
    from denseclip.clip.reading import RUN_CHECKPOINT_GLOBALS
    assert safe_load.SAFE_GLOBALS is RUN_CHECKPOINT_GLOBALS


def test_torchscript_archive_loads_through_jit(tmp_path):
    model = torch.jit.script(nn.Linear(3, 2))
    path = tmp_path / 'RN_tiny.pt'
    torch.jit.save(model, str(path))
    state_dict = mmengine_checkpoint._load_checkpoint(str(path), map_location='cpu')
    assert isinstance(state_dict, (dict, OrderedDict))
    torch.testing.assert_close(state_dict['weight'], model.weight, rtol=0, atol=0)


def test_damaged_and_missing_files_say_what_is_wrong(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': nn.Linear(64, 64).state_dict()}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    for path, what in ((truncated, 'the file is truncated, corrupt or not a PyTorch checkpoint'),
                       (text, "it is a text file, not a checkpoint \\(it begins 'not a "
                              "checkpoint'\\)"),
                       (empty, r'the file is empty \(0 bytes\)')):
        with pytest.raises(CheckpointError, match=rf"'{re.escape(str(path))}': {what}") as info:
            mmengine_checkpoint._load_checkpoint(str(path))
        assert 'weights_only` set to `False`' not in str(info.value)  # torch's advice
    with pytest.raises(FileNotFoundError, match=r'missing\.pth.*does not exist.*load_from'):
        mmengine_checkpoint._load_checkpoint(str(tmp_path / 'missing.pth'))


def test_plain_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'plain.pkl'
    path.write_bytes(pickle.dumps({'a': 1}, protocol=4))  # no torch framing at all
    with pytest.raises(CheckpointError, match=r"plain\.pkl': it is a plain Python pickle "
                                              r'\(protocol 4\), not a file torch\.save wrote'):
        weights_only_load(str(path))


def test_legacy_format_pickle_that_runs_code_is_refused_as_such(tmp_path):
    """torch's pre-1.6 format: torch cannot list its globals, its refusal names the first."""
    target = tmp_path / 'created_by_the_checkpoint'
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'weight': torch.ones(2)}, 'meta': Exploit(str(target))}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"refusing to load checkpoint '.*legacy\.pth': it "
                                              r'would import posix\.mkdir') as info:
        mmengine_checkpoint._load_checkpoint(str(path))
    assert 'truncated' not in str(info.value) and 'file an issue' not in str(info.value)
    assert not target.exists()


def test_test_tool_names_a_missing_checkpoint(tmp_path, monkeypatch, capsys):
    config = Path(__file__).resolve().parents[2] / 'configs/quickstart/' \
        'denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
    missing = tmp_path / 'work_dirs/iter_80000.pth'
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', str(config), str(missing)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(config.parents[2] / 'tools/test.py'), run_name='__main__')
    assert exit_info.value.code == 2
    assert f"checkpoint '{missing}' does not exist" in capsys.readouterr().err
