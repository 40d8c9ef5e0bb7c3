"""Contrastive training: config, data sampling, checkpoints, and short CPU runs of the tiny model.

Runs use a tiny generated set (TINY_QUAKE: 32x32 images, 4 stations, 2 s windows), so a training
step takes tens of milliseconds. Equalities between runs are exact on CPU with one thread (tolerance
1e-6 on losses, identical weights), the two-process comparison within 1e-5.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import seisbind.models
from seisbind.data.generate import generate
from seisbind.training import CheckpointError, TrainingDiverged, load_config, train, verify_checkpoint
from seisbind.training.augment import WaveformAugment, stretch_record
from seisbind.training.checkpointing import find_resumable, list_checkpoints
from seisbind.training.cli import main as train_main
from seisbind.training.config import TrainConfig
from seisbind.training.data import GlobalBatchSampler, PairDataset, collate_pairs, decode_record, load_rows
from seisbind.training.optim import param_groups
from tests.test_data_generate import TINY_QUAKE

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "train_contrastive.py")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """20 tiny geologies (16 train, 2 validation, 2 test), 2 sources and 4 stations each."""
    out = tmp_path_factory.mktemp("tiny-quake")
    report = generate(out, "quake", 20, seed=3, workers=1, chunk_size=10, config=TINY_QUAKE, progress=False)
    return str(report.dataset_path)


def tiny_args(data, out, **extra):
    """key=value overrides for a short run of the tiny model on ``tiny_data``."""
    values = dict(
        model="tiny", data=data, output_dir=str(out), batch_size=8, num_workers=0, min_stations=2, max_stations=4,
        max_steps=6, lr=2e-3, warmup_steps=1, log_every=1, eval_every=3, save_every=2, keep_last=3,
        tracker="none", progress=False, seed=1,
    )
    values.update(extra)
    args = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]
    return [*args, "model_overrides.image.img_size=32"]


def tiny_config(data, out, **extra):
    return load_config(None, tiny_args(data, out, **extra))


def metrics_at(out, step):
    """The merged metrics.jsonl entries of ``step``."""
    merged = {}
    for line in (Path(out) / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["step"] == step:
            merged.update(entry)
    return merged


# --- config -----------------------------------------------------------------------------------


def test_config_files_load_and_overrides_are_checked():
    for name in ("quickstart", "sfm-seislm-base", "sfm-seislm-large"):
        config = load_config(ROOT / "configs" / f"{name}.yaml")
        assert config.model in seisbind.models.list_models()
        assert config.data
    base = load_config(ROOT / "configs" / "sfm-seislm-base.yaml")
    assert base.mixed_precision == "bf16"
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["lr=3e-4", "betas=[0.9, 0.95]", "resume=null",
                                                               "model_overrides.image.img_size=32"])
    assert cfg.lr == 3e-4 and cfg.betas == [0.9, 0.95] and cfg.resume is None
    from_file = load_config(ROOT / "configs" / "quickstart.yaml").model_overrides
    # a dotted override sets one nested key and keeps the file's others
    assert cfg.model_overrides == {**from_file, "image": {**from_file.get("image", {}), "img_size": 32}}
    with pytest.raises(ValueError, match="unknown train config key 'max_stepz'.*did you mean 'max_steps'"):
        load_config(None, ["max_stepz=3"])
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        load_config(None, ["batch_size=8.5"])
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        load_config(None, ["mixed_precision=fp8"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["max_steps"])
    with pytest.raises(ValueError, match="max_stations .* is below min_stations"):
        TrainConfig(min_stations=5, max_stations=2)


def test_weight_decay_spares_norms_biases_and_the_logit_scale():
    model = seisbind.models.create_model("tiny")
    decay, exempt = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt_names = {names[id(p)] for p in exempt["params"]}
    assert "logit_scales.image_waveform.log_scale" in exempt_names
    assert all(p.ndim >= 2 for p in decay["params"]) and exempt["weight_decay"] == 0.0
    assert any(n.endswith("norm1.weight") for n in exempt_names) and any(n.endswith(".bias") for n in exempt_names)
    model.lock_tower("image", 0)
    locked = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in locked) < sum(len(g["params"]) for g in (decay, exempt))


def test_the_optimiser_is_fused_adamw_with_the_same_update_as_the_default():
    from seisbind.training.optim import build_optimizer

    torch.manual_seed(0)
    model = seisbind.models.create_model("tiny")
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.98), 1e-6)
    assert opt.defaults["fused"] is True  # torch has a CPU kernel: one pass over every tensor
    reference = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    params = [p for g in opt.param_groups for p in g["params"]]
    start = [p.detach().clone() for p in params]
    grads = [torch.randn_like(p) for p in params]
    after = []
    for optimiser in (opt, reference):
        with torch.no_grad():
            for p, s0, g in zip(params, start, grads, strict=True):
                p.copy_(s0)
                p.grad = g.clone()
        optimiser.step()
        after.append([p.detach().clone() for p in params])
    for fused, default, s0 in zip(*after, start, strict=True):
        torch.testing.assert_close(fused, default, rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(a, s0) for a, s0 in zip(after[0], start))  # the step moved the weights


# --- data -------------------------------------------------------------------------------------


def test_global_batches_split_across_processes_and_resume_without_replay():
    one = GlobalBatchSampler(50, 8, seed=4)
    two = [GlobalBatchSampler(50, 8, seed=4, rank=r, world_size=2) for r in range(2)]
    it1, it2 = iter(one), [iter(s) for s in two]
    seen = []
    for _ in range(13):  # more than two epochs of 6 batches
        batch = next(it1)
        assert batch == next(it2[0]) + next(it2[1])  # the same global batch, rank 0's half first
        assert len({r for _, r in batch}) == 8 and len({e for e, _ in batch}) == 1  # no repeats, one epoch
        seen.append(batch)
    assert seen[0] != seen[6]  # each epoch its own order
    later = iter(GlobalBatchSampler(50, 8, seed=4, start_batch=7))
    assert [next(later) for _ in range(6)] == seen[7:13]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        GlobalBatchSampler(5, 8, seed=0)


def test_pairs_are_a_function_of_seed_epoch_and_row(tiny_data):
    rows = load_rows(tiny_data, "train")
    augment = WaveformAugment((0.5, 2.0), (0.05, 0.1), 5)
    ds = PairDataset(rows, seed=2, min_stations=2, max_stations=3, augment=augment)
    a, b = ds[(0, 3)], ds[(0, 3)]
    assert torch.equal(a["waveforms"], b["waveforms"]) and torch.equal(a["image"], b["image"])
    assert not torch.equal(ds[(1, 3)]["waveforms"], a["waveforms"])  # another epoch, another draw
    assert 2 <= a["waveforms"].shape[0] <= 3 and a["waveforms"].shape[1:] == (3, 201)
    assert torch.all(a["waveforms"][:, 2] == 0)  # the dead E component gets no noise
    batch = collate_pairs([ds[(0, i)] for i in range(6)])
    assert batch["images"].shape == (6, 1, 32, 32) and batch["waveforms"].shape[1] == 3
    counts = batch["station_mask"].sum(1)
    for i, n in enumerate(counts.tolist()):
        assert torch.all(batch["waveforms"][i, n:] == 0)


def test_a_batch_read_gives_the_pairs_of_single_reads(tiny_data):
    """The DataLoader reads a batch's rows at once (__getitems__): the same pairs, captions and
    token rows as one read per key, repeated rows and keys in any order included."""
    from seisbind.models.config import TextTowerConfig
    from seisbind.models.text_tower import TextTokenizer

    rows = load_rows(tiny_data, "train", labels=True)
    tokenizer = TextTokenizer(TextTowerConfig())
    ds = PairDataset(rows, seed=3, min_stations=2, max_stations=3, augment=WaveformAugment((0.5, 2.0), (0.05, 0.1), 5),
                     mirror_prob=0.5, station_drop_prob=0.5, captions_per_geology=4, tokenizer=tokenizer)  # fmt: skip
    keys = [(0, 4), (1, 0), (0, 4), (2, 1), (0, len(rows) - 1)]
    single = [ds[k] for k in keys]
    fresh = PairDataset(rows, seed=3, min_stations=2, max_stations=3, augment=WaveformAugment((0.5, 2.0), (0.05, 0.1), 5),
                        mirror_prob=0.5, station_drop_prob=0.5, captions_per_geology=4, tokenizer=tokenizer)  # fmt: skip
    for a, b in zip(single, fresh.__getitems__(keys)):
        assert a.keys() == b.keys() and a["geology_id"] == b["geology_id"]
        for k in a:
            if isinstance(a[k], torch.Tensor):
                assert torch.equal(a[k], b[k]), k
    # the caption's tokens are those of the caption the pool holds for that draw
    assert any(torch.equal(single[0]["text"], t) for t in tokenizer(ds.caption_pool(4)))


def test_whole_arrays_by_default_and_dropped_stations_keep_their_positions(tiny_data):
    rows = load_rows(tiny_data, "train")
    n = rows[0]["waveforms"].shape[1]
    whole = PairDataset(rows, seed=0, min_stations=2, max_stations=2, station_drop_prob=0.0)
    item = whole[(0, 1)]
    assert item["waveforms"].shape[0] == n
    assert torch.equal(item["station_x_m"], torch.as_tensor(rows[1]["station_x_m"]))
    dropped = PairDataset(rows, seed=0, min_stations=2, max_stations=2, station_drop_prob=1.0)
    part = dropped[(0, 1)]
    assert part["waveforms"].shape[0] == 2
    # The kept traces are the stored traces of the stations whose positions came along.
    full = torch.as_tensor(rows[1]["station_x_m"])
    kept = [int(torch.nonzero(full == x)[0]) for x in part["station_x_m"]]
    assert kept == sorted(kept) and len(set(kept)) == 2
    assert torch.equal(part["image"], item["image"])
    batch = collate_pairs([part, item])
    assert batch["station_x_m"].shape == (2, n) and torch.equal(batch["station_x_m"][1], full)
    assert torch.equal(batch["station_x_m"][0, 2:], torch.zeros(n - 2))  # padding, masked out
    share = sum(PairDataset(rows, seed=s, min_stations=2, max_stations=2, station_drop_prob=0.25)[(0, 0)]
                ["waveforms"].shape[0] == 2 for s in range(200)) / 200
    assert 0.15 < share < 0.35  # dropping stations is an augmentation drawn with its probability


def test_a_pair_of_two_sources_holds_the_other_source_at_the_same_stations(tiny_data):
    """sources_per_pair=2: the first view is the one-source pair, the second the geology's other
    source at the same stations, mirrored with the image; a batch stacks the views view-major."""
    rows = load_rows(tiny_data, "train")
    kw = dict(seed=4, min_stations=2, max_stations=3, station_drop_prob=0.5, mirror_prob=0.5)
    one, two = PairDataset(rows, **kw), PairDataset(rows, **kw, sources_per_pair=2)
    keys = [(e, i) for e in range(3) for i in range(6)]
    mirrored = 0
    for key in keys:
        a, b = one[key], two[key]
        assert torch.equal(a["waveforms"], b["waveforms"]) and torch.equal(a["image"], b["image"])
        view = b["waveform_views"]
        assert view.shape == (1, *a["waveforms"].shape)
        # the view is the stored record of the other source (of 2) at the pair's stations, mirrored
        # as the pair is: find which stored source the first view is, and flip if the image was
        row = rows[key[1]]
        stored = [decode_record(row, s) for s in range(2)]
        flipped = not torch.equal(a["image"], torch.as_tensor(np.asarray(row["image"], np.float32))[None])
        mirrored += flipped

        def as_stored(record):
            r = record.numpy().copy()
            if flipped:
                r = r[::-1].copy()
                r[:, 1] *= -1.0
            return r

        def source_of(record):
            r = as_stored(record)
            hits = [s for s in range(2) if any(np.allclose(r, stored[s][idx]) for idx in _station_sets(stored[s], r))]
            assert len(hits) == 1
            return hits[0]

        assert source_of(view[0]) != source_of(a["waveforms"])
    assert 0 < mirrored < len(keys)
    batch = collate_pairs([two[k] for k in keys[:4]])
    assert batch["images"].shape[0] == 4 and batch["waveforms"].shape[0] == 8
    assert torch.equal(batch["station_mask"][:4], batch["station_mask"][4:])
    assert torch.equal(batch["station_x_m"][:4], batch["station_x_m"][4:])
    n = int(batch["station_mask"][5].sum())
    assert torch.equal(batch["waveforms"][5, :n], two[keys[1]]["waveform_views"][0])
    with pytest.raises(ValueError, match="sources_per_pair=3 needs that many sources"):
        PairDataset(rows, **kw, sources_per_pair=3)
    with pytest.raises(ValueError, match="same number of views"):
        collate_pairs([two[keys[0]], one[keys[1]]])


def _station_sets(stored, record):
    """Index arrays of the stored stations a record of len(record) stations could be (sorted subsets)."""
    from itertools import combinations

    return [list(c) for c in combinations(range(len(stored)), len(record))]


def test_augmentation_keeps_moveout_and_relative_amplitudes():
    rng = np.random.default_rng(0)
    record = np.zeros((3, 3, 100), np.float32)
    record[0, 0, 20], record[1, 0, 30], record[2, 1, 40] = 1.0, 0.5, 2.0  # arrivals with moveout
    out = WaveformAugment((0.5, 2.0), (0.0, 0.0), 5)(record, rng)
    peaks = [int(np.argmax(np.abs(out[k]).max(0))) for k in range(3)]
    assert np.diff(peaks).tolist() == [10, 10]  # one shift for every station
    assert np.isclose(out[1].max() / out[0].max(), 0.5) and np.isclose(out[2].max() / out[0].max(), 2.0)
    assert np.all(out[:, 2] == 0)


def test_a_noiseless_augmentation_is_exactly_a_gain_and_a_shift():
    record = np.random.default_rng(1).standard_normal((4, 3, 50)).astype(np.float32)
    out = WaveformAugment((2.0, 2.0), (0.0, 0.0), 0)(record, np.random.default_rng(0))
    assert np.array_equal(out, record * np.float32(2.0))
    noisy = WaveformAugment((2.0, 2.0), (0.1, 0.1), 0)(record, np.random.default_rng(0))
    residual = noisy - record * np.float32(2.0)
    assert np.isclose(residual.std(), 0.1 * record.std(), rtol=0.1)  # noise RMS relative to the record's
    # without noise the Gaussian draw is skipped: the generator moved by the three scalar draws only
    rng = np.random.default_rng(5)
    WaveformAugment((0.5, 2.0), (0.0, 0.0), 3)(record, rng)
    reference = np.random.default_rng(5)
    reference.integers(-3, 4), reference.uniform(), reference.uniform()
    assert rng.uniform() == reference.uniform()


def test_stretching_a_ricker_record_gives_the_ricker_of_the_scaled_frequency():
    """A ground with every velocity x a records u(a t): a Ricker of f becomes one of a f, peaking
    at 1.5 / (a f); what ran past the window is zero."""
    t = np.arange(600) / 100.0

    def ricker(f):
        arg = (np.pi * f * (t - 1.5 / f)) ** 2
        return ((1 - 2 * arg) * np.exp(-arg)).astype(np.float32)

    record = np.stack([ricker(2.4), -0.5 * ricker(2.4)])[:, None]  # (stations, channels, time)
    for a in (0.8, 1.25):
        out = stretch_record(record, a)
        assert out.shape == record.shape and out.dtype == np.float32
        live = a * np.arange(600) <= 599
        assert np.abs(out[0, 0, live] - ricker(2.4 * a)[live]).max() < 1e-2  # linear: 0.4 % of the peak
        assert np.allclose(out[1], -0.5 * out[0], atol=1e-6)  # one stretch for every station
        assert np.all(out[..., ~live] == 0)
        assert abs(t[np.argmax(out[0, 0])] - 1.5 / (2.4 * a)) <= 0.01
    assert np.array_equal(stretch_record(record, 1.0), record)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="velocity factor must be a positive number"):
            stretch_record(record, bad)


def test_velocity_scale_stretches_every_record_of_a_pair_by_one_factor_and_keeps_the_image(tiny_data):
    rows = load_rows(tiny_data, "train")
    kw = dict(seed=4, min_stations=2, max_stations=3, station_drop_prob=0.5, mirror_prob=0.5, sources_per_pair=2)
    plain, fast = PairDataset(rows, **kw), PairDataset(rows, **kw, velocity_scale=(1.2, 1.2))
    for key in [(0, 0), (1, 3), (2, 5)]:
        a, b = plain[key], fast[key]
        assert torch.equal(a["image"], b["image"])  # a reflectivity section does not see the scale
        assert np.allclose(b["waveforms"].numpy(), stretch_record(a["waveforms"].numpy(), 1.2), atol=1e-6)
        assert np.allclose(b["waveform_views"][0].numpy(), stretch_record(a["waveform_views"][0].numpy(), 1.2),
                           atol=1e-6)  # the other source: the same ground, the same factor
        assert not torch.allclose(a["waveforms"], b["waveforms"])
    drawn = PairDataset(rows, **kw, velocity_scale=(0.8, 1.25))
    again = PairDataset(rows, **kw, velocity_scale=(0.8, 1.25))
    assert torch.equal(drawn[(1, 2)]["waveforms"], again[(1, 2)]["waveforms"])  # a function of the key
    with pytest.raises(ValueError, match="velocity_scale must be"):
        PairDataset(rows, **kw, velocity_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="velocity_scale must be"):
        TrainConfig(velocity_scale=[1.2, 1.1])


# --- checkpoints ------------------------------------------------------------------------------


def test_loss_decreases_and_checkpoints_are_verified(tiny_data, tmp_path):
    # Without augmentation the 16 training pairs are learnt within 30 steps: the loss leaves
    # chance (ln 8 = 2.08 for a batch of 8) and ends near 1.3-1.5 (measured with several seeds).
    plain = dict(min_stations=4, max_stations=4, mirror_prob=0.0, noise_level=[0.0, 0.0], max_time_shift_s=0.0)
    result = train(tiny_config(tiny_data, tmp_path, max_steps=30, save_every=15, eval_every=15, lr=1e-3,
                               warmup_steps=3, seed=0, **plain))
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert np.mean(losses[:5]) == pytest.approx(np.log(8), abs=0.1)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.25, losses
    assert all(np.isfinite(losses))
    steps = [s for s, _ in list_checkpoints(tmp_path / "checkpoints")]
    assert steps == [15, 30]
    manifest = verify_checkpoint(tmp_path / "checkpoints" / "step-00000030")
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
            "trainer_state.json"} <= set(manifest["files"])
    best = seisbind.models.SeisBindModel.from_pretrained(tmp_path / "best-model")
    assert best.config.image.img_size == 32
    assert 0.0 <= result.metrics["wave_to_image_r1"] <= 1.0 and result.metrics["gallery_size"] == 2
    # best-model is the validation of highest waveform -> image MRR (the first, on a tie)
    mrr = {s: metrics_at(tmp_path, s)["val/wave_to_image_mrr"] for s in (15, 30)}
    best_step = max(mrr, key=lambda s: (mrr[s], -s))
    assert result.best_step == best_step and result.best_metric == pytest.approx(mrr[best_step])
    assert json.loads((tmp_path / "best-model" / "training.json").read_text())["step"] == best_step


def test_a_corrupted_checkpoint_is_refused_and_resume_falls_back(tiny_data, tmp_path, capsys):
    train(tiny_config(tiny_data, tmp_path, max_steps=4, save_every=2, eval_every=0))
    latest = tmp_path / "checkpoints" / "step-00000004"
    blob = latest / "optimizer.bin"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="step-00000004 is corrupted: optimizer.bin does not match its SHA-256"):
        verify_checkpoint(latest)
    # A folder named explicitly is refused, never swapped for another.
    assert train_main(tiny_args(tiny_data, tmp_path, max_steps=6) + ["--resume", str(latest)]) == 2
    assert "checkpoint error" in capsys.readouterr().err
    # A partial folder (no manifest: the save never finished) is detected too.
    partial = tmp_path / "checkpoints" / "step-00000006"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    with pytest.raises(CheckpointError, match="is partial: it has no manifest.json"):
        verify_checkpoint(partial)
    assert find_resumable(tmp_path / "checkpoints", warn=lambda m: None).name == "step-00000002"
    result = train(tiny_config(tiny_data, tmp_path, max_steps=6, save_every=2, eval_every=0, resume="latest"))
    out = capsys.readouterr().out
    assert "step-00000006 is partial" in out and "step-00000004 is corrupted" in out and "falling back" in out
    assert result.resumed_from.name == "step-00000002" and sorted(result.losses) == [3, 4, 5, 6]
    verify_checkpoint(tmp_path / "checkpoints" / "step-00000006")  # rewritten whole
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(tiny_config(tiny_data, tmp_path, max_steps=6))


def test_a_forged_trainer_state_step_is_refused(tiny_data, tmp_path):
    """A trainer_state.json whose step is not its folder's (1e9, say) is refused, even with a
    manifest rewritten to match."""
    from seisbind.training.checkpointing import read_trainer_state

    train(tiny_config(tiny_data, tmp_path, max_steps=2, save_every=2, eval_every=0))
    folder = tmp_path / "checkpoints" / "step-00000002"
    state = json.loads((folder / "trainer_state.json").read_text())
    assert read_trainer_state(folder)["step"] == 2
    for forged in (10**9, -1, "2", 2.5):
        (folder / "trainer_state.json").write_text(json.dumps({**state, "step": forged}))
        with pytest.raises(CheckpointError, match=r"trainer_state.json says step .* but the folder is step-00000002"):
            read_trainer_state(folder)


def test_a_one_geology_validation_split_is_refused_before_step_1(tmp_path):
    data = generate(tmp_path / "d", "quake", 10, seed=3, workers=1, chunk_size=10, config=TINY_QUAKE, progress=False)
    with pytest.raises(ValueError, match=r"'validation' split .* has 1 geology; validation retrieval needs at least 2"):
        train(tiny_config(str(data.dataset_path), tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_checkpoint_whose_random_states_do_not_load_is_refused(tiny_data, tmp_path):
    """Accelerate only logs when random_states_0.pkl fails to load; the resume refuses it instead,
    even when the manifest was rewritten to match the bad file."""
    from seisbind.training.checkpointing import MANIFEST_NAME, sha256_file

    train(tiny_config(tiny_data, tmp_path, max_steps=2, save_every=2, eval_every=0))
    folder = tmp_path / "checkpoints" / "step-00000002"
    rng = folder / "random_states_0.pkl"
    rng.write_bytes(b"not a state")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"][rng.name] = {"size": rng.stat().st_size, "sha256": sha256_file(rng)}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"random states \(random_states_0.pkl\) did not load"):
        train(tiny_config(tiny_data, tmp_path, max_steps=4, save_every=2, eval_every=0, resume="latest"))


class PoisonedLoss(seisbind.models.ContrastiveLoss):
    """The real loss, except that its 5th call (step 5) returns NaN."""

    calls = 0

    def forward(self, outputs):
        PoisonedLoss.calls += 1
        loss = super().forward(outputs)
        return loss * float("nan") if PoisonedLoss.calls == 5 else loss


def test_a_nan_loss_stops_the_run_naming_the_step(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(seisbind.models, "ContrastiveLoss", PoisonedLoss)
    PoisonedLoss.calls = 0
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at step 5.*last good checkpoint is .*step-00000004"):
        train(tiny_config(tiny_data, tmp_path, max_steps=8, save_every=2, eval_every=0))
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2, 4]
    state = json.loads((tmp_path / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["step"] == 4
    verify_checkpoint(tmp_path / "checkpoints" / "step-00000004")
    assert not (tmp_path / "final-model").exists()


# --- faults and processes (subprocesses) ------------------------------------------------------


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tiny_data, tmp_path):
    steps = 24  # killed once step 8 is checkpointed: 16 steps of margin to catch it mid-run
    common = dict(max_steps=steps, save_every=4, eval_every=8, seed=5)
    reference = train(tiny_config(tiny_data, tmp_path / "whole", **common))
    killed = tmp_path / "killed"
    # The killed run uses a worker process for its data and TensorBoard: neither changes what it computes.
    args = [sys.executable, ENTRY, *tiny_args(tiny_data, killed, num_workers=1, tracker="tensorboard", **common)]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    try:
        while not (killed / "checkpoints" / "step-00000008").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final-model").exists()
    done = subprocess.run([*args, "--resume", "latest"], env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    final_whole, final_killed = metrics_at(tmp_path / "whole", steps), metrics_at(killed, steps)
    assert final_killed["train/loss"] == pytest.approx(final_whole["train/loss"], abs=1e-6)
    for key in ("val/wave_to_image_r1", "val/wave_to_image_mean_rank", "val/image_to_wave_r1"):
        assert final_killed[key] == final_whole[key]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "whole" / "final-model" / "model.safetensors")
    b = load_file(killed / "final-model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
    assert reference.loss == pytest.approx(final_killed["train/loss"], abs=1e-6)


def test_resume_logs_the_same_loss_means_and_a_finished_run_keeps_its_final_metrics(tiny_data, tmp_path):
    """Log lines average log_every steps across a resume (the window is checkpointed); resuming a
    finished run, or one killed after its last checkpoint, keeps final-model's metrics."""
    import shutil

    common = dict(max_steps=12, save_every=3, eval_every=6, log_every=5, keep_last=4, seed=4)
    whole = tmp_path / "whole"
    train(tiny_config(tiny_data, whole, **common))
    final_info = json.loads((whole / "final-model" / "training.json").read_text())
    assert final_info["metrics"]["wave_to_image_mean_rank"] > 0
    # A run killed after step 7: its checkpoints past step 6 and its final model never happened.
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    for name in ("step-00000009", "step-00000012"):
        shutil.rmtree(cut / "checkpoints" / name)
    shutil.rmtree(cut / "final-model")
    train(tiny_config(tiny_data, cut, resume="latest", **common))
    assert metrics_at(cut, 10)["train/loss"] == pytest.approx(metrics_at(whole, 10)["train/loss"], abs=1e-6)
    # Resuming the finished run runs no step and leaves final-model's record as it was.
    train(tiny_config(tiny_data, whole, resume="latest", **common))
    assert json.loads((whole / "final-model" / "training.json").read_text()) == final_info


def test_steps_within_budget_by_hand():
    from seisbind.training.budget import MARGIN, steps_within_budget

    # 10 steps in 10 s; 0.5 s a step and a 2 s validation every 10 steps: 0.7 s per further step,
    # after the margin and the final validation.
    expected = 10 + int((100 * (1 - MARGIN) - 10 - 2) // 0.7)
    assert steps_within_budget(100, 10, 10, 0.5, 2.0, 10, 1000) == expected
    assert steps_within_budget(100, 10, 10, 0.5, 2.0, 10, 50) == 50  # the cap
    assert steps_within_budget(100, 200, 10, 0.5, 2.0, 10, 1000) == 10  # spent: stop where it is
    assert steps_within_budget(100, 0, 0, 1.0, 0.0, 0, 1000) == int(100 * (1 - MARGIN))
    with pytest.raises(ValueError, match="positive"):
        steps_within_budget(0, 0, 0, 1.0, 0.0, 0, 10)


def test_a_budget_resumed_in_warm_up_times_its_own_steps():
    from seisbind.training.budget import StepBudget

    fresh = StepBudget(100.0, 10, start_time=0.0)
    assert not any(fresh.step_done(s, float(s)) for s in range(1, 10)) and fresh.step_done(10, 10.0)
    fresh.decide(10.0, 10.0, 0, 1000)
    assert fresh.seconds_per_step == pytest.approx(1.0)  # steps 6..10, 1 s each
    # Resumed after step 7, past the window's start: it times steps 8..10 from its loop's start.
    resumed = StepBudget(100.0, 10, start_time=-7.0, start_step=7, now=0.0)
    assert [resumed.step_done(s, 2.0 * (s - 7)) for s in (8, 9, 10)] == [False, False, True]
    resumed.decide(6.0, 6.0, 0, 1000)
    assert resumed.seconds_per_step == pytest.approx(2.0)
    with pytest.raises(ValueError, match="chosen in warm-up"):
        StepBudget(100.0, 10, 0.0, start_step=10)


def test_a_time_budget_is_the_run_of_its_step_count_and_a_resume_keeps_the_count(tiny_data, tmp_path):
    """The count is fixed at the end of warm-up, before the schedule depends on it: the budgeted run
    equals the run configured with that many steps, and its checkpoints carry the count."""
    import shutil

    common = dict(max_steps=5000, warmup_steps=6, time_budget_s=6.0, save_every=2, keep_last=10000, eval_every=0,
                  log_every=2, seed=5)
    budgeted = train(tiny_config(tiny_data, tmp_path / "budgeted", **common))
    n = budgeted.step
    assert 6 < n < 5000  # stopped by the budget, not by max_steps
    assert metrics_at(tmp_path / "budgeted", 6)["budget/total_steps"] == n
    fixed = train(tiny_config(tiny_data, tmp_path / "fixed", **{**common, "time_budget_s": None, "max_steps": n}))
    assert fixed.step == n and fixed.losses == pytest.approx(budgeted.losses, abs=1e-6)
    # Killed after its first checkpoint past warm-up, resumed with a budget that would choose another count.
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "budgeted", cut)
    for path in (cut / "checkpoints").iterdir():
        if int(path.name.split("-")[1]) > 8:
            shutil.rmtree(path)
    shutil.rmtree(cut / "final-model")
    resumed = train(tiny_config(tiny_data, cut, resume="latest", **{**common, "time_budget_s": 1000.0}))
    assert resumed.step == n and resumed.loss == pytest.approx(budgeted.loss, abs=1e-6)
    with pytest.raises(ValueError, match="time_budget_s needs warmup_steps"):
        tiny_config(tiny_data, tmp_path / "x", time_budget_s=10.0, warmup_steps=2)
    with pytest.raises(ValueError, match="time_budget_s must be a positive"):
        tiny_config(tiny_data, tmp_path / "x", time_budget_s=-1.0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sources", [1, 2], ids=["one-source", "two-sources"])
def test_two_cpu_processes_see_the_global_batch(tiny_data, tmp_path, sources):
    """With two sources a pair each process gathers every view's columns: the same loss as one process."""
    common = dict(max_steps=3, save_every=0, eval_every=0, warmup_steps=0, lr=1e-3, sources_per_pair=sources)
    single = train(tiny_config(tiny_data, tmp_path / "one", batch_size=8, **common))
    # accelerate launch --cpu starts several processes only through MPI; --multi_gpu starts them with
    # torchrun, and cpu=true keeps them on the CPU (gloo).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), ENTRY,
              *tiny_args(tiny_data, tmp_path / "two", batch_size=4, cpu=True, **common)]
    done = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: step 3") == 1  # reported by the main process only
    for step in (1, 2, 3):  # step 1: the same loss; steps 2-3: the same gradients were applied
        two = metrics_at(tmp_path / "two", step)["train/loss"]
        assert two == pytest.approx(single.losses[step], abs=1e-5), (step, two, single.losses[step])
    state = json.loads((tmp_path / "two" / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch_size"] == 8


# --- text, bound through images ----------------------------------------------------------------


def test_a_text_model_trains_image_waveform_and_image_text_and_resumes_exactly(tiny_data, tmp_path):
    """tiny-text: every step trains both bound pairs from one batch (each logged with its own
    temperature); no waveform-text term; a killed run resumed ends like an uninterrupted one."""
    from seisbind.models import SeisBindModel

    full = train(tiny_config(tiny_data, tmp_path / "full", model="tiny-text", max_steps=4, save_every=2,
                             captions_per_geology=4))  # fmt: skip
    entry = metrics_at(tmp_path / "full", 4)
    assert {"train/loss/image_waveform", "train/loss/image_text", "train/logit_scale/image_text"} <= set(entry)
    assert not any("waveform_text" in k for k in entry)
    assert entry["train/loss"] == pytest.approx(entry["train/loss/image_waveform"] + entry["train/loss/image_text"],
                                                rel=0.05)  # fmt: skip  (one step's terms against the window mean)
    model = SeisBindModel.from_pretrained(tmp_path / "full" / "final-model")
    assert model.modalities == ("image", "waveform", "text") and model.encode_text("faulted layers").shape == (512,)
    # a run that stopped after its step-2 checkpoint: resumed, it ends as the whole run did
    import shutil

    (tmp_path / "cut" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000002", tmp_path / "cut" / "checkpoints" / "step-00000002")
    resumed = train(tiny_config(tiny_data, tmp_path / "cut", model="tiny-text", max_steps=4, save_every=2,
                                captions_per_geology=4, resume="latest"))  # fmt: skip
    assert resumed.step == 4 and resumed.loss == pytest.approx(full.loss, abs=1e-6)


def test_two_sources_a_pair_train_the_views_term_and_resume_exactly(tiny_data, tmp_path):
    """sources_per_pair=2: each step logs the views' own term beside image-waveform; a run resumed
    from its step-2 checkpoint ends as the whole run did; a third source the data lack is refused."""
    import shutil

    kw = dict(max_steps=4, save_every=2, sources_per_pair=2)
    full = train(tiny_config(tiny_data, tmp_path / "full", **kw))
    entry = metrics_at(tmp_path / "full", 4)
    assert {"train/loss/image_waveform", "train/loss/waveform_views"} <= set(entry)
    assert entry["train/records_per_s"] == pytest.approx(2 * entry["train/pairs_per_s"])  # a pair: two records
    (tmp_path / "cut" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000002", tmp_path / "cut" / "checkpoints" / "step-00000002")
    resumed = train(tiny_config(tiny_data, tmp_path / "cut", resume="latest", **kw))
    assert resumed.step == 4 and resumed.loss == pytest.approx(full.loss, abs=1e-6)
    with pytest.raises(ValueError, match="sources_per_pair=3 needs that many sources per geology"):
        train(tiny_config(tiny_data, tmp_path / "three", max_steps=2, sources_per_pair=3))
    with pytest.raises(ValueError, match="sources_per_pair must be an integer >= 1"):
        tiny_config(tiny_data, tmp_path / "zero", sources_per_pair=0)


def test_caption_pools_are_per_geology_and_vary_only_when_asked(tiny_data):
    from seisbind.training.data import PairDataset, load_rows

    rows = load_rows(tiny_data, "train", labels=True)
    one = PairDataset(rows, 0, 2, 4, captions_per_geology=1)
    many = PairDataset(rows, 0, 2, 4, captions_per_geology=16)
    assert len({one[(e, 0)]["text"] for e in range(12)}) == 1  # one fixed caption per geology
    assert len({many[(e, 0)]["text"] for e in range(40)}) > 4  # phrasings vary across epochs
    assert many[(3, 0)]["text"] == PairDataset(rows, 0, 2, 4, captions_per_geology=16)[(3, 0)]["text"]  # seeded
    with pytest.raises(ValueError, match="labels=True"):
        PairDataset(load_rows(tiny_data, "train"), 0, 2, 4, captions_per_geology=2)[(0, 0)]


def test_mirroring_is_refused_for_channels_it_does_not_know_how_to_mirror():
    import datasets

    from seisbind.training.augment import mirror_pair, mirrorable

    assert mirrorable("ZNE") and mirrorable("shot0,shot1,shot2")
    assert not mirrorable("HHZ,HHN,HHE") and not mirrorable("shot1,shot0")
    with pytest.raises(ValueError, match="channels 'HHZ,HHN,HHE'"):
        mirror_pair(np.zeros((1, 4, 4)), np.zeros((2, 3, 8)), "HHZ,HHN,HHE")
    with pytest.raises(ValueError, match="has 2 channels"):
        mirror_pair(np.zeros((1, 4, 4)), np.zeros((2, 2, 8)), "shot0,shot1,shot2")
    rows = datasets.Dataset.from_dict({"channels": ["HHZ,HHN,HHE"], "geology_id": [0]})
    with pytest.raises(ValueError, match="set mirror_prob=0"):
        PairDataset(rows, seed=0, min_stations=1, max_stations=1, mirror_prob=0.5)
    # no mirror asked: fine, and nothing claims a channel order the rows were never read for
    assert PairDataset(rows, seed=0, min_stations=1, max_stations=1, mirror_prob=0.0).mirror_channels is None
    shots = datasets.Dataset.from_dict({"channels": ["shot0,shot1,shot2"], "geology_id": [0]})
    assert PairDataset(shots, seed=0, min_stations=1, max_stations=1, mirror_prob=0.5).mirror_channels == "shot0,shot1,shot2"
