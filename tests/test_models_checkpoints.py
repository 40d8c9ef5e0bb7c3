"""Import of SFM and SeisLM checkpoints written with the published key names and shapes."""

from __future__ import annotations

import builtins
import os
import sys

import pytest
import torch
from models_fakes import (
    ML_COLLECTIONS_MODULES,
    seislm_encoder_weights,
    seislm_hf_config,
    write_seislm_checkpoint,
    write_sfm_checkpoint,
)

from seisbind.models import create_model
from seisbind.models.checkpoints import adapt_input_channels, safe_torch_load
from seisbind.models.waveform_tower import MultiChannelWav2Vec2Model


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return create_model("tiny").eval()


# ---------------------------------------------------------------- SFM


def test_sfm_import_loads_encoder_and_drops_decoder(tmp_path, tiny):
    path = tmp_path / "Base.pth"

    def per_channel_constant_pos(w):  # so the interpolated grid has a known answer
        w["pos_embed"][0, 1:] = torch.linspace(-1, 1, w["pos_embed"].shape[-1])

    weights = write_sfm_checkpoint(path, width=64, depth=2, img_size=224, edit=per_channel_constant_pos)
    report = tiny.load_tower_checkpoint("image", path)
    trunk = tiny.trunks["image"]
    assert torch.equal(trunk.patch_embed.proj.weight, weights["patch_embed.proj.weight"])
    assert torch.equal(trunk.blocks[1].mlp.fc2.weight, weights["blocks.1.mlp.fc2.weight"])
    assert torch.equal(trunk.cls_token, weights["cls_token"])
    assert {"mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_pred.bias"} <= set(report.dropped)
    assert not any(k.startswith("decoder") for k in report.loaded)
    # 14x14 checkpoint grid -> the tiny model's 4x4 grid; the class position is kept as is
    assert trunk.pos_embed.shape == (1, 1 + 16, 64)
    assert torch.equal(trunk.pos_embed[0, 0], weights["pos_embed"][0, 0])
    expected = weights["pos_embed"][0, 1].expand(16, -1)
    assert torch.allclose(trunk.pos_embed[0, 1:], expected, atol=1e-5)
    assert "pos_embed" in report.adapted
    assert report.hyper_parameters["mask_ratio"] == 0.75  # argparse.Namespace read without trusting it


def test_sfm_import_without_interpolation_is_exact(tmp_path):
    model = create_model("tiny", image={"img_size": 224}).eval()
    weights = write_sfm_checkpoint(tmp_path / "sfm.pth", width=64, depth=2, img_size=224)
    report = model.load_tower_checkpoint("image", tmp_path / "sfm.pth")
    assert torch.equal(model.trunks["image"].pos_embed, weights["pos_embed"])
    assert report.adapted == {}


def test_sfm_import_reports_missing_and_unexpected_keys(tmp_path, tiny):
    def drop_one(w):
        del w["blocks.0.attn.qkv.weight"]

    write_sfm_checkpoint(tmp_path / "a.pth", edit=drop_one)
    with pytest.raises(ValueError, match=r"missing 1 key.*blocks\.0\.attn\.qkv\.weight"):
        tiny.load_tower_checkpoint("image", tmp_path / "a.pth")

    write_sfm_checkpoint(tmp_path / "b.pth", depth=3)  # one block more than the tiny trunk
    with pytest.raises(ValueError, match=r"unexpected key.*blocks\.2\.attn\.qkv\.weight"):
        tiny.load_tower_checkpoint("image", tmp_path / "b.pth")


def test_sfm_import_rejects_wrong_shapes(tmp_path, tiny):
    write_sfm_checkpoint(tmp_path / "wide.pth", width=96, depth=2)
    with pytest.raises(ValueError, match=r"cls_token: model expects \(1, 1, 64\), checkpoint has \(1, 1, 96\)"):
        tiny.load_tower_checkpoint("image", tmp_path / "wide.pth")


def test_sfm_checkpoint_without_model_key_is_refused(tmp_path, tiny):
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"expected the weights under 'model'; found \['epoch', 'optimizer'\]"):
        tiny.load_tower_checkpoint("image", tmp_path / "odd.pth")


def test_image_channel_adaptation_one_to_five_keeps_the_response(tmp_path):
    """SFM's 1-channel patch embedding on 5 identical channels (OpenFWI's 5 shots) answers as on one."""
    weights = write_sfm_checkpoint(tmp_path / "sfm.pth", width=64, depth=2)
    model = create_model("tiny", image={"in_chans": 5}).eval()
    report = model.load_tower_checkpoint("image", tmp_path / "sfm.pth")
    w = model.trunks["image"].patch_embed.proj.weight
    assert w.shape == (64, 5, 16, 16)
    assert "patch_embed.proj.weight" in report.adapted
    x = torch.randn(2, 1, 16, 16)
    one = torch.nn.functional.conv2d(x, weights["patch_embed.proj.weight"], stride=16)
    five = torch.nn.functional.conv2d(x.expand(-1, 5, -1, -1), w, stride=16)
    assert torch.allclose(one, five, atol=1e-6)


@pytest.mark.parametrize("src, dst", [(3, 5), (5, 3)])
def test_image_channel_adaptation_three_and_five(tmp_path, src, dst):
    weights = write_sfm_checkpoint(tmp_path / "sfm.pth", width=64, depth=2, in_chans=src)
    model = create_model("tiny", image={"in_chans": dst}).eval()
    model.load_tower_checkpoint("image", tmp_path / "sfm.pth")
    w0 = weights["patch_embed.proj.weight"]
    expected = torch.cat([w0, w0], dim=1)[:, :dst] * (src / dst)  # timm: repeat, truncate, rescale
    assert torch.allclose(model.trunks["image"].patch_embed.proj.weight, expected)


def test_channel_adaptation_can_be_refused(tmp_path):
    write_sfm_checkpoint(tmp_path / "sfm.pth", width=64, depth=2)
    model = create_model("tiny", image={"in_chans": 5})
    with pytest.raises(ValueError, match=r"patch_embed\.proj\.weight: model expects \(64, 5, 16, 16\)"):
        model.trunks["image"].load_sfm_checkpoint(tmp_path / "sfm.pth", adapt_channels=False)


def test_adapt_input_channels_sums_to_one_channel():
    w = torch.randn(8, 3, 5)
    assert torch.allclose(adapt_input_channels(w, 1), w.sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="3 or 4 dims"):
        adapt_input_channels(torch.randn(8, 3), 1)


# ---------------------------------------------------------------- SeisLM


@pytest.mark.parametrize("spelling", ["parametrizations", "legacy"])
def test_seislm_import_both_weight_norm_spellings(tmp_path, tiny, spelling):
    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg, in_chans=3, weight_norm=spelling)
    write_seislm_checkpoint(tmp_path / "seislm.ckpt", weights, cfg)
    assert not any(m in sys.modules for m in ML_COLLECTIONS_MODULES)  # loading must not need it
    report = tiny.load_tower_checkpoint("waveform", tmp_path / "seislm.ckpt")
    w2v = tiny.trunks["waveform"].wav2vec2
    assert torch.equal(w2v.feature_extractor.conv_layers[0].conv.weight,
                       weights["feature_extractor.conv_layers.0.conv.weight"])
    g_name, v_name = (("weight_g", "weight_v") if spelling == "legacy" else
                      ("parametrizations.weight.original0", "parametrizations.weight.original1"))
    g_key, v_key = "encoder.pos_conv_embed.conv." + g_name, "encoder.pos_conv_embed.conv." + v_name
    pos = w2v.encoder.pos_conv_embed.conv.parametrizations.weight
    assert torch.equal(pos.original0, weights[g_key])
    assert torch.equal(pos.original1, weights[v_key])
    assert torch.equal(w2v.encoder.layers[1].feed_forward.output_dense.weight,
                       weights["encoder.layers.1.feed_forward.output_dense.weight"])
    dropped = set(report.dropped)
    assert {"model.quantizer.codevectors", "model.project_hid.weight", "model.project_q.bias",
            "model.wav2vec2.masked_spec_embed"} <= dropped
    assert report.hyper_parameters["config"]["model_config"]["hidden_size"] == 32
    assert report.hyper_parameters["config"]["data_config"]["data_name"] == ["ETHZ", "GEOFON", "STEAD"]


def test_one_channel_encoder_matches_stock_transformers(tmp_path):
    """With one input channel the multi-channel encoder is exactly a stock HF Wav2Vec2Model."""
    cfg = seislm_hf_config(mask_time_prob=0.0)
    weights, stock = seislm_encoder_weights(cfg, in_chans=1)
    stock.load_state_dict(weights)
    write_seislm_checkpoint(tmp_path / "one.ckpt", weights, cfg, in_chans=1)
    model = create_model("tiny", waveform={"in_chans": 1}).eval()
    model.load_tower_checkpoint("waveform", tmp_path / "one.ckpt")
    x = torch.randn(2, 400)
    with torch.no_grad():
        ours = model.trunks["waveform"].wav2vec2(input_values=x[:, None]).last_hidden_state
        ref = stock(input_values=x).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)


def test_a_neighbour_trunk_loads_seislm_and_reads_each_station_as_it_did(tmp_path):
    """With neighbour stations stacked into the trunk's input, a SeisLM checkpoint still loads: its
    kernel takes the station's own channels and the neighbours' start at zero, so until training
    the trunk's frames are those of the plain trunk with the same checkpoint."""
    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg, in_chans=3)
    write_seislm_checkpoint(tmp_path / "s.ckpt", weights, cfg)
    plain = create_model("tiny", waveform={"head": "array"}).eval()
    stacked = create_model("tiny", waveform={"head": "array", "neighbour_stations": 1}).eval()
    plain.load_tower_checkpoint("waveform", tmp_path / "s.ckpt")
    report = stacked.load_tower_checkpoint("waveform", tmp_path / "s.ckpt")
    key = "feature_extractor.conv_layers.0.conv.weight"
    assert "neighbour channels start at zero" in report.adapted[key]
    w = stacked.trunks["waveform"].wav2vec2.feature_extractor.conv_layers[0].conv.weight
    assert torch.equal(w[:, :3], weights[key]) and not w[:, 3:].any()
    x = torch.randn(2, 5, 3, 300)
    with torch.no_grad():
        a, b = (m.trunks["waveform"](**m.preprocessors["waveform"](x)["trunk"]) for m in (plain, stacked))
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("src, dst", [(3, 5), (5, 3)])
def test_waveform_channel_adaptation(tmp_path, src, dst):
    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg, in_chans=src)
    write_seislm_checkpoint(tmp_path / "s.ckpt", weights, cfg, in_chans=src)
    model = create_model("tiny", waveform={"in_chans": dst}).eval()
    report = model.load_tower_checkpoint("waveform", tmp_path / "s.ckpt")
    w0 = weights["feature_extractor.conv_layers.0.conv.weight"]
    expected = torch.cat([w0, w0], dim=1)[:, :dst] * (src / dst)
    got = model.trunks["waveform"].wav2vec2.feature_extractor.conv_layers[0].conv.weight
    assert got.shape == (32, dst, 3)
    assert torch.allclose(got, expected)
    assert "feature_extractor.conv_layers.0.conv.weight" in report.adapted
    out = model.encode_waveform(torch.randn(2, 1, dst, 300))
    assert out.shape == (2, 512)


def test_seislm_import_rejects_wrong_shapes_and_keys(tmp_path, tiny):
    cfg = seislm_hf_config(hidden=48, pos_groups=4, heads=2)
    weights, _ = seislm_encoder_weights(cfg)
    write_seislm_checkpoint(tmp_path / "wide.ckpt", weights, cfg)
    with pytest.raises(ValueError, match=r"encoder\.layer_norm\.weight: model expects \(32,\), checkpoint has \(48,\)"):
        tiny.load_tower_checkpoint("waveform", tmp_path / "wide.ckpt")

    cfg = seislm_hf_config(layers=3)
    weights, _ = seislm_encoder_weights(cfg)
    write_seislm_checkpoint(tmp_path / "deep.ckpt", weights, cfg)
    with pytest.raises(ValueError, match=r"unexpected key.*encoder\.layers\.2\.attention\.k_proj\.weight"):
        tiny.load_tower_checkpoint("waveform", tmp_path / "deep.ckpt")


def test_seislm_parameter_count_is_stock_plus_extra_channels():
    from transformers import Wav2Vec2Model

    cfg = seislm_hf_config(mask_time_prob=0.0)
    stock = sum(p.numel() for p in Wav2Vec2Model(cfg).parameters())
    cfg.input_dim = 3
    ours = sum(p.numel() for p in MultiChannelWav2Vec2Model(cfg).parameters())
    assert ours == stock + 2 * 32 * 3


# ---------------------------------------------------------------- untrusted pickles


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload, name", [(_Shell, "system"), (_Exec, "builtins.exec")])
def test_foreign_pickled_code_is_refused_and_not_run(tmp_path, tiny, payload, name):
    marker = tmp_path / "pwned"
    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg)
    path = tmp_path / "evil.ckpt"
    write_seislm_checkpoint(path, weights, cfg, extra={"callbacks": {"Evil": payload(marker)}})
    with pytest.raises(ValueError, match=rf"does not load.*{name}.*Nothing was executed"):
        tiny.load_tower_checkpoint("waveform", path)
    assert not marker.exists()


def test_foreign_class_in_sfm_file_is_refused(tmp_path):
    torch.save({"model": {"w": torch.ones(1)}, "args": _Exec(tmp_path / "x")}, tmp_path / "s.pth")
    with pytest.raises(ValueError, match=r"builtins\.exec"):
        safe_torch_load(tmp_path / "s.pth")
    assert not (tmp_path / "x").exists()


def test_missing_checkpoint_file(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        tiny.load_tower_checkpoint("image", tmp_path / "nope.pth")


def test_named_harmless_classes_can_be_skipped_instead_of_refused(tmp_path, tiny):
    import pathlib

    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg)
    path = tmp_path / "paths.ckpt"
    write_seislm_checkpoint(path, weights, cfg, extra={"callbacks": {"dir": pathlib.PurePosixPath("/runs/x")}})
    with pytest.raises(ValueError, match=r"pathlib\.PurePosixPath.*extra_inert_globals"):
        tiny.load_tower_checkpoint("waveform", path)
    report = tiny.load_tower_checkpoint("waveform", path, extra_inert_globals=["pathlib.PurePosixPath"])
    assert "encoder.layer_norm.weight" in report.loaded


def test_a_conv_stem_keeps_its_own_weights_and_loads_the_rest_of_sfm(tmp_path):
    model = create_model("tiny", image={"img_size": 224, "stem": "conv"}).eval()
    stem_before = {k: v.clone() for k, v in model.trunks["image"].patch_embed.state_dict().items()}
    weights = write_sfm_checkpoint(tmp_path / "sfm.pth", width=64, depth=2, img_size=224)
    report = model.load_tower_checkpoint("image", tmp_path / "sfm.pth")
    trunk = model.trunks["image"]
    assert torch.equal(trunk.blocks[0].attn.qkv.weight, weights["blocks.0.attn.qkv.weight"])
    assert torch.equal(trunk.pos_embed, weights["pos_embed"])
    assert {"patch_embed.proj.weight", "patch_embed.proj.bias"} <= set(report.dropped)
    for key, value in trunk.patch_embed.state_dict().items():
        assert torch.equal(value, stem_before[key]), key
    # Four stride-2 convolutions make the same 14 x 14 token grid as SFM's 16 x 16 patches.
    assert trunk.patch_embed.grid_size == (14, 14)
    assert model.encode_image(torch.randn(2, 1, 224, 224)).shape == (2, 512)


def test_a_conv_stem_for_patches_that_are_not_a_power_of_two():
    model = create_model("tiny", image={"img_size": 70, "patch_size": 10, "stem": "conv"}).eval()
    stem = model.trunks["image"].patch_embed.proj
    strides = [m.stride[0] for m in stem if isinstance(m, torch.nn.Conv2d)]
    assert strides == [2, 5]  # one halving, then the remaining factor 5
    tokens = model.trunks["image"](torch.randn(1, 1, 70, 70))
    assert tokens.shape == (1, 1 + 49, 64)
