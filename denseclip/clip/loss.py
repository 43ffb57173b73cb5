"""CLIP's contrastive loss over the global batch: features gathered from every rank.

Each of ``W`` ranks embeds ``B`` image-text pairs. The features of all ranks are gathered into
``[W*B, D]`` and rank ``r`` scores its own ``B`` images against all ``W*B`` texts and its own
``B`` texts against all ``W*B`` images; its positives are the columns ``r*B .. r*B + B - 1``.
Its loss is CLIP's symmetric cross-entropy over those rows, so the mean of the ``W`` per-rank
losses is the loss of one process on the concatenated ``W*B`` pairs.

Gradients. The gather is ``torch.distributed.nn.functional.all_gather``, whose backward sums,
for each rank's features, the gradients that *every* rank's loss sends them. With the DDP
average over ranks this gives exactly the gradient of the single-process loss:

* towers: rank ``r`` holds ``sum_q dL_q/df_r * df_r/dθ``; DDP averages over ``r``:
  ``1/W sum_r sum_q dL_q/df_r df_r/dθ = d(1/W sum_q L_q)/dθ = dL/dθ``;
* ``logit_scale`` (a copy on each rank): ``1/W sum_r dL_r/ds = dL/ds``.

Replacing this rank's slot of a plain ``all_gather`` by the local tensor keeps only
``dL_r/df_r`` and loses what the other ranks' rows send to this rank's features: a wrong
gradient here (tests/test_clip/test_gathered_loss.py fails with it). With the whole
``[W*B, W*B]`` loss on every rank it would be ``1/W`` of the single-process gradient for the
towers but not for ``logit_scale``, whose relative step size would then change with ``W``.
"""
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """Concatenates ``[B, D]`` features of every rank into ``[W*B, D]`` in rank order.

    Differentiable: the gradient of each rank's slice is summed over the ranks' losses and
    returned to the rank that computed it. Every rank must pass the same ``B``. In a single
    process the features are returned as they are.
    """
    _, world_size = world()
    if world_size == 1:
        return features
    return torch.cat(dist_fn.all_gather(features), dim=0)


def gathered_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                              logit_scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """CLIP's loss of this rank's pairs against the global batch.

    Args:
        image_features: L2-normalised image embeddings of this rank ``[B, D]``.
        text_features: L2-normalised text embeddings of the same pairs ``[B, D]``.
        logit_scale: The learnable log-temperature (a scalar); the logits are
            ``logit_scale.exp() * image @ text.T``.

    Returns:
        ``loss``: this rank's share (the mean over ranks is the global-batch loss);
        ``accuracy``: the fraction of this rank's images and texts whose best match in the
        global batch is their own pair (detached).
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError('image and text features must both be [B, D], got '
                         f'{tuple(image_features.shape)} and {tuple(text_features.shape)}')
    rank, _ = world()
    batch = image_features.shape[0]
    all_images = gather_features(image_features)  # [W*B, D]
    all_texts = gather_features(text_features)  # [W*B, D]
    scale = logit_scale.exp()
    logits_per_image = scale * image_features @ all_texts.t()  # [B, W*B]
    logits_per_text = scale * text_features @ all_images.t()  # [B, W*B]
    labels = torch.arange(batch, device=image_features.device) + rank * batch
    loss = (F.cross_entropy(logits_per_image, labels)
            + F.cross_entropy(logits_per_text, labels)) / 2
    with torch.no_grad():
        hits = ((logits_per_image.argmax(dim=1) == labels).float().mean()
                + (logits_per_text.argmax(dim=1) == labels).float().mean())
    return dict(loss=loss, accuracy=hits / 2)
