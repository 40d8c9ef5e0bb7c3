"""A modality is data: the model, forward, loss and save/load loop over the registered towers, so a
fourth modality needs only its own entries; and training/validation share one recall."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from seisbind.models import ContrastiveLoss, SeisBindModel, create_model, get_model_config
from seisbind.models import config as model_config
from seisbind.models import towers


@dataclasses.dataclass
class FakeTowerConfig:
    """A 'gravity profile' modality: a vector of readings along the section."""

    length: int = 12
    width: int = 16


class FakePreprocessor(nn.Module):
    def __init__(self, cfg):
        super().__init__()

    def forward(self, x, **_):
        return {"trunk": {"x": torch.as_tensor(x, dtype=torch.float32)}, "head": {}}


class FakeTrunk(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.width = cfg.width
        self.net = nn.Sequential(nn.Linear(cfg.length, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.width))

    def forward(self, x):
        return self.net(x)

    def trainable_tail(self, unlocked_blocks):
        return []


@pytest.fixture
def fake_modality(monkeypatch):
    """Register 'gravity': one entry in the config registry and one tower, nothing else."""
    monkeypatch.setitem(model_config.TOWER_CONFIGS, "gravity", FakeTowerConfig)
    monkeypatch.setitem(towers._BUILDERS, "gravity", lambda: towers.Tower(
        FakePreprocessor, FakeTrunk, lambda cfg, trunk, dim: nn.Linear(trunk.width, dim)))
    monkeypatch.delitem(towers._TOWERS, "gravity", raising=False)
    yield "gravity"
    towers._TOWERS.pop("gravity", None)


def _tiny_with(extra: dict, bind=None):
    cfg = get_model_config("tiny")
    cfg.update(extra)
    if bind is not None:
        cfg["bind"] = bind
    return SeisBindModel(cfg)


def test_a_fourth_modality_is_only_its_own_entries(fake_modality, tmp_path):
    torch.manual_seed(0)
    model = _tiny_with({"gravity": {"length": 12, "width": 16}})
    assert model.modalities == ("image", "waveform", "gravity")
    assert model.config.pairs == [("image", "waveform"), ("image", "gravity")]  # bound through images
    assert set(model.logit_scales) == {"image_waveform", "image_gravity"}
    images, gravity = torch.randn(4, 1, 64, 64), torch.randn(4, 12)
    out = model({"image": images, "gravity": gravity})
    assert set(out) >= {"image", "gravity", "logit_scales"} and out["gravity"].shape == (4, 512)
    assert torch.allclose(out["gravity"].norm(dim=-1), torch.ones(4), atol=1e-5)
    loss = ContrastiveLoss("clip", pairs=model.config.pairs)(out)
    loss.backward()
    assert model.trunks["gravity"].net[0].weight.grad is not None
    assert model.logit_scales["image_waveform"].log_scale.grad is None  # no waveform in the batch
    model.save_pretrained(tmp_path / "m")
    loaded = SeisBindModel.from_pretrained(tmp_path / "m").eval()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded({"gravity": gravity})["gravity"], model({"gravity": gravity})["gravity"])


def test_forward_takes_an_inputs_dict_equal_to_the_keyword_call():
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    images, waves = torch.randn(2, 1, 64, 64), torch.randn(2, 3, 3, 200)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    with torch.no_grad():
        a = model({"image": images, "waveform": waves, "station_mask": mask})
        b = model(images=images, waveforms=waves, station_mask=mask)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["waveform"], b["waveform"])
    with pytest.raises(ValueError, match="unknown input"):
        model({"image": images, "sound": images})
    with pytest.raises(ValueError, match="station_mask given without the waveform input"):
        model({"image": images, "station_mask": mask})


def test_each_pair_has_its_own_temperature_and_old_weights_load(tmp_path):
    from safetensors.torch import load_file, save_file

    model = create_model("tiny")
    model.save_pretrained(tmp_path / "m")
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    old = {("logit_scale." + k.split(".", 2)[2] if k.startswith("logit_scales.") else k): v for k, v in state.items()}
    assert "logit_scale.log_scale" in old
    save_file(old, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})  # as saved before
    loaded = SeisBindModel.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.logit_scale.log_scale, model.logit_scale.log_scale)


def test_bind_pairs_must_name_towers_of_the_model():
    with pytest.raises(ValueError, match="bind pairs must name two of the model's towers"):
        _tiny_with({}, bind=[["image", "text"]])
    with pytest.raises(ValueError, match="unknown modality section"):
        model_config.SeisBindConfig(towers={"image": {}, "sound": {}})


def test_training_validation_and_evaluation_share_one_recall_with_pessimistic_ties():
    """A constant embedding ranks every image equal: the true one ranks last, in both implementations."""
    from seisbind.evaluation.metrics import retrieval_report
    from seisbind.training.evaluate import recall_metrics

    images = torch.ones(5, 4) / 2
    waves = torch.ones(5, 2, 4) / 2
    train = recall_metrics(images, waves)
    sims = waves.reshape(10, 4).numpy() @ images.numpy().T
    evaluation = retrieval_report(sims, np.repeat(np.arange(5), 2)[:, None] == np.arange(5)[None, :])
    assert train["wave_to_image_r1"] == evaluation["recall@1"] == 0.0
    assert train["wave_to_image_mean_rank"] == evaluation["mean_rank"] == 5.0
    torch.manual_seed(0)
    images, waves = torch.randn(6, 8), torch.randn(6, 3, 8)
    train = recall_metrics(images, waves)
    sims = waves.reshape(18, 8).numpy() @ images.numpy().T
    evaluation = retrieval_report(sims, np.repeat(np.arange(6), 3)[:, None] == np.arange(6)[None, :])
    assert train["wave_to_image_r1"] == pytest.approx(evaluation["recall@1"])
    assert train["wave_to_image_r5"] == pytest.approx(evaluation["recall@5"])
    assert train["wave_to_image_mrr"] == pytest.approx(evaluation["mrr"])  # best-model's criterion


@pytest.mark.parametrize("name, modalities", [("tiny", ("image", "waveform")),
                                              ("tiny-text", ("image", "waveform", "text"))])  # fmt: skip
def test_two_and_three_modality_models_save_and_load(name, modalities, tmp_path):
    import json

    torch.manual_seed(0)
    model = create_model(name).eval()
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert ("text" in saved) == ("text" in modalities) and saved["bind"][0] == ["image", "waveform"]
    loaded = SeisBindModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.modalities == modalities
    inputs = {"image": torch.randn(2, 1, 64, 64), "waveform": torch.randn(2, 2, 3, 300)}
    if "text" in modalities:
        inputs["text"] = ["a section of folded layers", "site class C, soft soil"]
    with torch.no_grad():
        a, b = model(inputs), loaded(inputs)
    for m in modalities:
        assert torch.equal(a[m], b[m]), m
    assert set(a["logit_scales"]) == {"_".join(p) for p in model.config.pairs}
