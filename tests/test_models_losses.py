"""Contrastive losses: open_clip's, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from seisbind.models import ContrastiveLoss, build_loss


def _unit(angle_degrees):
    a = math.radians(angle_degrees)
    return [math.cos(a), math.sin(a)]


# three image and three waveform embeddings on the unit circle
IMAGE_ANGLES = (0.0, 90.0, 200.0)
WAVE_ANGLES = (20.0, 80.0, 150.0)


def _features():
    img = torch.tensor([_unit(a) for a in IMAGE_ANGLES], dtype=torch.float64)
    wav = torch.tensor([_unit(a) for a in WAVE_ANGLES], dtype=torch.float64)
    return img, wav


def _cos(i, j):
    return math.cos(math.radians(IMAGE_ANGLES[i] - WAVE_ANGLES[j]))


def test_clip_loss_equals_the_hand_computed_value():
    scale = 10.0
    logits = [[scale * _cos(i, j) for j in range(3)] for i in range(3)]
    # cross-entropy with the diagonal as targets, rows (image -> waveform) and columns (waveform -> image)
    rows = sum(-logits[i][i] + math.log(sum(math.exp(v) for v in logits[i])) for i in range(3)) / 3
    cols = sum(-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(3))) for j in range(3)) / 3
    expected = (rows + cols) / 2

    img, wav = _features()
    t = torch.tensor(scale, dtype=torch.float64)
    got = ContrastiveLoss("clip")({"image": img, "waveform": wav, "logit_scale": t})
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # sanity of the hand computation itself: a perfect match scores lower
    perfect = ContrastiveLoss("clip")({"image": img, "waveform": img, "logit_scale": t})
    assert perfect.item() < got.item()


def test_siglip_loss_equals_the_hand_computed_value():
    scale, bias = 10.0, -10.0
    total = 0.0
    for i in range(3):
        for j in range(3):
            label = 1.0 if i == j else -1.0
            z = label * (scale * _cos(i, j) + bias)
            total += -math.log(1.0 / (1.0 + math.exp(-z)))
    expected = total / 3  # summed over pairs, divided by the batch size

    img, wav = _features()
    out = {"image": img, "waveform": wav, "logit_scale": torch.tensor(scale, dtype=torch.float64),
           "logit_bias": torch.tensor(bias, dtype=torch.float64)}
    assert ContrastiveLoss("siglip")(out).item() == pytest.approx(expected, rel=1e-12)


def test_build_loss_passes_the_distributed_options_to_open_clip():
    from open_clip.loss import ClipLoss, SigLipLoss

    clip = build_loss("clip", local_loss=True, gather_with_grad=True, rank=3, world_size=8)
    assert isinstance(clip, ClipLoss)
    assert (clip.local_loss, clip.gather_with_grad, clip.rank, clip.world_size) == (True, True, 3, 8)
    sig = build_loss("siglip", rank=1, world_size=2, dist_impl="gather")
    assert isinstance(sig, SigLipLoss)
    assert (sig.rank, sig.world_size, sig.dist_impl) == (1, 2, "gather")


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "triplet"}, r"loss must be one of \('clip', 'siglip'\); got 'triplet'"),
    ({"loss": "clip", "rank": 2, "world_size": 2}, r"0 <= rank < world_size; got rank 2, world_size 2"),
    ({"loss": "siglip", "local_loss": True}, r"apply to the clip loss only"),
    ({"loss": "clip", "dist_impl": "bidir"}, r"dist_impl applies to the siglip loss only"),
])
def test_bad_loss_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_loss(**kwargs)


def test_loss_reports_missing_outputs():
    img, wav = _features()
    with pytest.raises(ValueError, match=r"needs outputs \['logit_bias'\]"):
        ContrastiveLoss("siglip")({"image": img, "waveform": wav, "logit_scale": torch.tensor(10.0)})
    with pytest.raises(ValueError, match=r"needs the embeddings of one of the pairs \[\('image', 'waveform'\)\]"):
        ContrastiveLoss("clip")({"image": img, "logit_scale": torch.tensor(10.0)})


def _clip_by_hand(a, b, scale):
    """Symmetric InfoNCE computed directly: mean of the two cross-entropies over the diagonal."""
    logits = scale * a @ b.T
    target = torch.arange(len(a))
    return (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2


def test_the_loss_sums_its_pairs_each_with_its_own_temperature_and_never_pairs_waveform_with_text():
    img, wav = _features()
    txt = torch.nn.functional.normalize(torch.randn_like(img), dim=-1)
    outputs = {"image": img, "waveform": wav, "text": txt,
               "logit_scales": {"image_waveform": torch.tensor(10.0), "image_text": torch.tensor(3.0),
                                "waveform_text": torch.tensor(50.0)}}  # fmt: skip
    fn = ContrastiveLoss("clip", pairs=[("image", "waveform"), ("image", "text")])
    total = fn(outputs)
    expected = _clip_by_hand(img, wav, 10.0) + _clip_by_hand(img, txt, 3.0)
    assert torch.allclose(total, expected, atol=1e-5)
    assert set(fn.last_terms) == {"image_waveform", "image_text"}  # waveform-text is never a term
    # a batch without captions trains the image-waveform pair alone
    only = fn({k: v for k, v in outputs.items() if k != "text"})
    assert torch.allclose(only, _clip_by_hand(img, wav, 10.0), atol=1e-5) and set(fn.last_terms) == {"image_waveform"}


def test_views_are_each_bound_to_the_image_and_to_each_other():
    """Two waveform views of each of three items (view-major rows): the image-waveform term is the
    mean over views, and the views' own term is the same loss between them, by hand."""
    img, wav = _features()
    other = torch.nn.functional.normalize(wav + 0.3 * torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.2]],
                                                                    dtype=torch.float64), dim=-1)  # fmt: skip
    outputs = {"image": img, "waveform": torch.cat([wav, other]), "logit_scale": torch.tensor(10.0)}
    fn = ContrastiveLoss("clip")
    total = fn(outputs)
    pair = (_clip_by_hand(img, wav, 10.0) + _clip_by_hand(img, other, 10.0)) / 2
    views = _clip_by_hand(wav, other, 10.0)
    assert torch.allclose(total, pair + views, atol=1e-6)
    assert torch.allclose(fn.last_terms["image_waveform"], pair) and torch.allclose(fn.last_terms["waveform_views"], views)
    # weight 0: the views are only bound to the image
    alone = ContrastiveLoss("clip", view_weight=0.0)(outputs)
    assert torch.allclose(alone, pair, atol=1e-6)
    # views that agree exactly score a lower views' term (the term rewards what views share)
    agreeing = ContrastiveLoss("clip")
    agreeing({**outputs, "waveform": torch.cat([wav, wav])})
    assert agreeing.last_terms["waveform_views"] < views


def test_rows_that_are_not_whole_views_are_refused():
    img, wav = _features()
    with pytest.raises(ValueError, match="whole multiple"):
        ContrastiveLoss("clip")({"image": img, "waveform": torch.cat([wav, wav[:1]]), "logit_scale": torch.tensor(10.0)})
    with pytest.raises(ValueError, match="one dim"):
        ContrastiveLoss("clip")({"image": img, "waveform": wav[:, :1], "logit_scale": torch.tensor(10.0)})
    with pytest.raises(ValueError, match="view_weight"):
        ContrastiveLoss("clip", view_weight=float("nan"))
