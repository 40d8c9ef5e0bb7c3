"""Text in export and search: a model with a text tower exports caption embeddings, and
`seisbind index query --text` finds sections (or waveforms) of a sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seisbind.cli import main
from seisbind.data.dataset import load_paired
from seisbind.data.generate import generate
from seisbind.io.embeddings import read_embeddings
from seisbind.models import create_model
from test_data_generate import TINY_QUAKE


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-text")
    generate(root / "data", "quake", 12, config={**TINY_QUAKE, "image_height": 64, "image_width": 64}, progress=False)
    torch.manual_seed(0)
    create_model("tiny-text").save_pretrained(root / "model")
    create_model("tiny").save_pretrained(root / "no-text")
    assert main(["export", "--model", str(root / "model"), "--data", str(root / "data"), "--split", "train",
                 "--out", str(root / "train.parquet"), "--no-progress"]) == 0  # fmt: skip
    # built here, not in a test: under xdist the tests of this module may run on different workers
    assert main(["index", "build", "--embeddings", str(root / "train.parquet"), "--out", str(root / "ix")]) == 0
    return root


def test_export_writes_one_caption_embedding_per_geology(setup):
    from seisbind.models import SeisBindModel

    table, meta = read_embeddings(setup / "train.parquet")
    train = load_paired(setup / "data", "train")
    modalities = table.column("modality").to_pylist()
    assert modalities.count("text") == modalities.count("image") == len(train)
    row = train[0]
    ids = table.column("id").to_pylist()
    got = np.asarray(table.column("embedding").to_pylist()[ids.index(f"train/geology-{row['geology_id']}/caption")])
    model = SeisBindModel.from_pretrained(setup / "model").eval()
    with torch.no_grad():
        np.testing.assert_allclose(got, model.encode_text(row["caption"]).numpy(), atol=1e-5)
    assert meta["modality"] == "image+waveform+text"


def test_a_text_query_ranks_sections_by_the_text_image_similarity(setup, capsys):
    from seisbind.models import SeisBindModel
    from seisbind.search.index_cli import query

    sentence = "layers cut by a reverse fault, site class D"
    text, scores, hits, _ = query(str(setup / "ix"), str(setup / "model"), text=sentence, k=8)
    assert text == sentence and len(hits) == 8 and all(h["modality"] == "image" for h in hits)
    # the order is the model's text-image cosine similarity over the indexed sections
    table, _ = read_embeddings(setup / "train.parquet")
    images = {i: np.asarray(e) for i, e, m in zip(table.column("id").to_pylist(), table.column("embedding").to_pylist(),
                                                    table.column("modality").to_pylist()) if m == "image"}  # fmt: skip
    model = SeisBindModel.from_pretrained(setup / "model").eval()
    with torch.no_grad():
        q = model.encode_text(sentence).numpy()
    expected = sorted(images, key=lambda i: -float(images[i] @ q))[:8]
    assert [h["id"] for h in hits] == expected
    np.testing.assert_allclose(scores, [images[i] @ q for i in expected], atol=1e-5)
    capsys.readouterr()
    assert main(["index", "query", "--index", str(setup / "ix"), "--model", str(setup / "model"), "--text", sentence,
                 "--k", "3", "--png", str(setup / "text.png")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| 1 |" in out and (setup / "text.png").read_bytes()[:4] == b"\x89PNG"


def test_text_queries_are_refused_clearly(setup, capsys):
    assert main(["index", "query", "--index", str(setup / "ix"), "--model", str(setup / "no-text"), "--text", "faults",
                 "--allow-other-weights"]) == 2  # fmt: skip
    assert "has no text tower" in capsys.readouterr().err
    assert main(["index", "query", "--index", str(setup / "ix"), "--model", str(setup / "model"), "--text", " "]) == 2
    assert "--text is empty" in capsys.readouterr().err
    assert main(["index", "query", "--index", str(setup / "ix"), "--model", str(setup / "model"), "--text", "x",
                 "--image", "y.npy"]) == 2  # fmt: skip
    assert "exactly one of --waveform FILE, --image FILE or --text SENTENCE" in capsys.readouterr().err


def test_a_text_model_exports_npy_from_data_without_captions(setup, tmp_path, monkeypatch):
    """No caption column: no text rows, and the .npy's row count says so (it counted them)."""
    import seisbind.data.dataset as dataset_module
    from seisbind.search.export import export

    real = dataset_module.load_paired
    monkeypatch.setattr(dataset_module, "load_paired", lambda *a, **k: real(*a, **k).remove_columns(["caption"]))
    out = export(setup / "model", setup / "data", "train", tmp_path / "e.npy", progress=False)
    train = real(setup / "data", "train")
    rows = np.load(out, allow_pickle=False)
    assert rows.shape[0] == len(train) * (1 + TINY_QUAKE["sources_per_geology"])
