"""eval_zeroshot.py end to end on a tiny model trained for a few steps; its JSON, table and plots."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seisbind.data.dataset import load_paired
from seisbind.data.generate import generate
from seisbind.models import ContrastiveLoss, create_model
from test_data_generate import TINY_QUAKE

ROOT = Path(__file__).resolve().parents[1]


def tiny_trained_model(data_dir, out_dir, steps=15):
    torch.manual_seed(0)
    model = create_model("tiny")  # 64 x 64 images, as generated below
    loss_fn = ContrastiveLoss("clip")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = load_paired(data_dir, "train")
    rows = train[:]
    images = torch.stack(rows["image"])
    waves = torch.stack([w[0] for w in rows["waveforms"]])  # first source of each geology
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(images=images, waveforms=waves))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_logit_scale()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    return model.save_pretrained(out_dir)


def test_eval_cli_writes_json_tables_and_plots(tmp_path):
    data = tmp_path / "data"
    generate(data, "quake", 16, config={**TINY_QUAKE, "image_height": 64, "image_width": 64}, progress=False)
    model_dir = tiny_trained_model(data, tmp_path / "model")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval_zeroshot.py"), "--model", str(model_dir), "--data", str(data),
         "--split", "test", "--out", str(out), "--baseline-steps", "2", "--gather-cnn-steps", "2",
         "--gather-cnn-sources-per-pair", "2", "--gather-cnn-mirror-prob", "0.5", "--mirror-average", "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    n_test = results["geologies"]["test"]
    n_wave = n_test * TINY_QUAKE["sources_per_geology"]
    assert results["waveforms_per_geology"] == TINY_QUAKE["sources_per_geology"]
    expected = {"seisbind (trained)", "seisbind (before training)", "random", "CCA on PCA of raw data", "spectrogram image tower",
                "gather CNN"}  # fmt: skip
    assert set(results["retrieval"]) == expected
    assert results["gather_cnn"]["steps"] == 2 and results["gather_cnn"]["budget"]["steps"] == 2
    assert results["gather_cnn"]["sources_per_pair"] == 2  # the flag reaches the CNN in its own process
    # --mirror-average: the model (saved without it) embeds mirror-averaged; the bar mirrors its pairs
    assert results["mirror_average"] is True and results["gather_cnn"]["mirror_average"] is False
    assert results["gather_cnn"]["mirror_prob"] == 0.5
    stages = results["stage_seconds"]
    # one torch thread (the test's OMP_NUM_THREADS) on a machine with more cores: the gather CNN
    # trains in its own process beside the other stages, and the last wait for it is timed
    assert list(stages) == ["embed splits", "CCA baseline", "spectrogram baseline", "zero-shot and probes",
                            "gather CNN (waiting for its process)", "plots"]
    assert results["gather_cnn"]["concurrent"] is True
    assert all(v >= 0 for v in stages.values()) and sum(stages.values()) <= results["seconds"]
    for r in results["retrieval"].values():
        w2i, i2w = r["waveform_to_image"], r["image_to_waveform"]
        assert w2i["gallery_size"] == n_test and w2i["queries"] == n_wave
        assert i2w["gallery_size"] == n_wave and i2w["positives_per_query"] == TINY_QUAKE["sources_per_geology"]
        assert 0 <= w2i["recall@1"] <= w2i["recall@5"] <= 1 and w2i["recall@10"] == 1.0  # gallery < 10
    assert set(results["probes"]) == {
        "image tower, before training", "waveform tower, before training", "image tower, trained",
        "waveform tower, trained", "both towers concatenated, trained",
    }  # fmt: skip
    assert "source_depth_m" not in results["probes"]["image tower, trained"]  # no meaning per image
    assert "source_depth_m" in results["probes"]["waveform tower, trained"]
    assert set(results["zero_shot"]["trained"]) == {"family", "fault_present"}
    for plot in results["plots"]:
        assert Path(plot).read_bytes()[:4] == b"\x89PNG"
    # the memorisation check: the same model on as many training geologies as the test split has
    seen = results["training_geologies"]["waveform_to_image"]
    assert seen["gallery_size"] == min(n_test, results["geologies"]["train"]) and seen["queries"] == n_wave
    assert f"memorisation check, the trained model on {n_test} of its training geologies" in proc.stdout
    assert "| seisbind (trained) |" in proc.stdout and "| gather CNN |" in proc.stdout  # the markdown table
    assert "gather CNN: budget 2 steps; trained 2 steps" in proc.stdout


def test_eval_cli_refuses_a_missing_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval_zeroshot.py"), "--model", str(tmp_path / "none"), "--data", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "error" in proc.stderr


def test_embed_split_gives_one_unit_embedding_per_image_and_per_source(tmp_path):
    from seisbind.evaluation.embed import embed_split
    from seisbind.models.joint import SeisBindModel

    data = tmp_path / "data"
    generate(data, "quake", 4, config={**TINY_QUAKE, "image_height": 64, "image_width": 64}, progress=False)
    model = SeisBindModel.from_pretrained(tiny_trained_model(data, tmp_path / "m"))
    emb = embed_split(model, load_paired(data, "train"), progress=False)
    assert emb.image.shape[0] == len(load_paired(data, "train"))
    assert emb.waveform.shape[0] == emb.image.shape[0] * TINY_QUAKE["sources_per_geology"]
    np.testing.assert_allclose(np.linalg.norm(emb.waveform, axis=1), 1.0, atol=1e-5)
    assert emb.positives().sum() == emb.waveform.shape[0]  # each waveform has exactly one image


def test_first_geologies_keeps_each_waveform_with_its_own_image():
    from seisbind.evaluation.embed import SplitEmbeddings
    from seisbind.evaluation.metrics import retrieval_report

    rng = np.random.default_rng(0)
    image = rng.standard_normal((5, 4))
    image /= np.linalg.norm(image, axis=1, keepdims=True)  # unit rows, as embeddings are
    geology = np.repeat(np.arange(5), 2)  # two sources a geology
    waveform = image[geology] + 0.01 * rng.standard_normal((10, 4))  # each near its own image
    emb = SplitEmbeddings(image, waveform, geology, {"family": np.arange(5)}, {"family": geology})
    first = emb.first_geologies(3)
    assert first.image.shape == (3, 4) and first.waveform.shape == (6, 4)
    assert (first.waveform_geology == [0, 0, 1, 1, 2, 2]).all() and (first.waveform_labels["family"] == first.waveform_geology).all()
    np.testing.assert_array_equal(first.waveform, waveform[:6])
    report = retrieval_report(first.waveform @ first.image.T, first.positives())
    assert report["gallery_size"] == 3 and report["recall@1"] == 1.0
    assert emb.first_geologies(99).image.shape == (5, 4)  # all of them when fewer
    with pytest.raises(ValueError, match="at least one geology"):
        emb.first_geologies(0)
