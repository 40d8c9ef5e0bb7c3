"""Hub-style weights: save_pretrained / from_pretrained / push_to_hub through huggingface_hub's
PyTorchModelHubMixin, and the model card beside the weights. Offline: nothing here opens a socket."""

import json
import socket
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

import seisbind.models.joint as joint
from seisbind.io.encode import config_sha256, weights_sha256
from seisbind.models import SeisBindModel, create_model
from seisbind.models.model_card import LICENSE, update_model_card

REPO = "someone/seisbind-tiny"
FILES = ["README.md", "config.json", "model.safetensors"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1, an empty HF cache, and any connection attempt an error."""
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise AssertionError("a test of tests/test_models_hub.py tried to open a network connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    return create_model("tiny")


def _card(folder: Path) -> ModelCard:
    return ModelCard.load(folder / "README.md")


def _tower_parameters(model) -> dict[str, int]:
    """Per-tower parameter counts from the parameter names (``trunks.image.…``, ``heads.waveform.…``)."""
    counts = {"image": 0, "waveform": 0}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] in ("preprocessors", "trunks", "heads", "postprocessors"):
            counts[parts[1]] += p.numel()
    return counts


# ---------------------------------------------------------------- save / load and the card


def test_round_trip_keeps_weights_and_writes_a_card_with_their_hash(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "m")
    assert folder == tmp_path / "m" and sorted(p.name for p in folder.iterdir()) == FILES
    config = json.loads((folder / "config.json").read_text())
    assert config == {"architecture": "SeisBindModel", **tiny.config.to_dict()}  # the layout of before the mixin
    loaded = SeisBindModel.from_pretrained(str(folder), map_location="cpu")
    a, b = tiny.state_dict(), loaded.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert weights_sha256(loaded) == weights_sha256(tiny)

    card = _card(folder)
    assert card.data.library_name == "seisbind" and card.data.license == LICENSE
    assert {"seismology", "contrastive-learning", "pytorch_model_hub_mixin"} <= set(card.data.tags)
    text = card.text
    assert f"weights sha256: `{weights_sha256(tiny)}`" in text and f"config sha256: `{config_sha256(tiny)}`" in text
    params = _tower_parameters(tiny)
    assert params["image"] > 0 and params["waveform"] > 0
    assert f"| parameters | {params['image']:,} | {params['waveform']:,} |" in text
    total = sum(p.numel() for p in tiny.parameters())
    assert f"Parameters in all: {total:,}" in text
    for row in ("| width | 64 | 32 |", "| depth | 2 | 2 |", "| patch size | 16 | - |", "| image size | 64 x 64 | - |",
                "| sampling_rate | - | 100 Hz |", "| component_order | - | ZNE |", "| embed_dim | 512 | 512 |"):
        assert row in text, row
    assert "## Training data\n\nnot recorded." in text and "## Training config\n\nnot recorded." in text
    assert "not evaluated." in text


def test_the_card_license_is_the_package_license():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["license"]["text"].lower() == LICENSE


def test_a_folder_without_a_card_still_loads_and_a_stale_card_is_replaced(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "m")
    (folder / "README.md").unlink()  # a folder written before the card existed
    assert weights_sha256(SeisBindModel.from_pretrained(folder)) == weights_sha256(tiny)
    (folder / "README.md").write_text("---\nlicense: mit\n---\nan old card of other weights\n")
    tiny.save_pretrained(folder)
    assert weights_sha256(tiny) in _card(folder).text and _card(folder).data.license == LICENSE


def test_card_info_renders_training_and_evaluation(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "m", card_info={
        "training_data": {"folder": "data/quake", "geologies": 12},
        "training_config": {"lr": 0.001, "max_steps": 30},
        "evaluation": {"test": {"recall@1": 0.625, "median_rank": 2.0}, "gallery_size": 16},
        "evaluation_note": "Test split of data/quake.",
    })
    text = _card(folder).text
    assert '"geologies": 12' in text and '"lr": 0.001' in text and "not recorded" not in text
    assert "Test split of data/quake." in text and "not evaluated" not in text
    for row in ("| metric | value |", "| test/recall@1 | 0.625 |", "| test/median_rank | 2 |", "| gallery_size | 16 |"):
        assert row in text, row

    rows = [{"method": "seisbind", "R@1": 0.5}, {"method": "random", "R@1": 0.125, "mAP": 0.3333333}]
    text = _card(tiny.save_pretrained(tmp_path / "rows", card_info={"evaluation": rows})).text
    assert "| method | R@1 | mAP |" in text and "| seisbind | 0.5 |  |" in text and "| random | 0.125 | 0.3333 |" in text
    with pytest.raises(ValueError, match=r"unknown card_info key\(s\) \['evaluations'\]"):
        tiny.save_pretrained(tmp_path / "bad", card_info={"evaluations": {}})


def test_update_model_card_rewrites_only_the_evaluation(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "m", card_info={"training_config": {"lr": 0.001}})
    before = _card(folder)
    update_model_card(folder, {"recall@1": 0.75}, note="Test split.")
    after = _card(folder)
    assert "| recall@1 | 0.75 |" in after.text and "Test split." in after.text and "not evaluated" not in after.text
    assert after.data.to_dict() == before.data.to_dict() and '"lr": 0.001' in after.text
    assert weights_sha256(tiny) in after.text and after.text.count("## Evaluation") == 1
    update_model_card(folder, {"recall@1": 0.5})  # a second update replaces the first
    assert "| recall@1 | 0.5 |" in _card(folder).text and "0.75" not in _card(folder).text
    assert sorted(p.name for p in folder.iterdir()) == FILES  # no temporary file left
    with pytest.raises(FileNotFoundError, match="README.md not found"):
        update_model_card(tmp_path / "nothing", {"recall@1": 0.5})


def test_a_training_run_saves_its_validation_figures_in_the_card(tiny, tmp_path):
    from seisbind.training.checkpointing import save_model_atomic

    folder = save_model_atomic(tiny, tmp_path / "best-model", {"step": 3, "metrics": {"wave_to_image_r1": 0.5}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-model"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "training.json"]
    text = _card(folder).text
    assert "| wave_to_image_r1 | 0.5 |" in text and "at step 3" in text


def test_the_evaluation_cli_records_its_retrieval_table_in_the_card(tiny, tmp_path):
    from seisbind.evaluation.cli import record_in_model_card

    report = {"recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0, "median_rank": 1.5, "mAP": 0.625, "gallery_size": 4}
    results = {"split": "test", "data": "data/quake", "geologies": {"test": 4}, "waveforms_per_geology": 2,
               "retrieval": {"seisbind (trained)": {"waveform_to_image": report, "image_to_waveform": report}}}
    folder = tiny.save_pretrained(tmp_path / "m")
    assert record_in_model_card(str(folder), results, tmp_path / "results.json") == folder / "README.md"
    text = _card(folder).text
    assert "| seisbind (trained) | 0.5 | 1 | 1 | 1.5 | 0.5 | 0.625 | 4 |" in text
    assert "test split of data/quake" in text and "results.json" in text
    assert record_in_model_card(str(tmp_path / "no-card"), results, tmp_path / "results.json") is None


# ---------------------------------------------------------------- Hub repo ids, offline


def test_a_repo_id_is_fetched_into_a_folder_and_loaded_like_one(tiny, tmp_path, monkeypatch):
    folder = tiny.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.setattr(joint, "snapshot_download", fake_snapshot_download)
    loaded = SeisBindModel.from_pretrained(REPO, revision="v1", cache_dir=tmp_path / "cache", token="hf_x")
    assert weights_sha256(loaded) == weights_sha256(tiny)
    (repo_id, kwargs), = calls
    assert repo_id == REPO and kwargs["revision"] == "v1" and kwargs["cache_dir"] == tmp_path / "cache"
    assert kwargs["token"] == "hf_x" and kwargs["local_files_only"] is True  # HF_HUB_OFFLINE=1
    assert set(kwargs["allow_patterns"]) == set(FILES)


def test_a_repo_id_resolves_through_the_hf_cache_offline(tiny, tmp_path):
    cache = tmp_path / "cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    tiny.save_pretrained(repo / "snapshots" / commit)  # the cache's layout, as a download leaves it
    loaded = SeisBindModel.from_pretrained(REPO, cache_dir=cache)
    assert weights_sha256(loaded) == weights_sha256(tiny)
    assert weights_sha256(SeisBindModel.from_pretrained(REPO, cache_dir=cache, revision=commit)) == weights_sha256(tiny)


def test_the_commands_take_a_repo_id_as_model(tiny, tmp_path, monkeypatch):
    """--model owner/name in embed/export/index goes through load_model to the Hub (cache)."""
    from seisbind.io.encode import load_model

    import huggingface_hub.constants

    folder = tiny.save_pretrained(tmp_path / "snapshot")
    calls = []
    monkeypatch.setattr(joint, "snapshot_download", lambda repo_id, **kwargs: calls.append(kwargs) or str(folder))
    # even with the Hub online, a command reads the cache only: a mistyped runs/model must not download
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    model, info = load_model(REPO)
    assert info["weights"] == "pretrained" and info["weights_sha256"] == weights_sha256(tiny)
    assert not model.training
    assert [c["local_files_only"] for c in calls] == [True]


def test_an_uncached_repo_id_offline_fails_in_one_line(tmp_path):
    with pytest.raises(joint.PretrainedNotFoundError) as err:
        SeisBindModel.from_pretrained(REPO, cache_dir=tmp_path / "empty-cache")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{REPO!r} is not a local folder")
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE=1" in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained traceback from inside
    assert Path(err.traceback[-1].path).name == "joint.py"


@pytest.mark.parametrize("name", ["not a model!!", "a/b/c", "./missing", "/no/such/folder"])
def test_neither_a_folder_nor_a_repo_id_is_a_value_error(name, monkeypatch):
    monkeypatch.setattr(joint, "snapshot_download", lambda *a, **k: pytest.fail("the Hub was asked"))
    with pytest.raises(ValueError, match="expected a folder written by save_pretrained or a Hub repo id"):
        SeisBindModel.from_pretrained(name)


def test_a_file_is_not_a_model_folder(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        SeisBindModel.from_pretrained(folder / "model.safetensors")


# ---------------------------------------------------------------- push_to_hub


def test_push_to_hub_uploads_what_save_pretrained_writes(tiny, tmp_path, monkeypatch):
    uploads = []

    class Url:
        repo_id = REPO

    def fake_create_repo(self, repo_id, **kwargs):
        assert repo_id == REPO
        return Url()

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        uploads.append({"repo_id": repo_id, "files": sorted(p.name for p in folder.iterdir()),
                        "config": (folder / "config.json").read_text(), "card": (folder / "README.md").read_text()})
        return "https://huggingface.co/someone/seisbind-tiny/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    url = tiny.push_to_hub(REPO, model_card_kwargs={"evaluation": {"recall@1": 0.5}})
    assert url.endswith("/commit/1")
    local = tiny.save_pretrained(tmp_path / "m")
    (up,) = uploads
    assert up["repo_id"] == REPO and up["files"] == FILES
    assert up["config"] == (local / "config.json").read_text()
    assert weights_sha256(tiny) in up["card"] and "| recall@1 | 0.5 |" in up["card"]

    # save_pretrained(push_to_hub=True) uploads the card with its card_info too.
    url = tiny.save_pretrained(tmp_path / "pushed", push_to_hub=True, repo_id=REPO,
                               card_info={"training_config": {"lr": 0.001}})
    assert url.endswith("/commit/1") and uploads[-1]["files"] == FILES and '"lr": 0.001' in uploads[-1]["card"]
