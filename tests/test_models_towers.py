"""The towers: shapes, station handling, normalisation, bad input and published sizes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seisbind.models import SeisBindModel, create_model, get_model_config
from seisbind.models.config import SeisBindConfig, WaveformTowerConfig
from seisbind.models.preprocess import normalize_images, normalize_waveforms


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny").eval()


@pytest.fixture(scope="module")
def tiny_station_pool():
    """The first waveform tower (per-station time average, attention pool over an unordered set)."""
    torch.manual_seed(0)
    return create_model("tiny", waveform={"head": "station_pool"}).eval()


def _wave(batch=2, stations=1, channels=3, samples=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, stations, channels, samples, generator=g)


# ---------------------------------------------------------------- shapes and stations


def test_one_and_many_stations_give_one_embedding_per_item(tiny):
    with torch.no_grad():
        one = tiny.encode_waveform(_wave(stations=1))
        many = tiny.encode_waveform(_wave(batch=3, stations=7))
        tokens = tiny.trunks["waveform"](normalize_waveforms(_wave(stations=4)), torch.ones(2, 4, dtype=torch.bool))
    assert one.shape == (2, 512) and many.shape == (3, 512)
    # 300 samples, two stride-2 kernel-3 convolutions: (300-3)//2+1 = 149, (149-3)//2+1 = 74 frames
    assert tokens.shape == (2, 4, 74, 32)
    assert torch.allclose(one.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_masked_stations_do_not_change_the_embedding(tiny):
    real = _wave(batch=2, stations=2, seed=1)
    garbage = _wave(batch=2, stations=3, seed=2) * 1e6
    garbage[0, 0, 0, :5] = float("nan")
    garbage[1, 2, 1, 7] = float("inf")
    padded = torch.cat([real, garbage], dim=1)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        plain = tiny.encode_waveform(real)
        masked = tiny.encode_waveform(padded, station_mask=mask)
    assert torch.isfinite(masked).all()
    assert torch.allclose(plain, masked, atol=1e-6)


def test_station_order_does_not_matter_and_items_are_independent(tiny_station_pool):
    tiny = tiny_station_pool
    x = _wave(batch=2, stations=4, seed=3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a = tiny.encode_waveform(x, mask)
        b = tiny.encode_waveform(x[:, perm], mask[:, perm])
        alone = tiny.encode_waveform(x[1:, [0, 2, 3]])
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[1], alone[0], atol=1e-6)


def test_station_attention_respects_a_trained_query(tiny_station_pool):
    """With a non-zero query the pooling weighs stations unequally, yet still ignores absent ones."""
    tiny = tiny_station_pool
    head = tiny.heads["waveform"].pool
    saved = head.query.detach().clone()
    try:
        with torch.no_grad():
            head.query.normal_()
            x = _wave(batch=1, stations=3, seed=4)
            three = tiny.encode_waveform(x)
            two = tiny.encode_waveform(x, torch.tensor([[1, 1, 0]], dtype=torch.bool))
            two_plain = tiny.encode_waveform(x[:, :2])
        assert not torch.allclose(three, two, atol=1e-4)
        assert torch.allclose(two, two_plain, atol=1e-6)
    finally:
        with torch.no_grad():
            head.query.copy_(saved)


def test_image_tokens_and_dynamic_size():
    model = create_model("tiny", image={"dynamic_img_size": True}).eval()
    with torch.no_grad():
        tokens = model.trunks["image"](torch.randn(2, 1, 64, 64))
        wide = model.encode_image(torch.randn(2, 1, 48, 96))
    assert tokens.shape == (2, 1 + 16, 64)
    assert wide.shape == (2, 512)


def test_image_pool_avg_averages_the_patch_tokens():
    """pool="avg" embeds the mean of the patch tokens (not the class token), by hand."""
    model = create_model("tiny", image={"pool": "avg"}).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        tokens = model.trunks["image"](normalize_images(x))
        head = model.heads["image"]
        by_hand = torch.nn.functional.normalize(head.proj(head.norm(tokens)[:, 1:].mean(1)), dim=-1)
        assert torch.allclose(model.encode_image(x), by_hand, atol=1e-6)
        class_token_only = torch.nn.functional.normalize(head.proj(head.norm(tokens)[:, 0]), dim=-1)
        assert not torch.allclose(model.encode_image(x), class_token_only, atol=1e-3)
    with pytest.raises(ValueError, match="pool must be one of"):
        create_model("tiny", image={"pool": "max"})


def test_image_pool_depth_keeps_each_depth_row_in_order(tmp_path):
    """pool="depth": each row of the patch grid (one depth) averaged along distance, the rows
    concatenated top to bottom: by hand, blind to the order of tokens within a row, not to the
    order of the rows; a fixed image size is required."""
    from seisbind.models.heads import DepthProfilePool

    model = create_model("tiny", image={"pool": "depth"}).eval()
    x = torch.randn(2, 1, 64, 64)  # a 4 x 4 grid of 16-pixel patches
    with torch.no_grad():
        tokens = model.trunks["image"](normalize_images(x))
        head = model.heads["image"]
        rows = head.norm(tokens)[:, 1:].reshape(2, 4, 4, -1).mean(2)  # (batch, depth, width)
        by_hand = torch.nn.functional.normalize(head.proj(rows.flatten(1)), dim=-1)
        assert torch.allclose(model.encode_image(x), by_hand, atol=1e-6)
    assert head.proj.in_features == 4 * 64
    pool, grid = DepthProfilePool(rows=3), torch.randn(2, 1 + 3 * 5, 8)
    within = torch.cat([grid[:, :1], grid[:, 1:].reshape(2, 3, 5, 8)[:, :, torch.randperm(5)].reshape(2, 15, 8)], 1)
    across = torch.cat([grid[:, :1], grid[:, 1:].reshape(2, 3, 5, 8)[:, [2, 0, 1]].reshape(2, 15, 8)], 1)
    assert torch.allclose(pool(grid), pool(within), atol=1e-6)
    assert not torch.allclose(pool(grid), pool(across), atol=1e-3)
    with pytest.raises(ValueError, match="do not form 4 rows"):
        DepthProfilePool(rows=4)(grid)
    with pytest.raises(ValueError, match="needs a fixed img_size"):
        create_model("tiny", image={"pool": "depth", "dynamic_img_size": True})
    model.save_pretrained(tmp_path / "depth")  # the wider projection comes back from the config
    from seisbind.models.joint import SeisBindModel

    with torch.no_grad():
        assert torch.equal(SeisBindModel.from_pretrained(tmp_path / "depth").eval().encode_image(x), model.encode_image(x))


# ---------------------------------------------------------------- normalisation


def test_image_normalisation_is_per_image():
    g = torch.Generator().manual_seed(7)
    x = torch.stack([torch.randn(1, 8, 8, generator=g) * 5 + 3, torch.randn(1, 8, 8, generator=g) * 0.01 - 7])
    y = normalize_images(x)
    for i in range(2):
        mean, std = x[i].mean(), x[i].std(unbiased=False)
        assert torch.allclose(y[i], (x[i] - mean) / std, atol=1e-3)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(y.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)
    # Scale-free and overflow-free: finite float32 values near the limit normalise like any others.
    huge = normalize_images(x * 1e37)
    assert torch.isfinite(huge).all() and torch.allclose(huge, y, atol=1e-4)


def test_image_normalisation_fixed_keeps_absolute_values():
    """Velocity maps: (x - image_mean) / image_std, so a map 20 % faster is a different input."""
    from seisbind.models.config import ImageTowerConfig

    cfg = ImageTowerConfig(img_size=8, patch_size=4, width=8, depth=1, num_heads=1, normalize="fixed",
                           image_mean=3000.0, image_std=1000.0)
    v = torch.full((1, 1, 8, 8), 2000.0)
    v[..., 4:, :] = 3500.0
    assert torch.allclose(normalize_images(v, cfg)[0, 0, :, 0], torch.tensor([-1.0] * 4 + [0.5] * 4))
    assert not torch.allclose(normalize_images(v * 1.2, cfg), normalize_images(v, cfg))
    assert torch.allclose(normalize_images(v * 1.2), normalize_images(v), atol=1e-5)  # per-image: the same
    with pytest.raises(ValueError, match="normalize must be one of"):
        ImageTowerConfig(normalize="zscore")
    with pytest.raises(ValueError, match="image_std positive"):
        ImageTowerConfig(normalize="fixed", image_std=0.0)


def test_waveform_normalisation_per_channel_and_dead_channels():
    x = _wave(batch=1, stations=3, samples=500, seed=5)
    x[0, 0] = x[0, 0] * torch.tensor([1.0, 1e-9, 300.0])[:, None] + torch.tensor([4.0, 0.0, -80.0])[:, None]
    x[0, 1, 0] = 12.5  # a flat (dead) Z component at station 1
    x[0, 2] = 0.0  # station 2 entirely dead
    y = normalize_waveforms(x)
    # every live channel, the nano-scale one too, is demeaned and scaled to unit std
    assert torch.allclose(y[0, 0].mean(dim=-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y[0, 0].std(dim=-1, unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(y[0, 0, 1], (x[0, 0, 1] - x[0, 0, 1].mean()) / x[0, 0, 1].std(unbiased=False), atol=1e-4)
    assert torch.equal(y[0, 1, 0], y[0, 1, 1])  # the dead channel copies the first live one
    assert not torch.equal(y[0, 1, 1], y[0, 1, 2])
    assert torch.equal(y[0, 2], torch.zeros(3, 500))


def test_record_log_input_scales_the_whole_record_by_its_peak_and_compresses_it():
    """``input_norm: record_log``: the trunk reads the record divided by one number and
    log-compressed, so one station 10x louder stays louder; absent stations are zeros."""
    model = create_model("tiny", waveform={"input_norm": "record_log"})
    x = _wave(batch=2, stations=3, samples=500, seed=7) * 1e-9
    x[:, 1] *= 10.0
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    trunk = model.preprocessors["waveform"](x, mask)["trunk"]["waveforms"]
    peak = torch.stack([x[0].abs().max(), x[1, :2].abs().max()])[:, None, None, None]
    by_hand = torch.sign(x) * torch.log1p((x / peak).abs() / 0.01) / math.log1p(100.0)
    assert torch.allclose(trunk[0], by_hand[0], atol=1e-5) and torch.allclose(trunk[1, :2], by_hand[1, :2], atol=1e-5)
    assert not trunk[1, 2].any() and trunk.abs().max() <= 1.0 + 1e-6
    assert trunk[:, 1].abs().mean() > 2 * trunk[:, 0].abs().mean()  # the loud station reads louder
    again = model.preprocessors["waveform"](x * 3e6, mask)["trunk"]["waveforms"]
    assert torch.allclose(trunk, again, atol=1e-5)  # one gain for the whole record changes nothing
    with pytest.raises(ValueError, match="input_norm must be one of"):
        create_model("tiny", waveform={"input_norm": "trace"})


def test_constant_offset_does_not_change_the_embedding(tiny):
    x = _wave(stations=2, seed=6)
    with torch.no_grad():
        assert torch.allclose(tiny.encode_waveform(x), tiny.encode_waveform(x * 40 + 1000), atol=1e-4)
        img = torch.randn(2, 1, 64, 64)
        assert torch.allclose(tiny.encode_image(img), tiny.encode_image(img * 3 - 5), atol=1e-4)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("images, message", [
    (torch.randn(2, 64, 64), r"4 dimensions \(batch, channels, height, width\); got shape \(2, 64, 64\)"),
    (torch.randn(2, 3, 64, 64), r"1 channel\(s\); got 3"),
    (torch.randn(2, 1, 96, 64), r"must be 64x64 \(height x width\); got 96x64.*dynamic_img_size"),
])
def test_bad_images(tiny, images, message):
    with pytest.raises(ValueError, match=message):
        tiny.encode_image(images)


@pytest.mark.parametrize("value, message", [(float("nan"), r"1 NaN and 0 infinite"),
                                            (float("inf"), r"0 NaN and 1 infinite")])
def test_non_finite_images_and_waveforms(tiny, value, message):
    img = torch.randn(1, 1, 64, 64)
    img[0, 0, 3, 3] = value
    with pytest.raises(ValueError, match="images must be finite; got " + message):
        tiny.encode_image(img)
    wav = _wave()
    wav[1, 0, 2, 10] = value
    with pytest.raises(ValueError, match=r"waveforms \(present stations\) must be finite; got " + message):
        tiny.encode_waveform(wav)


@pytest.mark.parametrize("make, mask, message", [
    (lambda: torch.randn(2, 1, 3, 300, 1), None,
     r"4 dimensions \(batch, stations, channels, time\); got shape \(2, 1, 3, 300, 1\)"),
    (lambda: [[0.0] * 300] * 3, None, r"must be a torch.Tensor or a NumPy array; got list"),
    (lambda: _wave(channels=2), None, r"3 channel\(s\) per station; got 2"),
    (lambda: _wave(samples=6), None, r"at least 7 samples .*receptive field.*got 6"),
    (lambda: _wave(stations=2), torch.ones(2, 3, dtype=torch.bool),
     r"shape \(batch, stations\) = \(2, 2\); got \(2, 3\)"),
    (lambda: _wave(stations=2), torch.tensor([[1, 0], [0, 0]], dtype=torch.bool), r"items \[1\] have none"),
    (lambda: _wave(stations=2), torch.full((2, 2), 0.5), r"must be boolean"),
])
def test_bad_waveforms(tiny, make, mask, message):
    with pytest.raises(ValueError, match=message):
        tiny.encode_waveform(make(), station_mask=mask)


def test_numpy_and_unbatched_inputs_embed_like_a_batch(tiny):
    """encode_* take NumPy arrays and one unbatched item, and give the batched result's row."""
    waves = _wave(batch=2, stations=3, seed=9).numpy()
    x_m = np.array([[0.0, 150.0, 400.0]] * 2)
    images = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    with torch.no_grad():
        batch = tiny.encode_waveform(torch.from_numpy(waves), station_x_m=torch.from_numpy(x_m))
        one = tiny.encode_waveform(waves[1], station_x_m=x_m[1])
        assert one.shape == (512,) and torch.allclose(one, batch[1], atol=1e-6)
        single = tiny.encode_waveform(waves[1, 0])  # (channels, time): one station
        assert torch.allclose(single, tiny.encode_waveform(waves[1:2, :1])[0], atol=1e-6)
        masked = tiny.encode_waveform(waves[0], station_mask=np.array([True, True, False]))
        assert torch.allclose(masked, tiny.encode_waveform(waves[:1, :2])[0], atol=1e-5)
        image_batch = tiny.encode_image(images)
        assert torch.allclose(tiny.encode_image(images[1]), image_batch[1], atol=1e-6)  # (C, H, W)
        assert torch.allclose(tiny.encode_image(images[1, 0]), image_batch[1], atol=1e-6)  # (H, W)


def test_shortest_valid_waveform_is_the_receptive_field(tiny):
    cfg = WaveformTowerConfig(conv_kernel=[3, 3], conv_stride=[2, 2], conv_dim=[8, 8])
    assert cfg.receptive_field == 7  # 3 + (3 - 1) * 2
    with torch.no_grad():
        assert tiny.encode_waveform(_wave(samples=7)).shape == (2, 512)


# ---------------------------------------------------------------- published sizes


def test_sfm_base_and_seislm_base_have_the_published_parameter_counts():
    import timm
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    model = create_model("sfm-seislm-base")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731

    vit_b = timm.create_model("vit_base_patch16_224", pretrained=False, in_chans=1, num_classes=0)
    assert count(model.trunks["image"]) == count(vit_b)

    # SeisLM-base as published (REFERENCE.md), on a stock one-channel HF encoder
    stock = Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=240, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
        conv_dim=[256, 256], conv_kernel=[3, 3], conv_stride=[2, 2], num_feat_extract_layers=2, conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16, mask_time_prob=0.0,
    ))
    extra_first_conv_channels = (3 - 1) * 256 * 3  # SeisLM's first conv weight is [256, 3, 3]
    assert count(model.trunks["waveform"]) == count(stock) + extra_first_conv_channels
    assert tuple(model.trunks["waveform"].wav2vec2.feature_extractor.conv_layers[0].conv.weight.shape) == (256, 3, 3)
    assert tuple(model.trunks["image"].patch_embed.proj.weight.shape) == (768, 1, 16, 16)


def test_large_configs_name_the_published_sizes():
    cfg = get_model_config("sfm-seislm-large")
    image, wave = cfg["image"], cfg["waveform"]
    image_size = (image["width"], image["depth"], image["num_heads"], image["patch_size"], image["in_chans"])
    assert image_size == (1024, 24, 16, 16, 1)
    wave_size = (wave["hidden_size"], wave["num_hidden_layers"], wave["num_attention_heads"], wave["intermediate_size"])
    assert wave_size == (768, 12, 12, 3072)
    assert (wave["in_chans"], wave["sampling_rate"], cfg["embed_dim"]) == (3, 100.0, 512)


def test_sampling_rate_is_named_as_obspy_names_it_and_the_old_name_still_reads(tmp_path):
    model = create_model("tiny", waveform={"sample_rate": 50.0})  # an override in the old name
    assert model.config.waveform.sampling_rate == model.sampling_rate == 50.0 and model.component_order == "ZNE"
    assert create_model("tiny", waveform={"in_chans": 5}).component_order is None
    saved = model.save_pretrained(tmp_path / "m")
    config = json.loads((saved / "config.json").read_text())
    assert config["waveform"]["sampling_rate"] == 50.0 and "sample_rate" not in config["waveform"]
    config["waveform"]["sample_rate"] = config["waveform"].pop("sampling_rate")  # as older runs wrote it
    (saved / "config.json").write_text(json.dumps(config))
    assert SeisBindModel.from_pretrained(saved).config.waveform.sampling_rate == 50.0
    config.pop("architecture")
    with pytest.raises(ValueError, match="sample_rate 50.0 .* and sampling_rate 100.0 disagree"):
        SeisBindConfig.from_dict({**config, "waveform": {**config["waveform"], "sampling_rate": 100.0}})


@pytest.mark.parametrize("waveform, message", [
    ({"conv_stride": [2, 0]}, r"conv_stride\[1\] must be a finite positive number; got 0"),
    ({"sampling_rate": float("inf")}, r"sampling_rate must be a finite positive number; got inf"),
    ({"conv_kernel": [3, -1]}, r"conv_kernel\[1\] must be a finite positive number"),
    ({"hidden_size": True}, r"hidden_size must be a finite positive number; got True"),
])
def test_invalid_tower_configs_are_refused(waveform, message):
    with pytest.raises(ValueError, match=message):
        create_model("tiny", waveform=waveform)


def test_dynamic_size_images_must_be_whole_patches():
    """Found by the fuzz suite: timm asserted (AssertionError) on a 17-pixel-wide section."""
    model = create_model("tiny", image={"dynamic_img_size": True})
    with pytest.raises(ValueError, match=r"whole number of 16x16 patches; got 16x17: crop or pad them to 16x16"):
        model.encode_image(torch.randn(1, 1, 16, 17))
