"""The README's main job, shrunk: every stage of `seisbind quickstart` runs and leaves its outputs."""

import json
import re

from seisbind.cli import main


def test_quickstart_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "qs"
    rc = main(["quickstart", "--out", str(out), "--num-geologies", "20", "--workers", "2", "--max-steps", "3", "--batch-size", "8",
               "--baseline-steps", "1", "--no-progress"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["geologies"]["test"] >= 2 and "seisbind (trained)" in results["retrieval"]
    assert (out / "train" / "best-model" / "model.safetensors").is_file()
    # the gather CNN beside the towers (on a machine with a core for it) reads as many sources a pair as they do
    assert results["gather_cnn"] is None or results["gather_cnn"]["sources_per_pair"] == 2
    # the shipped model embeds mirror-averaged, and the bar beside it mirrors its pairs as the towers' are
    assert results["mirror_average"] is True
    assert results["gather_cnn"] is None or results["gather_cnn"]["mirror_prob"] == 0.5
    assert (out / "index" / "index.faiss").is_file() and (out / "query.png").read_bytes()[:4] == b"\x89PNG"
    assert "| seisbind (trained) |" in printed and "| 1 |" in printed
    rank, gallery = map(int, re.search(r"its own section ranks (\d+) of (\d+)", printed).groups())
    assert gallery == results["geologies"]["test"] and 1 <= rank <= gallery
    # the quickstart's model has a text tower: text tables, and a text query of the index
    assert set(results["text"]["zero_shot"]) == {"family", "fault_present", "site_class"}
    assert "| waveform -> text prompts (emergent) |" in printed and "| text -> image, held-out phrasings |" in printed
    # the shared-directions filter reaches both the zero-shot and the text -> waveform tables
    assert "| waveform -> text prompts, shared directions (emergent) |" in printed
    assert "text_to_waveform_shared_directions" in results["text"]["retrieval_heldout_phrasings"]
    assert 'text query "layers cut by a fault"' in printed


def test_more_geologies_grow_only_the_training_split():
    from seisbind.quickstart import split_sizes

    assert split_sizes(1000) == (100, 100)  # the default: 800 / 100 / 100
    assert split_sizes(4200) == (100, 100)  # 4,000 train, the same gallery of 100
    assert split_sizes(20) == (2, 2)  # small runs keep a tenth each
