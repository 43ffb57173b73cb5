"""A failing tool ends with the real cause, in the project's words, never in torch's or
mmengine's: the last line names the file or config key, what was expected and what to do.

Each case runs the tool as a user would (a subprocess) on the quickstart config, or on a
full-size config where the mistake is one that only full-size configs allow.
"""
import pickle
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
RN50 = ROOT / 'configs/denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
#: torch's advice, the opposite of what the project wants a user to do.
TORCH_ADVICE = ('weights_only` set to `False`', 'file an issue', 'add_safe_globals')


class Exploit:
    """Unpickling this creates a directory: code chosen by the file's author."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        import os
        return os.mkdir, (self.path,)


def assert_no_torch_advice(output: str) -> None:
    assert not [advice for advice in TORCH_ADVICE if advice in output]


def test_text_file_as_clip_weights(run_tool, data_options, tmp_path):
    notes = tmp_path / 'RN50.pt'
    notes.write_text('version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 9\n')
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path, *data_options,
                    f'model.pretrained={notes}', cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.last_line == (
        f"error: cannot read checkpoint '{notes}': it is a "
        "text file, not a checkpoint (it begins 'version https://git-lfs.github.com/spec/v1'). "
        'Check the path; text in place of weights is usually a failed download (an HTML page) '
        'or a Git LFS pointer (run git lfs pull).')
    assert_no_torch_advice(proc.output)


def test_misspelled_backbone_type_in_a_full_size_config(run_tool, tmp_path):
    proc = run_tool('train.py', RN50, '--work-dir', tmp_path, '--cfg-options',
                    'model.backbone.type=CLIPResNetWithAtention', cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.last_line == (
        "error: model.backbone.type='CLIPResNetWithAtention': CLIPResNetWithAtention is not "
        "in the mmseg::model registry (unknown type); did you mean 'CLIPResNetWithAttention' or "
        "'CLIPResNet'? Fix the spelling, or import the module that registers it (custom_imports "
        'in the config)')
    assert 'not a CLIP backbone' not in proc.output


def test_legacy_format_pickle_that_would_run_code(run_tool, data_options, tmp_path):
    target = tmp_path / 'created_by_the_checkpoint'
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {}, 'meta': Exploit(str(target))}, path,
               _use_new_zipfile_serialization=False, pickle_protocol=2)
    proc = run_tool('test.py', QUICKSTART, path, '--work-dir', tmp_path, *data_options,
                    cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.last_line.startswith(
        f"error: refusing to load checkpoint '{path}': it "
        'would import posix.mkdir, and unpickling such objects can run arbitrary code. DenseCLIP '
        'loads checkpoints with torch.load(weights_only=True) only (see docs/robustness.md). If '
        'you trust the file, convert it once to a plain state dict:')
    assert 'truncated' not in proc.output
    assert_no_torch_advice(proc.output)
    assert not target.exists()


def test_plain_pickle_is_named_as_such(run_tool, tmp_path):
    path = tmp_path / 'weights.pkl'
    path.write_bytes(pickle.dumps({'state_dict': {'w': [1.0]}}, protocol=4))
    proc = run_tool('convert_checkpoint.py', 'clip', path, tmp_path / 'out.pth', cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.last_line == (
        f"error: cannot read checkpoint '{path}': it is a "
        'plain Python pickle (protocol 4), not a file torch.save wrote. If you trust it, '
        'unpickle it yourself and torch.save its tensors.')
