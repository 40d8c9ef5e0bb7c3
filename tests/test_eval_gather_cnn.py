"""The gather CNN baseline: it learns a separable pairing, keeps relative amplitudes, keeps its budget."""

import time

import datasets
import numpy as np
import pytest
import torch

from seisbind.evaluation.evaluate import gather_cnn_budget, retrieval_both_ways
from seisbind.evaluation.gather_cnn import (
    GatherCNNBaseline,
    ImageCNN,
    WaveformCNN,
    parameter_count,
    preprocess_records,
)


def separable_split(n, seed, stations=8, channels=3, samples=128, side=32, sources=2):
    """``n`` geologies whose record is a clear function of the section: a dipping interface at
    depth ``d`` and dip ``a`` in the image; in the record a pulse arriving at each station at a time
    set by the interface under it (Z and N; E dead, as in 2-D), with a source-dependent amplitude
    across the stations, a random overall gain around 1e-9 (m/s) and 2 % noise."""
    rng = np.random.default_rng(seed)
    depth, dip = rng.uniform(0.2, 0.8, n), rng.uniform(-0.3, 0.3, n)
    yy, xx = np.mgrid[0:side, 0:side] / side
    boundary = depth[:, None, None] + dip[:, None, None] * (xx[None] - 0.5)
    images = np.where(yy[None] > boundary, 2.0, 1.0) + 0.05 * rng.standard_normal((n, side, side))
    x, t = np.linspace(0, 1, stations), np.arange(samples)
    waves = np.zeros((n, sources, stations, channels, samples))
    for g in range(n):
        arrival = samples * (0.1 + 0.7 * (depth[g] + dip[g] * (x - 0.5)))
        for s in range(sources):
            u = (t[None] - arrival[:, None]) / 3.0
            pulse = (1 - 2 * u**2) * np.exp(-(u**2)) / (1 + 3 * np.abs(x - rng.uniform())[:, None])
            gain = 1e-9 * 10 ** rng.uniform(-1, 1)
            waves[g, s, :, 0], waves[g, s, :, 1] = gain * pulse, -0.5 * gain * pulse
            waves[g, s, :, :2] += 0.02 * gain * rng.standard_normal((stations, 2, samples))
    features = datasets.Features({
        "geology_id": datasets.Value("int64"),
        "image": datasets.Array2D((side, side), "float32"),
        "waveforms": datasets.Array4D((sources, stations, channels, samples), "float32"),
        "waveform_scale": datasets.Array2D((sources, stations), "float32"),
    })  # fmt: skip
    return datasets.Dataset.from_dict({
        "geology_id": list(range(n)), "image": images.astype(np.float32), "waveforms": waves.astype(np.float32),
        "waveform_scale": np.ones((n, sources, stations), np.float32),
    }, features=features)  # fmt: skip


def positives(n_geologies, sources):
    return np.repeat(np.arange(n_geologies), sources)[:, None] == np.arange(n_geologies)[None, :]


def test_learns_a_separable_pairing_far_above_chance_on_held_out_geologies():
    train, test = separable_split(64, seed=0), separable_split(24, seed=1)
    baseline = GatherCNNBaseline(steps=50, seed=0)
    losses = baseline.fit(train)
    sim = baseline.similarity(test)
    assert sim.shape == (24 * 2, 24)
    r = retrieval_both_ways(sim, positives(24, 2))
    w2i, i2w = r["waveform_to_image"], r["image_to_waveform"]
    # chance recall@1 is 1/24 = 0.042 over 48 queries: 12 or more hits by luck has probability < 1e-5
    assert w2i["recall@1"] >= 0.25 and i2w["recall@1"] >= 0.25, r
    assert w2i["median_rank"] <= 3, r
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    info = baseline.fit_info
    assert info["steps"] == 50 and info["budget"] == {"steps": 50, "max_seconds": None}
    assert info["pairs_per_s"] > 0 and info["seconds"] >= info["train_seconds"] > 0


def test_with_a_validation_split_it_keeps_its_best_validated_weights():
    """Checked every eval_every steps and at the end; the weights it ends with score the MRR it
    recorded on validation (a fit that kept its last weights would not, unless those were best)."""
    from seisbind.evaluation.metrics import mean_reciprocal_rank

    train, val = separable_split(32, seed=0), separable_split(12, seed=2)
    baseline = GatherCNNBaseline(steps=7, batch_size=8, seed=0, eval_every=2, lr=3e-3)
    baseline.fit(train, validation=val)
    info = baseline.fit_info
    assert info["kept_step"] in (2, 4, 6, 7) and info["steps"] == 7
    again = mean_reciprocal_rank(baseline.similarity(val), positives(12, 2))
    assert again == pytest.approx(info["validation_mrr"], abs=1e-9)
    last = GatherCNNBaseline(steps=7, batch_size=8, seed=0, eval_every=2, lr=3e-3)
    last.fit(train)  # no validation: its last step's weights
    assert last.fit_info["kept_step"] == 7 and last.fit_info["validation_mrr"] is None
    if info["kept_step"] != 7:
        assert mean_reciprocal_rank(last.similarity(val), positives(12, 2)) <= info["validation_mrr"]
    with pytest.raises(ValueError, match="eval_every"):
        GatherCNNBaseline(eval_every=0)


def test_a_step_budget_is_deterministic_for_a_seed():
    train, test = separable_split(12, seed=0), separable_split(4, seed=1)
    runs = []
    for seed in (0, 0, 1):
        baseline = GatherCNNBaseline(steps=3, batch_size=8, seed=seed)
        runs.append((baseline.fit(train), baseline.similarity(test)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.allclose(runs[0][1], runs[2][1])


def test_a_wall_time_budget_stops_within_a_step_of_it():
    train = separable_split(16, seed=0)
    baseline = GatherCNNBaseline(max_seconds=1.5, batch_size=8)
    baseline.fit(train)
    info = baseline.fit_info
    assert info["budget"] == {"steps": None, "max_seconds": 1.5}
    per_step = info["train_seconds"] / info["steps"]
    assert info["steps"] > 1
    assert 1.5 <= info["seconds"] <= 1.5 + 2 * per_step + 0.5, info  # checked after each step


def test_preprocessing_keeps_relative_amplitude_and_drops_absolute_scale():
    rng = np.random.default_rng(0)
    record = torch.as_tensor(rng.standard_normal((2, 6, 3, 40)) * 1e-9, dtype=torch.float32)
    record[:, :, 2] = 0  # a dead channel
    x = preprocess_records(record)
    assert x.shape == (2, 3, 6, 40) and x.abs().max() <= 1.0 + 1e-6  # (B, channels, stations, time)
    assert torch.all(x[:, 2] == 0)  # the dead channel stays zero
    np.testing.assert_allclose(preprocess_records(record * 7.3e6), x, atol=1e-5)  # one scale for the record
    louder = record.clone()
    louder[:, 1] *= 3.0  # one station 3x louder than the others
    changed = preprocess_records(louder)
    assert not torch.allclose(changed, x, atol=1e-3)
    assert changed[:, :, 1].abs().mean() > x[:, :, 1].abs().mean()  # ...reads louder relative to the rest
    # the fast in-place form is the documented expression, and never touches its input
    before = record.clone()
    peak = record.abs().amax(dim=(1, 2, 3), keepdim=True)  # the documented expression, by hand
    eps = 0.01
    reference = (torch.sign(record) * torch.log1p((record / peak).abs() / eps) / np.log1p(1 / eps)).transpose(1, 2)
    np.testing.assert_allclose(preprocess_records(record), reference, atol=1e-6)
    assert torch.equal(record, before)
    # the waveform CNN sees the same: a record scaled as a whole embeds the same, a station scaled alone does not
    torch.manual_seed(0)
    cnn = WaveformCNN(3).eval()
    with torch.no_grad():
        e, e_scaled, e_louder = cnn(record), cnn(record * 1e3), cnn(louder)
    np.testing.assert_allclose(e, e_scaled, atol=1e-5)
    assert (e - e_louder).abs().max() > 1e-3


@pytest.mark.parametrize("stations, channels, samples, side", [(16, 3, 601, 64), (70, 5, 1000, 70)])
def test_towers_take_both_scenarios_shapes(stations, channels, samples, side):
    torch.manual_seed(0)
    wave, image = WaveformCNN(channels).eval(), ImageCNN().eval()
    with torch.no_grad():
        w = wave(torch.randn(2, stations, channels, samples) * 1e-9)
        i = image(torch.randn(2, 1, side, side))
    assert w.shape == i.shape == (2, 128)
    np.testing.assert_allclose(w.norm(dim=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(i.norm(dim=1), 1.0, atol=1e-5)
    assert 0.2e6 < parameter_count(wave) < 0.5e6 and 0.2e6 < parameter_count(image) < 0.5e6
    with pytest.raises(ValueError, match="channels"):
        wave(torch.randn(2, stations, channels + 1, samples))


def test_similarity_rows_are_each_geology_then_each_source_as_embed_split():
    train, test = separable_split(8, seed=0), separable_split(5, seed=1, sources=3)
    baseline = GatherCNNBaseline(steps=1, batch_size=4)
    baseline.fit(train)
    image, waveform = baseline.embed(test, batch_size=2)  # batches that split the rows
    assert image.shape[0] == 5 and waveform.shape[0] == 5 * 3
    rows = test.with_format("torch")
    with torch.no_grad():
        for g in range(5):
            direct_image = baseline.image_cnn(rows[g]["image"][None, None]).numpy()
            np.testing.assert_allclose(image[g : g + 1], direct_image, atol=1e-5)
            direct = baseline.waveform_cnn(rows[g]["waveforms"]).numpy()  # its 3 sources
            np.testing.assert_allclose(waveform[3 * g : 3 * g + 3], direct, atol=1e-5)
    np.testing.assert_allclose(baseline.similarity(test), waveform @ image.T, atol=1e-6)


def test_fits_a_generated_openfwi_split(tmp_path):
    from seisbind.data.dataset import load_paired
    from seisbind.data.generate import generate

    config = {"n_samples": 200, "size": 30, "n_receivers": 30}  # 1 source, 30 stations, 5 shots as channels
    generate(tmp_path / "d", "openfwi", 12, config=config, workers=1, progress=False)
    train, test = load_paired(tmp_path / "d", "train"), load_paired(tmp_path / "d", "test")
    baseline = GatherCNNBaseline(steps=2, batch_size=4)
    baseline.fit(train)
    assert baseline.waveform_cnn.channels == 5
    sim = baseline.similarity(test)
    assert sim.shape == (len(test), len(test)) and np.all(np.abs(sim) <= 1 + 1e-5)


def test_evaluate_budget_choice():
    assert gather_cnn_budget(None, 300) == {"steps": 300}
    assert gather_cnn_budget(12.5, 300) == {"max_seconds": 12.5}  # a wall time wins over steps
    assert gather_cnn_budget(0, 300) is None and gather_cnn_budget(None, 0) is None  # 0 skips it
    with pytest.raises(ValueError):
        gather_cnn_budget(-1, 300)


def test_the_out_of_process_fit_equals_the_in_process_one(tmp_path):
    """evaluate() trains the gather CNN in a spawned process when a core is spare: same data,
    seed and budget there, so a step budget gives the same similarities as training here."""
    from seisbind.data.dataset import load_paired
    from seisbind.data.generate import generate
    from seisbind.evaluation.gather_cnn import start_in_process
    from test_data_generate import TINY_QUAKE

    generate(tmp_path, "quake", 8, config=TINY_QUAKE, progress=False)
    pending = start_in_process(tmp_path, "test", {"steps": 3}, 4, None, 1, also=[(tmp_path, "validation")])
    try:
        sim, info, (also,) = pending.get(timeout=300)
    finally:
        pending.stop()
    here = GatherCNNBaseline(steps=3, seed=4)
    here.fit(load_paired(tmp_path, "train"))
    np.testing.assert_array_equal(sim, here.similarity(load_paired(tmp_path, "test")))
    # a further split scored by the same weights (the benchmark's held-out geology)
    np.testing.assert_array_equal(also, here.similarity(load_paired(tmp_path, "validation")))
    assert info["steps"] == 3 and info["threads"] == 1


def test_a_failed_out_of_process_fit_says_why(tmp_path):
    from seisbind.evaluation.gather_cnn import start_in_process

    pending = start_in_process(tmp_path / "missing", "test", {"steps": 3}, 0, None, 1)
    try:
        with pytest.raises(RuntimeError, match="gather CNN failed in its process"):
            pending.get(timeout=300)
    finally:
        pending.stop()


def test_limited_threads_caps_torch_and_blas_and_restores_them():
    from threadpoolctl import threadpool_info, threadpool_limits

    from seisbind.evaluation.evaluate import limited_threads

    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # the test workers run with one thread: start from two, so the cap shows
    try:
        with threadpool_limits(2):
            with pytest.raises(RuntimeError):  # restored on an error too
                with limited_threads(1):
                    assert torch.get_num_threads() == 1
                    assert all(p["num_threads"] == 1 for p in threadpool_info())
                    raise RuntimeError("inside")
            assert torch.get_num_threads() == 2
            assert all(p["num_threads"] == 2 for p in threadpool_info())
            with limited_threads(None):
                assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)


def test_evaluate_takes_a_folder_and_never_a_hub_id(tmp_path):
    from seisbind.evaluation.evaluate import evaluate

    with pytest.raises(FileNotFoundError, match="no such folder"):
        evaluate("runs/no-such-model", tmp_path)  # looks like owner/name: must not reach the Hub


def test_an_open_ended_fit_trains_until_given_the_models_wall_time(tmp_path):
    """The quickstart starts the gather CNN beside the model's training with no budget, then
    gives it the training's wall time: it stops once that much has passed since its first step."""
    from seisbind.data.dataset import load_paired
    from seisbind.data.generate import generate
    from seisbind.evaluation.gather_cnn import start_in_process
    from test_data_generate import TINY_QUAKE

    generate(tmp_path, "quake", 8, config=TINY_QUAKE, progress=False)
    pending = start_in_process(tmp_path, "test", None, 0, None, 1)
    try:
        with pytest.raises(RuntimeError, match="set_max_seconds"):
            pending.get(timeout=1)  # no budget yet: it would wait for ever
        with pytest.raises(ValueError, match="positive"):
            pending.set_max_seconds(0)
        time.sleep(2.0)  # it trains meanwhile, on no budget
        pending.set_max_seconds(2.5)
        sim, info = pending.get(timeout=300)
    finally:
        pending.stop()
    assert info["budget"] == {"steps": None, "max_seconds": 2.5}
    assert 2.5 <= info["seconds"] < 2.5 + 5.0 and info["steps"] >= 1
    test = load_paired(tmp_path, "test")
    assert sim.shape == (len(test) * len(test[0]["waveforms"]), len(test)) and np.isfinite(sim).all()
    budgeted = start_in_process(tmp_path, "test", {"steps": 1}, 0, None, 1)
    try:
        with pytest.raises(RuntimeError, match="budget of its own"):
            budgeted.set_max_seconds(3.0)
    finally:
        budgeted.stop()


def test_two_sources_a_pair_train_with_the_towers_loss_and_still_learn():
    """sources_per_pair=2: every step scores both sources of each geology against the section and
    each other (the towers' ContrastiveLoss, checked by recomputing the first step's loss); it
    still learns the separable pairing; a third source the data lack is refused."""
    from seisbind.models.losses import ContrastiveLoss

    train, test = separable_split(64, seed=0), separable_split(24, seed=1)
    seen = []
    real = ContrastiveLoss.forward

    def spy(self, outputs):
        seen.append({k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()})
        return real(self, outputs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ContrastiveLoss, "forward", spy)
        baseline = GatherCNNBaseline(steps=50, seed=0, sources_per_pair=2)
        losses = baseline.fit(train)
    assert seen[0]["image"].shape[0] * 2 == seen[0]["waveform"].shape[0] == 64
    by_hand = ContrastiveLoss("clip")(seen[0])
    assert losses[0] == pytest.approx(float(by_hand), rel=1e-6)
    r = retrieval_both_ways(baseline.similarity(test), positives(24, 2))["waveform_to_image"]
    assert r["recall@1"] >= 0.25, r
    with pytest.raises(ValueError, match="sources_per_pair=3 needs that many sources"):
        GatherCNNBaseline(steps=1, sources_per_pair=3).fit(train)
    with pytest.raises(ValueError, match="sources_per_pair must be an integer"):
        GatherCNNBaseline(sources_per_pair=0)


def test_the_bar_mirrors_its_pairs_and_embeds_mirror_averaged_as_the_model_can():
    """mirror_prob=1: every training pair is mirrored, image and records together (the first
    step's inputs are the mirror of the batch drawn without it, as the draws of batches and
    sources do not change); mirror_average: a test set and its mirror embed alike."""
    from seisbind.mirror import mirror_images, mirror_records

    train, test = separable_split(32, seed=0), separable_split(8, seed=1)

    class Spied(GatherCNNBaseline):  # keeps the first step's inputs of each tower
        def build(self, channels):
            super().build(channels)
            self.seen = {}
            for name, tower in (("w", self.waveform_cnn), ("i", self.image_cnn)):
                tower.register_forward_pre_hook(lambda m, args, name=name: self.seen.setdefault(name, args[0].clone()))

    inputs = []
    for prob in (0.0, 1.0):
        baseline = Spied(steps=1, seed=0, mirror_prob=prob)
        baseline.fit(train)
        inputs.append(baseline.seen)
    torch.testing.assert_close(inputs[1]["i"], mirror_images(inputs[0]["i"]))
    torch.testing.assert_close(inputs[1]["w"], mirror_records(inputs[0]["w"]))
    assert baseline.fit_info["mirror_prob"] == 1.0

    averaged = GatherCNNBaseline(steps=3, seed=0, mirror_average=True)
    averaged.fit(train)
    mirrored = test.map(lambda r: {"image": np.asarray(r["image"])[:, ::-1],
                                   "waveforms": mirror_records(np.asarray(r["waveforms"], np.float32))})
    for a, b in zip(averaged.embed(test), averaged.embed(mirrored)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="mirror_prob must be in"):
        GatherCNNBaseline(mirror_prob=1.5)
    # records whose channels have no known mirror are refused before training, by the split's column
    foreign = train.add_column("channels", ["HHZ,HHN,HHE"] * len(train))
    with pytest.raises(ValueError, match="channels 'HHZ,HHN,HHE': set mirror_prob=0"):
        GatherCNNBaseline(steps=1, mirror_prob=0.5).fit(foreign)
    GatherCNNBaseline(steps=1).fit(foreign)  # no mirror asked: the channels do not matter
