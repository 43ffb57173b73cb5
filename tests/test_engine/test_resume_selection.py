"""``--resume`` picks the newest intact checkpoint of a work dir (``find_resume_checkpoint``)."""
import pytest
import torch
from mmengine.config import Config

from denseclip.clip import CheckpointError
from denseclip.engine import checkpoint_problem, configure_resume, find_resume_checkpoint


def save(path, step: int, seed: int = 5) -> None:
    torch.save({'meta': {'iter': step, 'seed': seed}, 'state_dict': {'w': torch.ones(4096)}},
               path)


def test_newest_intact_checkpoint_wins(tmp_path):
    for step in (2, 4, 6):
        save(tmp_path / f'iter_{step}.pth', step)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    save(tmp_path / 'best_mIoU_iter_8.pth', 8)  # not a resume point
    # killed between writing iter_6.pth and updating last_checkpoint: iter_6 is complete
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_6.pth')

    data = (tmp_path / 'iter_6.pth').read_bytes()
    (tmp_path / 'iter_6.pth').write_bytes(data[:len(data) // 2])
    assert 'iter_6.pth' not in str(checkpoint_problem(str(tmp_path / 'iter_4.pth')))
    assert checkpoint_problem(str(tmp_path / 'iter_6.pth')) is not None
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')


def test_no_checkpoint_means_a_fresh_start_and_only_damaged_ones_an_error(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None
    cfg = Config(dict(work_dir=str(tmp_path), resume=True))
    configure_resume(cfg, 'auto')
    assert cfg.resume is False

    (tmp_path / 'iter_3.pth').write_bytes(b'PK\x03\x04 half a zip')
    with pytest.raises(CheckpointError, match=r"cannot resume: none of the checkpoints in .* can "
                                              r'be read: .*iter_3\.pth'):
        find_resume_checkpoint(str(tmp_path))


def test_resume_takes_the_seed_of_the_checkpoint(tmp_path):
    save(tmp_path / 'iter_3.pth', 3, seed=1234)
    cfg = Config(dict(work_dir=str(tmp_path), randomness=dict(seed=None, deterministic=False)))
    configure_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from == str(tmp_path / 'iter_3.pth')
    assert cfg.randomness == dict(seed=1234, deterministic=False)
    with pytest.raises(CheckpointError, match=r"cannot resume from --resume '.*missing\.pth': "
                                              'the file does not exist'):
        configure_resume(cfg, str(tmp_path / 'missing.pth'))
