"""The array stem: a CNN over (stations, time) beside the SeisLM trunk, added to its tokens."""

from __future__ import annotations

import pytest
import torch
from models_fakes import seislm_encoder_weights, seislm_hf_config, write_seislm_checkpoint

from seisbind.models import create_model
from seisbind.models.array_stem import ArrayStem, masked_group_norm
from seisbind.models.preprocess import compress_records

STEM = {"head": "array", "array_stem": [8, 16], "array_stem_strides": [2, 2]}


def _stem(seed=0):
    torch.manual_seed(seed)
    return ArrayStem(3, [8, 16], [2, 2], 32).eval()


def _run(stem, x, mask=None, positions=None, frames=20):
    mask = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask
    with torch.no_grad():
        return stem(compress_records(x), mask, positions, frames)


def test_each_station_reads_its_neighbours_two_a_side_and_no_further():
    """Two blocks of kernel 3 along the array: a station's tokens hear the stations up to two ranks
    away. Changing station 0 moves stations 0-2 and leaves 3-7 as they were (the stem's convolutions
    without their norms: GroupNorm's statistics are the whole record's, so every station moves a little)."""
    stem = _stem()
    x = torch.randn(1, 8, 3, 80)
    changed = x.clone()
    changed[:, 0] += torch.randn(1, 3, 80)
    with torch.no_grad():
        y, z = stem.proj(_plain_blocks(stem, x)), stem.proj(_plain_blocks(stem, changed))
    moved = (y - z).abs().amax(dim=(0, 2, 3))
    assert (moved[:3] > 1e-4).all() and (moved[3:] < 1e-6).all(), moved


def _plain_blocks(stem, x):
    """The stem's convolutions and activations without its norms, on stations in order."""
    y = x.transpose(1, 2)
    for conv in stem.convs:
        y = torch.nn.functional.gelu(conv(y))
    return y.permute(0, 2, 3, 1)


def test_one_gain_changes_nothing_and_one_louder_station_changes_its_tokens():
    stem = _stem()
    x = torch.randn(2, 6, 3, 120) * 1e-9
    base = _run(stem, x)
    assert base.shape == (2, 6, 20, 32)
    assert torch.allclose(base, _run(stem, x * 3e7), atol=1e-5)  # compressed by the record's own peak
    louder = x.clone()
    louder[:, 2] *= 10.0
    assert (base - _run(stem, louder)).abs().amax() > 1e-3


def test_station_order_is_by_position_and_padding_stations_change_nothing():
    stem = _stem()
    x, pos = torch.randn(2, 5, 3, 120), torch.tensor([[0.0, 100.0, 200.0, 300.0, 400.0]] * 2)
    base = _run(stem, x, positions=pos)
    perm = torch.tensor([4, 1, 3, 0, 2])
    assert torch.allclose(_run(stem, x[:, perm], positions=pos[:, perm]), base[:, perm], atol=1e-5)
    padded = torch.cat([x, torch.zeros(2, 2, 3, 120)], dim=1)  # absent stations are zeros (the preprocessor's)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * 2, dtype=torch.bool)
    out = _run(stem, padded, mask, torch.cat([pos, torch.full((2, 2), 9e6)], dim=1))
    assert torch.allclose(out[:, :5], base, atol=1e-5) and not out[:, 5:].any()


def test_masked_group_norm_is_group_norm_when_every_station_is_present():
    norm = torch.nn.GroupNorm(4, 16)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    y = torch.randn(3, 16, 5, 11)
    present = torch.ones(3, 5, dtype=torch.bool)
    assert torch.allclose(masked_group_norm(y, present, norm), norm(y), atol=1e-5)


def test_the_tower_with_a_stem_loads_seislm_into_its_trunk_and_adds_the_stem_to_its_frames(tmp_path):
    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg, in_chans=3)
    write_seislm_checkpoint(tmp_path / "s.ckpt", weights, cfg)
    torch.manual_seed(0)
    plain = create_model("tiny", waveform={"head": "array"}).eval()
    stemmed = create_model("tiny", waveform=STEM).eval()
    for model in (plain, stemmed):
        model.load_tower_checkpoint("waveform", tmp_path / "s.ckpt")
    x = torch.randn(2, 5, 3, 300)
    with torch.no_grad():
        a = plain.trunks["waveform"](**plain.preprocessors["waveform"](x)["trunk"])
        inputs = stemmed.preprocessors["waveform"](x)["trunk"]
        b = stemmed.trunks["waveform"](**inputs)
        stem = stemmed.trunks["waveform"].array_stem(inputs["array_record"], inputs["station_mask"], None, a.shape[2])
    assert torch.allclose(b, a + stem, atol=1e-5)  # SeisLM's frames, plus the stem's
    # Locking the trunk leaves the new stem trainable: nothing pretrained to keep in it.
    stemmed.lock_tower("waveform", 0)
    assert all(p.requires_grad for p in stemmed.trunks["waveform"].array_stem.parameters())
    assert not any(p.requires_grad for p in stemmed.trunks["waveform"].wav2vec2.parameters())


def test_a_tower_without_the_seislm_trunk_is_the_stem_alone_and_refuses_seislm(tmp_path):
    torch.manual_seed(0)
    alone = create_model("tiny", waveform={**STEM, "seislm_trunk": False}).eval()
    trunk = alone.trunks["waveform"]
    assert not hasattr(trunk, "wav2vec2")
    x = torch.randn(2, 5, 3, 300)
    with torch.no_grad():
        inputs = alone.preprocessors["waveform"](x)["trunk"]
        tokens = trunk(**inputs)
        # the trunk's grid of frames: two kernel-3 stride-2 convolutions, 300 -> 149 -> 74
        assert tokens.shape == (2, 5, 74, trunk.width)
        assert torch.equal(tokens, trunk.array_stem(inputs["array_record"], inputs["station_mask"], None, 74))
    alone.save_pretrained(tmp_path / "m")
    again = type(alone).from_pretrained(tmp_path / "m").eval()
    assert again.config.waveform.seislm_trunk is False
    with torch.no_grad():
        assert torch.allclose(again.encode_waveform(x), alone.encode_waveform(x), atol=1e-6)
    cfg = seislm_hf_config()
    weights, _ = seislm_encoder_weights(cfg, in_chans=3)
    write_seislm_checkpoint(tmp_path / "s.ckpt", weights, cfg)
    with pytest.raises(ValueError, match="no SeisLM trunk"):
        alone.load_tower_checkpoint("waveform", tmp_path / "s.ckpt")
    with pytest.raises(ValueError, match="no SeisLM trunk"):
        alone.lock_tower("waveform", 1)
    alone.lock_tower("waveform", 0)  # the stem is all there is, and it trains
    assert all(p.requires_grad for p in trunk.parameters())


@pytest.mark.parametrize("bad, match", [
    ({"array_stem": [8], "array_stem_strides": []}, "same length"),
    ({"array_stem": [8, 0], "array_stem_strides": [2, 2]}, "positive integers"),
    ({"array_stem": [8], "array_stem_strides": [2], "neighbour_stations": 1, "station_stride": 2}, "station_stride 1"),
    ({"seislm_trunk": False}, "the array stem is the tower"),
    ({"array_stem": [8], "array_stem_strides": [2], "seislm_trunk": False, "neighbour_stations": 1}, "neighbour_stations 0"),
    ({"array_stem": [8], "array_stem_strides": [2], "seislm_trunk": "no"}, "true or false"),
])
def test_bad_stem_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        create_model("tiny", waveform={"head": "array", **bad})


STRIDED = {**STEM, "seislm_trunk": False, "array_stem_station_strides": [1, 2]}


def test_a_station_stride_keeps_every_other_row_each_hearing_its_neighbours():
    """Blocks of station strides 1 and 2 (kernel 3 each): output row j is centred on rank 2 j and
    hears ranks 2 j - 2 ... 2 j + 2. Changing the last of 8 stations moves row 3 only; changing
    the first moves rows 0 and 1 (convolutions without norms, as above)."""
    torch.manual_seed(0)
    stem = ArrayStem(3, [8, 16], [2, 2], 32, [1, 2]).eval()
    x = torch.randn(1, 8, 3, 80)
    for station, moves in ((7, [False, False, False, True]), (0, [True, True, False, False])):
        changed = x.clone()
        changed[:, station] += torch.randn(1, 3, 80)
        with torch.no_grad():
            moved = (_plain_blocks(stem, x) - _plain_blocks(stem, changed)).abs().amax(dim=(0, 2, 3))
        assert moved.shape == (4,) and ((moved > 1e-4) == torch.tensor(moves)).all(), (station, moved)


def test_strided_rows_go_to_the_stations_the_head_reads_them_as():
    """With a station stride the tower's tokens are packed for the stations of rank 0, 2, 4, ...,
    in the given order (preprocess.compact_stations): the same ground read in reversed station
    order gives the same tokens, reversed; 7 stations give 4 rows, with a masked 8th too."""
    torch.manual_seed(0)
    model = create_model("tiny", waveform=STRIDED).eval()
    pre, trunk = model.preprocessors["waveform"], model.trunks["waveform"]
    x, pos = torch.randn(1, 7, 3, 300), torch.linspace(0.0, 600.0, 7)[None]
    with torch.no_grad():
        base = trunk(**pre(x, station_x_m=pos)["trunk"])
        flipped = trunk(**pre(x.flip(1), station_x_m=pos.flip(1))["trunk"])
        head = pre(x.flip(1), station_x_m=pos.flip(1))["head"]
        padded = pre(torch.cat([x, torch.randn(1, 1, 3, 300)], 1),
                     station_mask=torch.tensor([[True] * 7 + [False]]),
                     station_x_m=torch.cat([pos, torch.tensor([[-50.0]])], 1))
        again = trunk(**padded["trunk"])
    assert base.shape[1] == 4 and torch.allclose(flipped, base.flip(1), atol=1e-5)
    assert torch.equal(head["station_x_m"], torch.tensor([[600.0, 400.0, 200.0, 0.0]]))
    assert torch.allclose(again, base, atol=1e-5) and padded["head"]["station_mask"].all()


def test_a_strided_stem_model_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", waveform=STRIDED).eval()
    model.save_pretrained(tmp_path / "m")
    again = type(model).from_pretrained(tmp_path / "m").eval()
    assert again.config.waveform.array_stem_station_strides == [1, 2]
    x = torch.randn(2, 9, 3, 300)
    with torch.no_grad():
        assert torch.allclose(again.encode_waveform(x), model.encode_waveform(x), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    ({**STEM, "array_stem_station_strides": [2]}, "one a stem block"),
    ({**STEM, "array_stem_station_strides": [1, 0]}, "one a stem block"),
    ({**STEM, "array_stem_station_strides": [1, 2]}, "seislm_trunk: false"),
])
def test_bad_station_strides_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        create_model("tiny", waveform=bad)
