"""The array head: what it must see (moveout, relative amplitude, position) and what it must not
(station order, padding, one gain for the whole record)."""

from __future__ import annotations

import pytest
import torch

from seisbind.models import create_model
from seisbind.models.array_head import line_positions, relative_offsets_km
from seisbind.models.preprocess import neighbour_index, relative_log_amplitude


# Time tokens of a 300-sample record in the tiny trunk: two stride-2 kernel-3 convolutions
# (300 -> 149 -> 74 frames), then array_time_pool 2 -> 37.
TIME_TOKENS_300 = 37


@pytest.fixture(scope="module", params=[(0, 1, 0, False), (1, 1, 0, False), (1, 2, 0, False),
                                        (1, 2, TIME_TOKENS_300, False), (0, 1, 0, True), (0, 1, 0, "alone"), (0, 1, 0, "alone-strided"),
                                        (0, 1, 0, "alone-strided-mean")],
                ids=["alone", "with-neighbours", "strided", "strided-time-pool", "array-stem", "stem-alone",
                     "stem-alone-strided", "stem-alone-strided-mean"])
def tiny(request):
    """The array tower, its trunk reading each station alone or beside one neighbour on each side,
    and encoding every station or every other one past the first convolution; pooled by attention
    or, with time tokens, by the stations' mean at each time token; or with the array stem (a CNN
    over stations x time) beside the trunk, or in its place, then also striding along the array, and
    with no attention blocks and a mean pool."""
    torch.manual_seed(0)
    neighbours, stride, time_tokens, stem = request.param
    pool = {"array_pool": "time", "array_time_tokens": time_tokens} if time_tokens else {}
    if stem:
        pool.update(array_stem=[8, 16], array_stem_strides=[2, 2], seislm_trunk=stem is True)
        if stem in ("alone-strided", "alone-strided-mean"):
            pool.update(array_stem_station_strides=[1, 2])
        if stem == "alone-strided-mean":  # no attention blocks: the gather CNN's global mean pool
            pool.update(array_depth=0, array_pool="mean")
    model = create_model("tiny", waveform={"head": "array", "neighbour_stations": neighbours,
                                           "station_stride": stride, **pool}).eval()
    assert type(model.heads["waveform"]).__name__ == "ArrayHead"
    return model


def _record(batch=2, stations=6, channels=3, samples=300, seed=0):
    """Band-limited noise records, so time shifts of a few samples are resolvable but not trivial."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, stations, channels, samples, generator=g)
    return torch.nn.functional.avg_pool1d(x.reshape(-1, 1, samples), 5, 1, 2).reshape(x.shape)


def stack_neighbours(x, station_mask, station_x_m, neighbours):
    """The definition the trunk's neighbour convolution must match: each station's channels, then
    its neighbours' (``neighbour_index``), stacked into one (batch, stations, channels * (1 + 2 k), time)."""
    index = neighbour_index(station_mask, station_x_m, neighbours)
    channels, samples = x.shape[2:]
    parts = [x] + [x.gather(1, index[:, :, j, None, None].expand(-1, -1, channels, samples))
                   for j in range(index.shape[-1])]
    return torch.cat(parts, dim=2)


def _positions(batch=2, stations=6):
    return torch.linspace(100.0, 1900.0, stations).expand(batch, stations).clone()


def _embed(model, x, mask=None, positions=None):
    with torch.no_grad():
        return model.encode_waveform(x, mask, station_x_m=positions)


def test_permuting_stations_with_their_positions_changes_nothing(tiny):
    x, pos = _record(seed=1), _positions()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    a = _embed(tiny, x, positions=pos)
    b = _embed(tiny, x[:, perm], positions=pos[:, perm])
    assert torch.allclose(a, b, atol=1e-5)
    # Moving the origin of the coordinates changes nothing either: only offsets within the array count.
    assert torch.allclose(a, _embed(tiny, x, positions=pos + 12345.0), atol=1e-5)
    # But permuting the traces while the positions stay put is another array.
    c = _embed(tiny, x[:, perm], positions=pos)
    assert (a - c).norm(dim=-1).min() > 1e-3


def test_moveout_and_relative_amplitude_change_the_embedding(tiny):
    x, pos = _record(seed=2), _positions()
    base = _embed(tiny, x, positions=pos)
    # Stations 2 and 3: with a station stride of 2, one encoded and one read only as a neighbour.
    for station in (2, 3):
        shifted = x.clone()
        shifted[:, station] = torch.roll(x[:, station], 40, dims=-1)  # one station's trace 40 samples later
        louder = x.clone()
        louder[:, station] *= 10.0  # one station ten times louder than the rest
        assert (base - _embed(tiny, shifted, positions=pos)).norm(dim=-1).min() > 1e-3
        assert (base - _embed(tiny, louder, positions=pos)).norm(dim=-1).min() > 1e-3
    # One gain for the whole record (a stronger event, another instrument gain) changes nothing.
    assert torch.allclose(base, _embed(tiny, x * 1e-9, positions=pos), atol=1e-5)


def test_masked_stations_have_no_effect(tiny):
    x, pos = _record(stations=4, seed=3), _positions(stations=4)
    garbage = _record(stations=3, seed=4) * 1e6
    garbage[0, 0, 0, :5] = float("nan")
    padded = torch.cat([x, garbage], dim=1)
    padded_pos = torch.cat([pos, torch.full((2, 3), 9e6)], dim=1)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[:, :4] = True
    plain = _embed(tiny, x, positions=pos)
    masked = _embed(tiny, padded, mask, padded_pos)
    assert torch.isfinite(masked).all()
    assert torch.allclose(plain, masked, atol=1e-5)


def test_one_and_two_hundred_stations_embed(tiny):
    one = _embed(tiny, _record(stations=1, seed=5), positions=torch.zeros(2, 1))
    samples = 300 if tiny.config.waveform.array_pool == "time" else 120  # the time pool fixes the length
    many = _embed(tiny, _record(batch=1, stations=200, samples=samples, seed=6))  # no coordinates: a line
    assert one.shape == (2, 512) and many.shape == (1, 512)
    assert torch.isfinite(one).all() and torch.isfinite(many).all()
    assert torch.allclose(many.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_without_coordinates_stations_are_a_line_at_the_configured_spacing(tiny):
    x = _record(seed=7)
    spacing = tiny.config.waveform.station_spacing_m
    line = torch.arange(6.0).expand(2, 6) * spacing
    assert torch.allclose(_embed(tiny, x), _embed(tiny, x, positions=line), atol=1e-6)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1]], dtype=torch.bool)
    assert line_positions(mask, 10.0).tolist() == [[0.0, 0.0, 10.0, 20.0, 0.0, 30.0]]


def test_neighbours_are_the_nearest_present_stations_along_the_array():
    # Station i's only sample is i; positions put them in the order 1, 3, 4, 0 (station 2 absent).
    x = torch.arange(5.0)[None, :, None, None].expand(1, 5, 1, 2).clone()
    mask = torch.tensor([[True, True, False, True, True]])
    pos = torch.tensor([[40.0, 0.0, 5.0, 10.0, 20.0]])
    got = stack_neighbours(x, mask, pos, 2)[0, :, :, 0]
    # Columns: itself, lower 1, upper 1, lower 2, upper 2 (the ends repeat the nearest station).
    want = {0: [0, 4, 0, 3, 0], 1: [1, 1, 3, 1, 4], 3: [3, 1, 4, 1, 0], 4: [4, 3, 0, 1, 0]}
    for station, row in want.items():
        assert got[station].tolist() == row
    # Without positions the given order is the line; one station is its own neighbour.
    assert stack_neighbours(x, torch.ones(1, 5, dtype=torch.bool), None, 1)[0, :, :, 0].tolist()[1] == [1, 0, 2]
    assert stack_neighbours(x[:, :1], mask[:, :1], None, 1)[0, 0, :, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("absent", [False, True])
def test_the_neighbour_convolution_equals_a_convolution_of_the_stacked_traces(absent):
    """The trunk sums per-block convolutions instead of stacking the traces: the same frames."""
    torch.manual_seed(0)
    model = create_model("tiny", waveform={"head": "array", "neighbour_stations": 2}).eval()
    x, pos = _record(stations=6, seed=8), _positions(stations=6)[:, torch.tensor([2, 0, 5, 1, 4, 3])]
    mask = torch.ones(2, 6, dtype=torch.bool)
    if absent:
        mask[0, 1] = mask[1, 4] = mask[1, 5] = False
    trunk = model.trunks["waveform"]
    prepared = model.preprocessors["waveform"](x, mask, pos)["trunk"]
    with torch.no_grad():
        got = trunk(**prepared)
        stacked = stack_neighbours(prepared["waveforms"], mask, pos, 2)
        flat = stacked.reshape(12, *stacked.shape[2:])[mask.reshape(-1)]
        want = trunk.wav2vec2(input_values=flat).last_hidden_state  # the plain 15-channel convolution
    assert torch.allclose(got[mask], want, atol=1e-5)
    assert not got[~mask].any()


def test_a_neighbour_trunk_reads_three_times_the_channels():
    model = create_model("tiny", waveform={"head": "array", "neighbour_stations": 1})
    first = model.trunks["waveform"].wav2vec2.feature_extractor.conv_layers[0].conv
    assert first.in_channels == 3 * model.config.waveform.in_chans
    with pytest.raises(ValueError, match="neighbour_stations must be an integer >= 0"):
        create_model("tiny", waveform={"neighbour_stations": -1})


def test_relative_offsets_are_from_the_present_stations_centre():
    x = torch.tensor([[0.0, 1000.0, 3000.0, 5e9]])
    mask = torch.tensor([[True, True, True, False]])
    assert torch.allclose(relative_offsets_km(x, mask), torch.tensor([[-4 / 3, -1 / 3, 5 / 3, 0.0]]), atol=1e-6)


def test_relative_log_amplitude_by_hand():
    x = torch.zeros(1, 3, 2, 100)
    x[0, 0, 0] = torch.sin(torch.arange(100.0))  # some RMS r
    x[0, 1, 0] = 100 * torch.sin(torch.arange(100.0))  # 100 r: two decades louder
    x[0, 2, 0] = 1e-2 * torch.sin(torch.arange(100.0))  # r / 100
    mask = torch.ones(1, 3, dtype=torch.bool)
    rel = relative_log_amplitude(x * 1e-9, mask)  # m/s magnitudes: no underflow, one gain cancels
    assert torch.allclose(rel[0, :, 0], torch.tensor([0.0, 2.0, -2.0]), atol=1e-4)
    assert torch.equal(rel[0, :, 1], torch.zeros(3))  # dead components stay 0
    huge = relative_log_amplitude(x * 1e36, mask)  # squares would overflow float32
    assert torch.isfinite(huge).all() and torch.allclose(huge, rel, atol=1e-4)


def test_bad_positions_are_refused(tiny):
    x = _record()
    with pytest.raises(ValueError, match="station_x_m must have shape"):
        tiny.encode_waveform(x, station_x_m=torch.zeros(2, 5))
    bad = _positions()
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        tiny.encode_waveform(x, station_x_m=bad)


def test_the_first_tower_stays_reachable_by_config():
    old = create_model("tiny", waveform={"head": "station_pool"})
    assert type(old.heads["waveform"].pool).__name__ == "StationAttentionPool"
    with pytest.raises(ValueError, match="head must be one of"):
        create_model("tiny", waveform={"head": "mean"})


def test_training_and_inference_modes_give_the_same_embedding():
    """No dropout, no batch statistics in the waveform tower: train() and eval() must agree (torch's
    TransformerEncoderLayer fast path broke this with per-head masks)."""
    torch.manual_seed(1)
    model = create_model("tiny", waveform={"head": "array"})
    x, pos = _record(stations=5, seed=8), _positions(stations=5)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        model.eval()
        inference = model.encode_waveform(x, mask, station_x_m=pos)
        model.train()
        training = model.encode_waveform(x, mask, station_x_m=pos)
    assert torch.isfinite(inference).all()
    assert torch.allclose(inference, training, atol=1e-5)


def test_the_channels_last_feature_encoder_equals_transformers_conv_layers():
    """The trunk's conv stack computed as matrix products in a channels-last layout gives HF's
    Wav2Vec2LayerNormConvLayer frames and gradients (overlapping and non-overlapping windows)."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2LayerNormConvLayer

    torch.manual_seed(0)
    model = create_model("tiny", waveform={"conv_dim": [8, 16, 16], "conv_kernel": [4, 5, 3], "conv_stride": [4, 2, 2]})
    encoder = model.trunks["waveform"].wav2vec2.feature_extractor
    x = torch.randn(5, 3, 301, requires_grad=True)
    want = x
    for layer in encoder.conv_layers:
        want = Wav2Vec2LayerNormConvLayer.forward(layer, want)
    got = encoder(x)
    assert got.shape == want.shape == (5, 16, 17)
    assert torch.allclose(got, want, atol=1e-5)
    weight = encoder.conv_layers[1].conv.weight
    g_got = torch.autograd.grad(got.square().sum(), [x, weight])
    g_want = torch.autograd.grad(want.square().sum(), [x, weight])
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, b, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("absent", [False, True])
def test_a_strided_trunk_gives_the_unstrided_frames_of_the_stations_it_encodes(absent):
    """station_stride 2: every other present station along the array, packed in their given
    order, with exactly the frames the unstrided trunk (same weights) gives them."""
    from seisbind.models.preprocess import compact_stations, strided_stations

    torch.manual_seed(0)
    strided = create_model("tiny", waveform={"head": "array", "neighbour_stations": 1, "station_stride": 2}).eval()
    plain = create_model("tiny", waveform={"head": "array", "neighbour_stations": 1}).eval()
    plain.trunks["waveform"].load_state_dict(strided.trunks["waveform"].state_dict())
    x, pos = _record(stations=7, seed=9), torch.tensor([60.0, 0.0, 30.0, 10.0, 50.0, 20.0, 40.0]).expand(2, 7)
    mask = torch.ones(2, 7, dtype=torch.bool)
    if absent:
        mask[0, 3] = mask[1, 1] = False
    selected = strided_stations(mask, pos, 2)
    # Along the array: stations 1, 3, 5, 2, 6, 4, 0 -> every other: 1, 5, 6, 0. Without station 3:
    # 1, 5, 2, 6, 4, 0 -> 1, 2, 4; without station 1: 3, 5, 2, 6, 4, 0 -> 3, 2, 4.
    want_selected = [[0, 1, 1, 0, 1, 0, 0], [0, 0, 1, 1, 1, 0, 0]] if absent else [[1, 1, 0, 0, 0, 1, 1]] * 2
    assert selected.long().tolist() == want_selected
    index, valid = compact_stations(selected)
    with torch.no_grad():
        got = strided.trunks["waveform"](**strided.preprocessors["waveform"](x, mask, pos)["trunk"])
        full = plain.trunks["waveform"](**plain.preprocessors["waveform"](x, mask, pos)["trunk"])
    assert got.shape[1] == index.shape[1] == int(selected.sum(1).max())
    for b in range(2):
        for j in range(index.shape[1]):
            if valid[b, j]:
                assert torch.allclose(got[b, j], full[b, index[b, j]], atol=1e-5)
            else:
                assert not got[b, j].any()


def test_a_station_stride_needs_neighbours_that_cover_the_stations_left_out():
    with pytest.raises(ValueError, match="station_stride 3 needs head: array and neighbour_stations >= 2"):
        create_model("tiny", waveform={"head": "array", "neighbour_stations": 1, "station_stride": 3})


def test_a_strided_model_saves_and_loads_with_its_stride(tmp_path):
    from seisbind.models.joint import SeisBindModel

    torch.manual_seed(0)
    model = create_model("tiny", waveform={"head": "array", "neighbour_stations": 1, "station_stride": 2}).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = SeisBindModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.waveform.station_stride == 2
    x, pos = _record(stations=5, seed=10), _positions(stations=5)
    assert torch.allclose(_embed(model, x, positions=pos), _embed(loaded, x, positions=pos), atol=1e-6)


def test_several_pool_queries_lift_the_embedding_past_the_array_width():
    """One pool query gives embeddings in a subspace of rank array_width (the projection of one
    pooled token); four queries, concatenated, are not held to it. Permutation invariance stays."""
    torch.manual_seed(0)
    ranks = {}
    for queries in (1, 4):
        model = create_model("tiny", waveform={"head": "array", "array_width": 8, "array_heads": 2,
                                               "array_queries": queries}).eval()
        x = _record(batch=40, seed=3)
        with torch.no_grad():
            raw = model.encode_waveform(x, normalize=False, station_x_m=_positions(40))
        ranks[queries] = torch.linalg.matrix_rank(raw, rtol=1e-4).item()
        perm = torch.tensor([3, 0, 5, 1, 4, 2])
        assert torch.allclose(_embed(model, x[:4], positions=_positions(4)),
                              _embed(model, x[:4, perm], positions=_positions(4)[:, perm]), atol=1e-5)
    assert ranks[1] <= 8 < ranks[4]


def test_the_time_pool_keeps_time_order_and_refuses_another_record_length(tmp_path):
    """pool "time": the embedding is the projection of the present stations' mean token at each
    time token, in order, worked out here from the head's own normalised tokens; a record of
    another length is refused with the length it needs; the config is checked and survives a
    save/load round trip."""
    from seisbind.models import SeisBindModel

    torch.manual_seed(0)
    model = create_model("tiny", waveform={"head": "array", "array_pool": "time",
                                           "array_time_tokens": TIME_TOKENS_300}).eval()
    head = model.heads["waveform"]
    assert head.proj.in_features == TIME_TOKENS_300 * head.inner and not hasattr(head, "pool")
    seen = {}
    head.out_norm.register_forward_hook(lambda mod, args, out: seen.update(keys=out))
    x, pos = _record(batch=2, stations=4, seed=11), _positions(stations=4)
    with torch.no_grad():
        raw = model.encode_waveform(x, normalize=False, station_x_m=pos)
        keys = seen["keys"].reshape(2, 4, TIME_TOKENS_300, head.inner)
        by_hand = head.proj(keys.mean(dim=1).flatten(1))
    assert torch.allclose(raw, by_hand, atol=1e-5)
    with pytest.raises(ValueError, match=f"{TIME_TOKENS_300} time tokens.*this record gives 15"):
        _embed(model, _record(samples=120, seed=12))
    with pytest.raises(ValueError, match="array_time_tokens > 0 exactly for 'time'"):
        create_model("tiny", waveform={"head": "array", "array_pool": "time"})
    model.save_pretrained(tmp_path / "m")
    loaded = SeisBindModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.waveform.array_pool == "time"
    assert torch.allclose(_embed(model, x, positions=pos), _embed(loaded, x, positions=pos), atol=1e-6)


@pytest.mark.parametrize("frames", [1, 3, 7, 8])
def test_time_mean_pool_is_avg_pool1d_with_ceil_mode(frames):
    from seisbind.models.array_head import time_mean_pool

    x = torch.randn(2, 3, frames, 5)
    ref = torch.nn.functional.avg_pool1d(x.reshape(6, frames, 5).transpose(1, 2), 2, ceil_mode=True)
    assert torch.allclose(time_mean_pool(x, 2), ref.transpose(1, 2).reshape(2, 3, -1, 5), atol=1e-6)


def test_the_mean_pool_by_hand():
    """``array_pool: mean`` with no blocks: the projection of the mean of the present tokens, each
    embedded, given its position, amplitude and time encodings, and normalised."""
    from seisbind.models.array_head import ArrayHead, fourier_position_features, sinusoidal_encoding

    torch.manual_seed(0)
    head = ArrayHead(8, 6, 3, array_width=4, depth=0, heads=2, time_pool=1, pool="mean").eval()
    tokens, mask = torch.randn(2, 3, 5, 8), torch.tensor([[True, True, True], [True, False, True]])
    x_m, amplitude = torch.tensor([[0.0, 100.0, 300.0], [0.0, 7.0, 500.0]]), torch.randn(2, 3, 3)
    with torch.no_grad():
        out = head(tokens, mask, x_m, amplitude)
        for b in range(2):
            keep = mask[b]
            centre = x_m[b][keep].mean()
            where = head.position(fourier_position_features((x_m[b] - centre) / 1000.0)) + head.amplitude(amplitude[b])
            when = head.time(sinusoidal_encoding(torch.arange(5), 4))
            y = head.out_norm(head.embed(head.norm(tokens[b])) + where[:, None] + when[None])
            assert torch.allclose(out[b], head.proj(y[keep].mean(dim=(0, 1))), atol=1e-5)
    assert head.distance_slope is None and not list(head.station_layers)
