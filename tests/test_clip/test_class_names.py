"""The one check of class names (:func:`denseclip.clip.check_class_names`) and its callers."""
import pytest

from denseclip.clip import check_class_names
from denseclip.clip.zero_shot import read_class_names


def test_distinct_names_pass_as_a_list():
    assert check_class_names(('wall', 'wall (outdoor)', 'floor'), 'k') == [
        'wall', 'wall (outdoor)', 'floor']


@pytest.mark.parametrize('names, found', [
    (['wall', 'floor', 'wall'], "'wall' at position 0, position 2"),
    (['Wall', 'floor', ' wall '], "'Wall' at position 0, position 2"),       # the tokenizer's view
    (['a  b', 'c', 'A b', 'c'], "'a  b' at position 0, position 2; 'c' at position 1, position 3"),
])
def test_repeated_names_are_named_with_their_positions_and_source(names, found):
    with pytest.raises(ValueError, match='model.class_names names a class more than once') as err:
        check_class_names(names, 'model.class_names')
    assert found in str(err.value)


@pytest.mark.parametrize('names, error, text', [
    ([], ValueError, 'is empty'),
    (['sky', ''], ValueError, "position 1: ''"),
    (['sky', None], ValueError, 'position 1: None'),
    ('sky,grass', TypeError, 'must be a list'),
    (7, TypeError, 'must be a list'),
])
def test_malformed_names(names, error, text):
    with pytest.raises(error, match='--classes') as caught:
        check_class_names(names, '--classes')
    assert text in str(caught.value)


def test_a_file_of_names_is_checked_the_same_way(tmp_path):
    path = tmp_path / 'names.txt'
    path.write_text('# classes\ncat\ndog\n\nCat\n')
    with pytest.raises(ValueError, match=r"names\.txt' names a class more than once.*'cat' at "
                       'line 2, line 5'):
        read_class_names(path)


def test_the_model_and_the_dataset_name_their_keys():
    from denseclip.datasets import dataset_class_names
    from denseclip.models.derive import class_names_list
    with pytest.raises(ValueError,
                       match=r"^model\.class_names names .*'a' at position 0, position 1"):
        class_names_list(['a', 'a'])
    dataset = dict(type='RepeatDataset', times=2,
                   dataset=dict(type='ADE20KDataset', metainfo=dict(classes=['x', 'y', 'x'])))
    with pytest.raises(ValueError, match=r'^val_dataloader\.dataset\.dataset\.metainfo\.classes'):
        dataset_class_names(dataset, 'val_dataloader.dataset')


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / 'names.txt'
    path.write_bytes(b'cat\n\xff\xfedog\n')
    with pytest.raises(ValueError, match=r"names\.txt' is not UTF-8 text"):
        read_class_names(path)
