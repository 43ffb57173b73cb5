"""CLIPContrastive: OpenAI's keys under ``clip.``, its loss and a training step on a tiny CLIP,
the temperature clamp, prediction, caption tokenisation and fine-tuning from CLIP weights."""
import math

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import BaseDataElement
from mmseg.registry import MODELS

import denseclip.models.clip_contrastive  # noqa: F401  (registers the model)
from denseclip.clip import CLIP, CheckpointError, tokenize
from denseclip.models.clip_contrastive import (MAX_LOG_LOGIT_SCALE, CLIPContrastive,
                                               CLIPDataPreprocessor)

#: ResNet CLIP, width 16, one block per stage, 64 px; text width 32, one layer, 16 positions.
ARCH = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
            vision_patch_size=None, context_length=16, vocab_size=49408, transformer_width=32,
            transformer_heads=1, transformer_layers=1)
CAPTIONS = ('a photo of a wall.', 'a photo of a sky and a tree.', 'a red floor.',
            'a bed in a room.')


def packed(captions=CAPTIONS, size: int = 64) -> dict:
    """What the dataloader hands the model: uint8 BGR images and samples with captions."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
              for _ in captions]
    samples = [BaseDataElement(metainfo=dict(img_path=f'images/{i}.jpg', caption=caption))
               for i, caption in enumerate(captions)]
    return dict(inputs=inputs, data_samples=samples)


@pytest.fixture
def model() -> CLIPContrastive:
    torch.manual_seed(0)
    return MODELS.build(dict(type='CLIPContrastive', arch=ARCH))


def test_state_dict_is_openai_clip_under_clip_prefix(model):
    reference = CLIP(**ARCH).state_dict()
    assert set(model.state_dict()) == {f'clip.{key}' for key in reference}
    assert model.clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_openai_initialisation_of_the_resnet(model):
    """Each bottleneck starts as the identity (last BN's gain zero); the attention pool's
    projections have std in_features ** -0.5."""
    for stage in (model.clip.visual.layer1, model.clip.visual.layer4):
        assert torch.all(stage[0].bn3.weight == 0)
    weight = model.clip.visual.attnpool.q_proj.weight
    assert weight.std().item() == pytest.approx(weight.shape[1] ** -0.5, rel=0.05)


def test_preprocessor_normalises_and_tokenises(model):
    data = model.data_preprocessor(packed(), training=True)
    assert data['inputs'].shape == (4, 3, 64, 64) and data['inputs'].dtype == torch.float32
    for sample, caption in zip(data['data_samples'], CAPTIONS):
        torch.testing.assert_close(sample.text, tokenize(caption, context_length=16)[0])
    raw = packed()['inputs'][0].float()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]) * 255
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]) * 255
    expected = (raw.flip(0) - mean[:, None, None]) / std[:, None, None]  # BGR -> RGB
    torch.testing.assert_close(data['inputs'][0], expected)


def test_long_captions_are_truncated_or_an_error_naming_the_image():
    long = 'a photo of ' + ' and '.join(['a wall'] * 20) + '.'
    cut = CLIPDataPreprocessor(context_length=16, truncate=True)(packed((long, )))
    assert cut['data_samples'][0].text.shape == (16, )
    assert cut['data_samples'][0].text.argmax().item() == 15  # ends with end-of-text
    strict = CLIPDataPreprocessor(context_length=16, truncate=False)
    with pytest.raises(ValueError, match=r"caption of 'images/0.jpg'.*truncate=True"):
        strict(packed((long, )))


def test_context_length_comes_from_the_model():
    model = CLIPContrastive(ARCH)
    assert model.data_preprocessor.context_length == ARCH['context_length']
    with pytest.raises(ValueError, match='model.arch.context_length'):
        CLIPContrastive(ARCH, data_preprocessor=dict(context_length=77))


def test_loss_and_logged_scalars(model):
    data = model.data_preprocessor(packed(), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_contrastive', 'accuracy', 'logit_scale'}
    assert losses['loss_contrastive'].requires_grad
    # random embeddings: about log(4) per direction; the loss of 4 pairs is at most log 4 + 2s
    assert 0 < losses['loss_contrastive'].item() < math.log(4) + 2 / 0.07
    assert losses['logit_scale'].item() == pytest.approx(1 / 0.07)
    assert 0 <= losses['accuracy'].item() <= 1


def test_train_step_updates_both_towers_and_the_temperature(model):
    model.train()
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = model.train_step(packed(), wrapper)
    assert set(log_vars) == {'loss', 'loss_contrastive', 'accuracy', 'logit_scale'}
    changed = {name for name, param in model.named_parameters()
               if not torch.equal(param, before[name])}
    for name in ('clip.logit_scale', 'clip.text_projection', 'clip.visual.attnpool.c_proj.weight',
                 'clip.visual.conv1.weight', 'clip.transformer.resblocks.0.mlp.c_fc.weight'):
        assert name in changed, name


def test_logit_scale_parameter_is_clamped_at_log_100(model):
    with torch.no_grad():
        model.clip.logit_scale.fill_(6.0)  # exp(6) = 403
    losses = model(**model.data_preprocessor(packed(), training=True), mode='loss')
    assert model.clip.logit_scale.item() == pytest.approx(MAX_LOG_LOGIT_SCALE)
    assert losses['logit_scale'].item() == pytest.approx(100.0)


def test_predict_and_tensor_give_unit_embeddings(model):
    model.eval()
    data = model.data_preprocessor(packed(), training=False)
    with torch.no_grad():
        samples = model(**data, mode='predict')
        images, texts = model(**data, mode='tensor')
    assert images.shape == texts.shape == (4, 32)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(samples[2].image_embedding, images[2])
    torch.testing.assert_close(samples[2].text_embedding, texts[2])
    with pytest.raises(ValueError, match="mode must be"):
        model(**data, mode='features')


def test_fine_tunes_from_clip_weights_and_own_checkpoints(tmp_path):
    torch.manual_seed(1)
    source = CLIP(**dict(ARCH, context_length=20))  # longer text positions are cut
    with torch.no_grad():
        source.logit_scale.fill_(3.0)
    path = tmp_path / 'clip.pth'
    torch.save(source.state_dict(), path)
    model = CLIPContrastive(ARCH, pretrained=path)
    model.init_weights()
    torch.testing.assert_close(model.clip.visual.conv1.weight, source.visual.conv1.weight)
    torch.testing.assert_close(model.clip.positional_embedding, source.positional_embedding[:16])
    assert model.clip.logit_scale.item() == 3.0
    # a checkpoint of this model (keys under clip.) loads the same way
    own = tmp_path / 'iter_10.pth'
    torch.save(dict(state_dict=model.state_dict()), own)
    again = CLIPContrastive(ARCH, pretrained=own)
    again.init_weights()
    torch.testing.assert_close(again.clip.text_projection, source.text_projection)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / 'clip.pth'
    torch.save(CLIP(**dict(ARCH, embed_dim=16)).state_dict(), path)
    model = CLIPContrastive(ARCH, pretrained=path)
    with pytest.raises(CheckpointError, match='clip.pth'):
        model.init_weights()


# --------------------------------------- a checkpoint of tools/train.py as `pretrained` elsewhere
#: ARCH with the tiny DenseCLIP's image width and text heads (tests/test_models/conftest.py).
DENSECLIP_ARCH = dict(ARCH, vision_width=8, transformer_heads=2)


def trained_and_saved_like_the_runner(arch: dict, path) -> tuple[CLIPContrastive, str]:
    """A CLIPContrastive after one AdamW step, saved as mmengine's runner saves a checkpoint:
    ``save_checkpoint`` of meta, weights, a message hub of ``HistoryBuffer``s, optimiser state."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import get_state_dict, save_checkpoint, weights_to_cpu

    torch.manual_seed(2)
    model = CLIPContrastive(arch).train()
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1))
    log_vars = model.train_step(packed(), wrapper)
    hub = MessageHub.get_instance('test_clip_contrastive_runner')
    for name, value in log_vars.items():
        hub.update_scalar(f'train/{name}', value)
    hub.update_info('iter', 1)
    save_checkpoint(dict(meta=dict(epoch=0, iter=1, seed=2, experiment_name='clip'),
                         state_dict=weights_to_cpu(get_state_dict(model)),
                         message_hub=hub.state_dict(), optimizer=wrapper.state_dict()),
                    str(path))
    return model.eval(), str(path)


def test_fine_tunes_from_a_checkpoint_as_the_runner_writes_it(tmp_path):
    trained, path = trained_and_saved_like_the_runner(ARCH, tmp_path / 'iter_1.pth')
    raw = torch.load(path, weights_only=False)
    assert type(raw['message_hub']['log_scalars']['train/loss']).__name__ == 'HistoryBuffer'
    assert raw['optimizer']['state']  # AdamW's moments
    model = CLIPContrastive(ARCH, pretrained=path)
    model.init_weights()
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_denseclip_towers_load_a_checkpoint_of_this_model(tmp_path, denseclip_cfg):
    """``pretrained=`` of a DenseCLIP config: both towers (load_tower) take the checkpoint."""
    trained, path = trained_and_saved_like_the_runner(DENSECLIP_ARCH, tmp_path / 'iter_1.pth')
    model = MODELS.build(denseclip_cfg(pretrained=path))
    model.init_weights()
    visual = trained.clip.visual.state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, visual[key]), key
    text = model.text_encoder
    assert torch.equal(text.token_embedding.weight, trained.clip.token_embedding.weight)
    assert torch.equal(text.positional_embedding, trained.clip.positional_embedding[:9])
    assert torch.equal(text.text_projection, trained.clip.text_projection)
    assert torch.equal(text.transformer.resblocks[0].mlp.c_fc.weight,
                       trained.clip.transformer.resblocks[0].mlp.c_fc.weight)
