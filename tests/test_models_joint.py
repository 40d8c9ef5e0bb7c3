"""The joint model: forward and backward, temperature, freezing, save/load and the factory."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seisbind.modalities import ModalityType
from seisbind.models import ContrastiveLoss, SeisBindModel, create_model, get_model_config, list_models


def _batch(batch=4, stations=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 64, 64, generator=g), torch.randn(batch, stations, 3, 256, generator=g)


def test_model_is_four_modality_keyed_module_dicts():
    model = create_model("tiny")
    for name in ("preprocessors", "trunks", "heads", "postprocessors"):
        assert isinstance(getattr(model, name), torch.nn.ModuleDict)
        assert list(getattr(model, name).keys()) == [ModalityType.IMAGE, ModalityType.WAVEFORM]


def test_forward_backward_on_a_batch():
    torch.manual_seed(0)
    model = create_model("tiny").train()
    images, waveforms = _batch()
    out = model(images=images, waveforms=waveforms)
    assert set(out) == {"image", "waveform", "logit_scale", "logit_scales"}
    assert set(out["logit_scales"]) == {"image_waveform"} and torch.equal(out["logit_scales"]["image_waveform"],
                                                                           out["logit_scale"])
    for m in ("image", "waveform"):
        assert out[m].shape == (4, 512)
        assert torch.allclose(out[m].norm(dim=-1), torch.ones(4), atol=1e-5)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)
    loss = ContrastiveLoss("clip")(out)
    assert loss.item() > 0
    loss.backward()
    grads = {
        "image patch embedding": model.trunks["image"].patch_embed.proj.weight.grad,
        "waveform first conv": model.trunks["waveform"].wav2vec2.feature_extractor.conv_layers[0].conv.weight.grad,
        "image projection": model.heads["image"].proj.weight.grad,
        "waveform projection": model.heads["waveform"].proj.weight.grad,
        "logit scale": model.logit_scale.log_scale.grad,
    }
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = create_model("tiny").train()
    images, waveforms = _batch(seed=1)
    loss_fn = ContrastiveLoss("clip")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = loss_fn(model(images=images, waveforms=waveforms))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_logit_scale()
        losses.append(loss.item())
    # The array head needs a few more steps than a time average before it separates the items.
    assert min(losses[-5:]) < losses[0] * 0.5


def test_logit_scale_is_clamped_at_100():
    model = create_model("tiny")
    with torch.no_grad():
        model.logit_scale.log_scale.fill_(math.log(1000.0))
    assert model(images=_batch()[0])["logit_scale"].item() == pytest.approx(100.0)
    model.clamp_logit_scale()
    assert model.logit_scale.log_scale.item() == pytest.approx(math.log(100.0))


def test_siglip_model_has_a_logit_bias():
    model = create_model("tiny", loss="siglip")
    out = model(images=_batch()[0])
    assert out["logit_bias"].item() == pytest.approx(-10.0)
    assert out["logit_scale"].item() == pytest.approx(10.0)
    images, waveforms = _batch()
    ContrastiveLoss("siglip")(model(images=images, waveforms=waveforms)).backward()
    assert model.logit_scale.bias.grad is not None


def test_forward_needs_an_input():
    model = create_model("tiny")
    with pytest.raises(ValueError, match="needs the input of at least one modality of"):
        model()
    with pytest.raises(ValueError, match="unknown modality 'text'"):
        model.encode("text", torch.zeros(1))


# ---------------------------------------------------------------- freezing


def test_lock_tower_freezes_the_trunk_only():
    model = create_model("tiny")
    model.lock_tower(ModalityType.IMAGE)
    assert not any(p.requires_grad for p in model.trunks["image"].parameters())
    assert all(p.requires_grad for p in model.trunks["waveform"].parameters())
    assert all(p.requires_grad for p in model.heads["image"].parameters())
    images, waveforms = _batch()
    ContrastiveLoss()(model(images=images, waveforms=waveforms)).backward()
    assert model.trunks["image"].patch_embed.proj.weight.grad is None
    assert model.heads["image"].proj.weight.grad is not None


def test_lock_tower_can_leave_the_last_blocks_trainable():
    model = create_model("tiny")
    model.lock_tower(ModalityType.WAVEFORM, unlocked_blocks=1)
    w2v = model.trunks["waveform"].wav2vec2
    trainable = {n for n, p in w2v.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.layers.1.", "encoder.layer_norm.")) for n in trainable)
    assert all(p.requires_grad for p in w2v.encoder.layers[1].parameters())
    model.lock_tower(ModalityType.IMAGE, unlocked_blocks=2)  # all blocks of the tiny trunk
    frozen = {n for n, p in model.trunks["image"].named_parameters() if not p.requires_grad}
    assert frozen == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    with pytest.raises(ValueError, match=r"must be in \[0, 2\]; got 3"):
        model.lock_tower(ModalityType.IMAGE, unlocked_blocks=3)


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_save_load_round_trip_gives_identical_embeddings(tmp_path, loss):
    torch.manual_seed(1)
    model = create_model("tiny", loss=loss).eval()
    with torch.no_grad():
        model.logit_scale.log_scale.fill_(2.5)
    images, waveforms = _batch(seed=2)
    mask = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architecture"] == "SeisBindModel" and config["name"] == "tiny" and config["loss"] == loss
    loaded = SeisBindModel.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        a = model(images=images, waveforms=waveforms, station_mask=mask)
        b = loaded(images=images, waveforms=waveforms, station_mask=mask)
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
        else:
            assert torch.equal(a[key], b[key]), key


def test_from_pretrained_rejects_a_mismatched_directory(tmp_path):
    create_model("tiny").save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["embed_dim"] = 256
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"heads\.image\.proj\.weight: expected \(256, 64\), got \(512, 64\)"):
        SeisBindModel.from_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="config.json"):
        SeisBindModel.from_pretrained(tmp_path / "empty")


# ---------------------------------------------------------------- factory


def test_factory_lists_and_builds_by_name(tmp_path, monkeypatch):
    assert {"tiny", "sfm-seislm-base", "sfm-seislm-large"} <= set(list_models())
    model = create_model("tiny", embed_dim=128, image={"img_size": 32})
    assert model.config.embed_dim == 128 and model.config.image.img_hw == (32, 32)
    assert model.config.image.width == 64  # untouched keys of the section are kept
    assert model.encode_image(torch.randn(1, 1, 32, 32)).shape == (1, 128)

    custom = get_model_config("tiny") | {"name": "mine", "embed_dim": 64}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(custom))
    assert create_model(str(path)).config.embed_dim == 64
    monkeypatch.setenv("SEISBIND_MODEL_CONFIGS", str(tmp_path))
    assert "mine" in list_models() and create_model("mine").config.name == "mine"


@pytest.mark.parametrize("name, overrides, message", [
    ("no-such-model", {},
     r"unknown model 'no-such-model'.*looked in .*configs/models/no-such-model\.json.*Available: \["),
    ("tiny", {"embedding_dim": 3}, r"unknown key\(s\) in model config: \['embedding_dim'\]"),
    ("tiny", {"image": {"imgsize": 3}}, r"unknown key\(s\) in image tower config: \['imgsize'\]"),
    ("tiny", {"loss": "hinge"}, r"loss must be one of \('clip', 'siglip'\); got 'hinge'"),
    ("tiny", {"image": {"img_size": 70}}, r"img_size \(70, 70\) is not a multiple of patch_size 16"),
])
def test_factory_errors(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **overrides)


def test_create_model_loads_checkpoints_by_path(tmp_path):
    from models_fakes import seislm_encoder_weights, seislm_hf_config, write_seislm_checkpoint, write_sfm_checkpoint

    img_w = write_sfm_checkpoint(tmp_path / "sfm.pth", width=64, depth=2)
    cfg = seislm_hf_config()
    wav_w, _ = seislm_encoder_weights(cfg)
    write_seislm_checkpoint(tmp_path / "seislm.ckpt", wav_w, cfg)
    model = create_model("tiny", image_checkpoint=tmp_path / "sfm.pth", waveform_checkpoint=tmp_path / "seislm.ckpt")
    assert torch.equal(model.trunks["image"].blocks[0].attn.qkv.weight, img_w["blocks.0.attn.qkv.weight"])
    assert torch.equal(model.trunks["waveform"].wav2vec2.encoder.layer_norm.weight, wav_w["encoder.layer_norm.weight"])


def test_non_finite_weights_are_refused_at_load_and_embeddings_are_checked(tmp_path):
    from safetensors.torch import load_file, save_file

    model = create_model("tiny")
    folder = model.save_pretrained(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.startswith("trunks.image"))
    state[key][..., 0] = float("nan")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"non-finite \(NaN or infinite\) weights in 1 tensor"):
        SeisBindModel.from_pretrained(folder)
    with torch.no_grad():
        model.heads["image"].proj.weight.fill_(float("inf"))
        with pytest.raises(ValueError, match="image tower produced non-finite embeddings"):
            model.encode_image(torch.randn(1, 1, 64, 64))
        # Near float32's limit, and float64 beyond it, sections still embed.
        fresh = create_model("tiny").eval()
        x = torch.randn(1, 1, 64, 64)
        assert torch.allclose(fresh.encode_image(x / x.abs().max() * 3e38), fresh.encode_image(x), atol=1e-5)
        assert torch.isfinite(fresh.encode_image(x.double() * 1e40)).all()


def test_waveforms_beyond_float32_range_embed_like_any_others():
    model = create_model("tiny").eval()
    x = torch.randn(1, 3, 3, 300, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(model.encode_waveform(x * 1e40), model.encode_waveform(x.float()), atol=1e-4)
        assert torch.allclose(model.encode_waveform(x.float() * 1e-30), model.encode_waveform(x.float()), atol=1e-4)


def test_foreign_model_folders_are_refused_in_one_line(tmp_path):
    import pickle

    folder = create_model("tiny").save_pretrained(tmp_path / "m")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))  # a pickle under the safetensors name
    with pytest.raises(ValueError, match=r"model.safetensors is not a safetensors file .* a pickled checkpoint is never"):
        SeisBindModel.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(weights)
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json must hold a JSON object .* got list"):
        SeisBindModel.from_pretrained(folder)
    (folder / "config.json").write_text(config[:40])
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        SeisBindModel.from_pretrained(folder)


def test_a_huge_config_beside_small_weights_is_refused_before_allocating(tmp_path, monkeypatch):
    folder = create_model("tiny").save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["image"].update(width=16384, depth=48, num_heads=16)  # ~150 G parameters if built
    (folder / "config.json").write_text(json.dumps(config))
    built = []
    original = SeisBindModel.__init__

    def counting_init(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the device the model is being built on
        original(self, *args, **kwargs)

    monkeypatch.setattr(SeisBindModel, "__init__", counting_init)
    with pytest.raises(ValueError, match="does not match its config: .*wrong shapes"):
        SeisBindModel.from_pretrained(folder)
    assert built == ["meta"]  # only the shape check ran; no real model was allocated
