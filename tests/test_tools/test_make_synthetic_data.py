"""tools/make_synthetic_data.py through its command line: scenes, captions, ImageFolder split."""
import json


def test_scenes_captions_and_image_folder(run_tool, tmp_path):
    small = ['--root', 'data', '--num-classes', '3', '--num-train', '2', '--num-val', '1',
             '--size', '32', '40', '--seed', '3']
    proc = run_tool('make_synthetic_data.py', *small, '--image-folder', '2', '1', cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    scenes, folder = tmp_path / 'data' / 'ADEChallengeData2016', tmp_path / 'data' / 'imagefolder'
    assert 'captions) is in data/ADEChallengeData2016' in proc.output
    assert proc.last_line.endswith('is in data/imagefolder')
    lines = (scenes / 'captions' / 'training.jsonl').read_text().splitlines()
    assert [json.loads(line)['image'] for line in lines] == [
        'images/training/ADE_train_00000001.jpg', 'images/training/ADE_train_00000002.jpg']
    assert sorted(p.name for p in (folder / 'training').iterdir()) == ['building', 'sky', 'wall']
    assert sorted(p.name for p in (folder / 'validation' / 'sky').iterdir()) == ['0001.jpg']
    assert len((folder / 'training.jsonl').read_text().splitlines()) == 3 * 2
    for marker in (scenes, folder):
        params = json.loads((marker / 'synthetic.json').read_text())
        assert params['seed'] == 3 and params['image_size'] == [32, 40]

    # other parameters need --overwrite (overwriting: tests/test_datasets/test_synthetic.py)
    proc = run_tool('make_synthetic_data.py', *small, '--no-captions', cwd=tmp_path)
    assert proc.returncode != 0
    assert 'other parameters' in proc.last_line and '--overwrite' in proc.last_line

    proc = run_tool('make_synthetic_data.py', *small, '--image-folder', '4', cwd=tmp_path)
    assert proc.returncode != 0 and '--image-folder takes no number or two' in proc.last_line
