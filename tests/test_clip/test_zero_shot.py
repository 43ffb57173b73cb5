"""Zero-shot classification: CLIP's own logits, prompt ensembling, templates and helpers."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from denseclip.clip import (PHOTO_TEMPLATES, CheckpointError, TextTransformer,
                            ZeroShotClassifier, build_classifier, clip_state_dict, load,
                            read_templates, tokenize)
from denseclip.clip.zero_shot import accuracy_summary, embed_images, image_folder, read_class_names

from .test_checkpoint import ArchiveLike, with_metadata
from .tiny import make_clip

NAMES = ['cat', 'dog', 'traffic light']


@pytest.fixture
def archive_clip(tiny_config, tmp_path):
    """A tiny CLIP read back from an OpenAI-format TorchScript archive, logit scale exp = 100."""
    model = make_clip(tiny_config)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))
    path = tmp_path / 'tiny.pt'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.trace(ArchiveLike(model, with_metadata({}, tiny_config)),
                        tokenize(['a cat'])).save(str(path))
    return load(path)


def test_single_template_logits_are_clips(archive_clip):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    classifier = ZeroShotClassifier.from_clip(archive_clip, NAMES, templates=('{}',))
    assert classifier.logit_scale == pytest.approx(100, rel=1e-6)
    with torch.no_grad():
        features = archive_clip.encode_image(images)
        logits = classifier(features)
        expected, _ = archive_clip(images, tokenize(NAMES))
        text = archive_clip.encode_text(tokenize(NAMES))
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    openai = 100 * F.normalize(features, dim=-1) @ F.normalize(text, dim=-1).t()
    torch.testing.assert_close(logits, openai, rtol=0, atol=1e-5)
    assert logits.std() > 0.01  # not a degenerate comparison


def test_prompt_ensemble_by_hand(tiny_clip):
    templates = ['a photo of a {}.', 'a drawing of the {}', '{} in the wild']
    weight = build_classifier(tiny_clip, NAMES, templates)
    assert weight.shape == (3, tiny_clip.embed_dim) and weight.dtype == torch.float32
    with torch.no_grad():
        for row, name in zip(weight, NAMES):
            per_template = [F.normalize(tiny_clip.encode_text(tokenize(t.format(name)))[0], dim=0)
                            for t in templates]
            expected = torch.stack(per_template).mean(dim=0)
            torch.testing.assert_close(row, expected / expected.norm(), rtol=0, atol=1e-6)
            # the ensemble differs from any single template
            assert (row - per_template[0]).abs().max() > 1e-4
    torch.testing.assert_close(build_classifier(tiny_clip, NAMES, templates, batch_size=2),
                               weight, rtol=0, atol=1e-6)


def test_build_classifier_on_a_text_tower_keeps_its_mode():
    torch.manual_seed(0)
    tower = TextTransformer(context_length=16, vocab_size=49408, width=64, heads=1, layers=1,
                            embed_dim=24).train()
    weight = build_classifier(tower, ['cat', 'dog'])
    assert weight.shape == (2, 24)
    torch.testing.assert_close(weight.norm(dim=-1), torch.ones(2))
    assert tower.training
    with pytest.raises(ValueError, match='context length is 16'):
        build_classifier(tower, ['a very long name ' * 4])


def test_build_classifier_refuses_bad_arguments(tiny_clip):
    with pytest.raises(ValueError, match='class_names'):
        build_classifier(tiny_clip, [])
    with pytest.raises(TypeError, match='class_names'):
        build_classifier(tiny_clip, 'cat')
    with pytest.raises(ValueError, match="'cat' at position 0, position 1"):
        build_classifier(tiny_clip, ['cat', 'Cat'])
    with pytest.raises(ValueError, match=r'template 1: .*exactly once, found 0'):
        build_classifier(tiny_clip, ['cat'], ['a {}', 'no place'])


def test_photo_templates():
    assert 8 <= len(PHOTO_TEMPLATES) <= 20 and len(set(PHOTO_TEMPLATES)) == len(PHOTO_TEMPLATES)
    assert all(template.count('{}') == 1 for template in PHOTO_TEMPLATES)


def test_classifier_dense_and_clamped_scale(tiny_clip):
    with torch.no_grad():
        tiny_clip.logit_scale.fill_(math.log(300))
    classifier = ZeroShotClassifier.from_clip(tiny_clip, NAMES[:2], templates=('a {}',))
    assert classifier.logit_scale == 100
    assert classifier.class_names == ('cat', 'dog') and classifier.num_classes == 2
    assert set(dict(classifier.named_buffers())) == {'weight'}
    torch.manual_seed(0)
    features = torch.randn(2, tiny_clip.embed_dim, 3, 4)
    dense = classifier.dense(features)
    assert dense.shape == (2, 2, 3, 4)
    torch.testing.assert_close(dense[1, :, 2, 3], classifier(features[1, :, 2, 3]))
    torch.testing.assert_close(classifier(3 * features[0, :, 0, 0]), dense[0, :, 0, 0])
    with pytest.raises(ValueError, match='width 5 do not fit'):
        classifier(torch.randn(1, 5))
    with pytest.raises(ValueError, match='3 class names for 2 classes'):
        ZeroShotClassifier(classifier.weight, class_names=NAMES)


def test_read_templates(tmp_path):
    path = tmp_path / 'templates.txt'
    path.write_text('# photos\n\na photo of a {}.\n  a sketch of a {}  \n')
    assert read_templates(path) == ['a photo of a {}.', 'a sketch of a {}']
    path.write_text('a photo of a {}.\n\na photo of a thing.\n')
    with pytest.raises(ValueError, match=r'templates\.txt, line 3: .*found 0'):
        read_templates(path)
    path.write_text('{} and {}\n')
    with pytest.raises(ValueError, match=r'line 1: .*found 2'):
        read_templates(path)
    path.write_text('# nothing but a comment\n\n')
    with pytest.raises(ValueError, match='holds no template'):
        read_templates(path)
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        read_templates(tmp_path / 'missing.txt')


def test_read_class_names(tmp_path):
    path = tmp_path / 'classes.txt'
    path.write_text('cat\n# a comment\n  # an indented one\n\ntraffic light\n')
    assert read_class_names(path) == ['cat', 'traffic light']
    path.write_text('cat\ndog\ncat\n')
    with pytest.raises(ValueError, match=r"more than once .*'cat' at line 1, line 3"):
        read_class_names(path)


def test_clip_state_dict_of_each_checkpoint_kind(tiny_clip):
    weights = tiny_clip.state_dict()
    assert clip_state_dict(weights, 'a.pt').keys() == weights.keys()
    trained = {'meta': {}, 'state_dict': {**{f'clip.{k}': v for k, v in weights.items()},
                                          'data_preprocessor.mean': torch.zeros(3)}}
    stripped = clip_state_dict(trained, 'iter_10.pth')
    assert stripped.keys() == weights.keys()
    assert stripped['text_projection'] is weights['text_projection']
    with pytest.raises(CheckpointError, match=r"'seg\.pth' holds no CLIP model"):
        clip_state_dict({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}}, 'seg.pth')


def write_tree(root, classes=('cat', 'dog')):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name / 'more').mkdir(parents=True)
        for file in ('b.png', 'a.png', 'more/c.png'):
            Image.fromarray(rng.integers(0, 256, (40, 70, 3), np.uint8)).save(root / name / file)
    (root / 'dog' / 'notes.txt').write_text('not an image')
    return root


def test_image_folder(tmp_path):
    root = write_tree(tmp_path)
    paths, labels, names, not_images = image_folder(root)
    assert names == ['cat', 'dog'] and labels == [0, 0, 0, 1, 1, 1]
    assert [p[len(str(root)) + 1:] for p in paths[:3]] == ['cat/a.png', 'cat/b.png',
                                                          'cat/more/c.png']
    assert not_images == [str(root / 'dog' / 'notes.txt')]
    _, labels, names, _ = image_folder(root, ['dog', 'cat'])
    assert names == ['dog', 'cat'] and labels == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match=r"folders that are no class: \['dog'\]; classes without "
                                         r"a folder: \['bird'\]"):
        image_folder(root, ['cat', 'bird'])
    (root / 'empty').mkdir()
    with pytest.raises(ValueError, match=r"class folder '.*empty' holds no image"):
        image_folder(root)


def test_embed_images_skips_bad_files(tiny_clip, tmp_path):
    root = write_tree(tmp_path)
    paths, *_ = image_folder(root)
    (root / 'cat' / 'bad.png').write_bytes(b'garbage')
    paths = [paths[0], str(root / 'cat' / 'bad.png'), *paths[1:3]]
    features, kept, bad = embed_images(tiny_clip, paths, batch_size=2)
    assert kept == [0, 2, 3] and [path for path, _ in bad] == [paths[1]]
    assert 'bad.png' in bad[0][1]
    from denseclip.clip.preprocess import preprocess, read_image_rgb
    with torch.no_grad():
        expected = tiny_clip.encode_image(torch.stack(
            [preprocess(read_image_rgb(paths[i]), 64) for i in kept]))
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)


def test_accuracy_summary_by_hand():
    logits = torch.tensor([[3., 2, 1, 0, 0, 0],   # class 0: right
                           [.5, 3, 2, 1, 0, -1],  # class 0: 4th, in the top 5 only
                           [0., 0, -1, 0, 0, 9],  # class 2: predicted 5, last
                           [0., 0, 9, 0, 0, 0]])  # class 2: right
    labels = torch.tensor([0, 0, 2, 2])
    names = list('abcdef')
    summary = accuracy_summary(logits, labels, names)
    assert summary['top1'] == 0.5 and summary['chance'] == pytest.approx(1 / 6)
    assert summary['top5'] == 0.75 and summary['topk_used'] == 5
    assert summary['per_class'] == dict(a=0.5, b=None, c=0.5, d=None, e=None, f=None)
    assert summary['confusion'][0] == [1, 1, 0, 0, 0, 0]
    assert summary['confusion'][2] == [0, 0, 1, 0, 0, 1]
    assert sum(map(sum, summary['confusion'])) == 4
