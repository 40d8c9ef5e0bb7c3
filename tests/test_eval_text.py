"""Text evaluation: the prompt classifier, emergent waveform->text zero-shot and text queries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seisbind.evaluation import text
from seisbind.evaluation.embed import SplitEmbeddings


class KeywordTextModel:
    """encode_text puts a prompt on the axis of the first class keyword it contains: a text tower
    whose embedding of each class's prompts is exactly that class's direction."""

    def __init__(self, keywords: list[str], dim: int = 8):
        self.keywords, self.dim = keywords, dim

    def encode_text(self, texts):
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            hit = next((k for k, w in enumerate(self.keywords) if w in t.lower()), None)
            assert hit is not None, t
            out[i, hit] = 1.0
        return out


def test_the_prompt_classifier_is_perfect_on_separable_embeddings():
    model = KeywordTextModel(["folded", "flat", "fault"])
    prompts = {"folded": ["a section of folded layers", "folded strata"], "flat": ["flat layers", "flat beds"],
               "faulted": ["a fault", "faulted layers"]}  # fmt: skip
    classes, protos = text.prompt_classifier(model, prompts)
    assert list(classes) == ["folded", "flat", "faulted"]
    np.testing.assert_allclose(protos, np.eye(8)[:3], atol=1e-12)
    rng = np.random.default_rng(0)
    truth = rng.integers(3, size=40)
    queries = np.eye(8)[truth] + 0.1 * rng.standard_normal((40, 8))  # near each class's axis
    from seisbind.evaluation.zeroshot import zero_shot_predict

    assert (zero_shot_predict(queries, classes, protos) == classes[truth]).all()


def test_task_labels_make_nehrp_classes_from_vs30():
    labels = text.task_labels({"family": np.array(["flat", "folded"]), "fault_present": np.array([True, False]),
                               "vs30": np.array([1600.0, 200.0])})  # fmt: skip
    assert labels["site_class"].tolist() == ["A", "D"] and labels["fault_present"].tolist() == [True, False]


def _split(n, sources, rng, dim=16):
    fam = np.array(["flat", "folded", "faulted", "graben"])[np.arange(n) % 4]
    labels = {"family": fam, "fault_present": np.isin(fam, ["faulted", "graben"]), "vs30": rng.uniform(150, 900, n),
              "depth_vs760_m": rng.uniform(10, 200, n), "n_layers": np.full(n, 5)}  # fmt: skip
    geo = np.repeat(np.arange(n), sources)
    image = rng.standard_normal((n, dim))
    wave = image[geo] + 0.3 * rng.standard_normal((n * sources, dim))
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return SplitEmbeddings(norm(image), norm(wave), geo, labels, {k: v[geo] for k, v in labels.items()})


def test_emergent_zero_shot_reports_every_method_in_one_table():
    import seisbind

    torch.manual_seed(0)
    model = seisbind.create_model("tiny-text").eval()
    rng = np.random.default_rng(1)
    emb = {s: _split(n, 2, rng, 512) for s, n in (("train", 24), ("validation", 8), ("test", 12))}
    result = text.emergent_zero_shot(model, emb, "test")
    assert set(result) == {"family", "fault_present", "site_class"}
    for task, row in result.items():
        for method in ("waveform -> text prompts (emergent)", "waveform -> text prompts, prior-matched (emergent)",
                       "waveform -> text prompts, shared directions (emergent)",
                       "image -> text prompts",
                       "waveform -> image prototypes", "linear probe on waveforms (supervised)"):
            assert 0.0 <= row[method]["acc1"] <= 1.0, (task, method)
    assert result["site_class"]["chance (uniform over the classes)"]["acc1"] == pytest.approx(1 / 5)
    assert result["family"]["classes"] == ["faulted", "flat", "folded", "graben"]
    table = text.markdown({"zero_shot": result, "retrieval": {
        "text_to_image": {"recall@1": 0.1, "recall@5": 0.2, "recall@10": 0.3, "median_rank": 5.0, "gallery_size": 12,
                          "positives_per_query": 1.0},
        "text_to_waveform": {"recall@1": 0.1, "recall@5": 0.2, "recall@10": 0.3, "median_rank": 5.0, "gallery_size": 24,
                             "positives_per_query": 2.0}}})  # fmt: skip
    assert "| waveform -> text prompts (emergent) |" in table and "| text -> waveform, training phrasings |" in table


def test_text_queries_use_held_out_phrasings_and_rank_the_split(tmp_path):
    import seisbind
    from seisbind.data.dataset import load_paired
    from seisbind.data.generate import generate
    from seisbind.evaluation.embed import embed_split
    from test_data_generate import TINY_QUAKE

    data = tmp_path / "data"
    generate(data, "quake", 16, config={**TINY_QUAKE, "image_height": 64, "image_width": 64}, progress=False)
    test = load_paired(data, "test")
    torch.manual_seed(0)
    model = seisbind.create_model("tiny-text").eval()
    captions = text.heldout_captions(test, seed=0)
    assert len(captions) == len(test) and captions == text.heldout_captions(test, seed=0)
    emb = embed_split(model, test, progress=False)
    result = text.text_retrieval(model, test, emb)
    assert result["text_to_image"]["gallery_size"] == len(test) and result["text_to_image"]["queries"] == len(test)
    assert result["text_to_waveform"]["positives_per_query"] == TINY_QUAKE["sources_per_geology"]
    # through an identity filter, text -> waveform ranks exactly as plain cosine does
    through = text.text_retrieval(model, test, emb, shared=np.eye(emb.waveform.shape[1]))
    assert through["text_to_waveform_shared_directions"] == through["text_to_waveform"] == result["text_to_waveform"]
    assert "| text -> waveform, shared directions, held-out phrasings |" in text.markdown(
        {"zero_shot": {}, "retrieval_heldout_phrasings": through})
    # the queries are the held-out bank's phrasings of each geology, not the training bank's
    from seisbind.data.captions import make_captions
    from seisbind.training.data import LABEL_COLUMNS

    row = test.with_format(None)[0]
    labels = {c: row[c] for c in LABEL_COLUMNS if c in row}
    seq = np.random.SeedSequence([0, text._CAPTION_SEED_STREAM, int(row["geology_id"])])
    assert captions[0] == make_captions(labels, 1, np.random.default_rng(seq), templates="heldout")[0]
    assert captions[0] != make_captions(labels, 1, np.random.default_rng(seq), templates="train")[0]


def test_prior_matching_removes_a_constant_lean_towards_one_class():
    # Records score like the images plus a constant 2 on class 0: exactly a bias of -2 there undoes it.
    rng = np.random.default_rng(3)
    image_scores = 3.0 * rng.standard_normal((300, 4))
    record_scores = image_scores + np.array([2.0, 0.0, 0.0, 0.0])
    bias = text.prior_matching_biases(record_scores, image_scores)
    np.testing.assert_allclose(bias, np.array([-2.0, 0.0, 0.0, 0.0]) + 0.5, atol=1e-6)  # centred: sums to 0
    from scipy.special import softmax

    np.testing.assert_allclose(softmax(record_scores + bias, axis=1).mean(0), softmax(image_scores, axis=1).mean(0), atol=1e-9)
    truth = image_scores.argmax(1)
    assert (record_scores.argmax(1) == 0).mean() > (truth == 0).mean() + 0.2  # the lean the biases remove
    assert ((record_scores + bias).argmax(1) == truth).all()


def test_prior_matching_refuses_scores_of_different_classes():
    with pytest.raises(ValueError, match="same classes"):
        text.prior_matching_biases(np.zeros((5, 3)), np.zeros((5, 4)))


def test_shared_directions_keep_what_records_and_images_share_and_drop_the_rest():
    # 16-d space: images vary along axes 0-5; records carry axes 0-2 of their image plus a strong
    # source term on axes 8-11 that no image has. Class prompts point along their class's image
    # mean, plus a class-specific component on axes 8-11: plain cosine lets those meet the records'
    # source terms, the filter must not.
    rng = np.random.default_rng(5)
    n, k, dim = 400, 4, 16
    means = np.zeros((k, dim))
    means[:, :3] = 2.0 * rng.standard_normal((k, 3))
    labels = rng.integers(k, size=n)
    images = means[labels] + np.pad(0.5 * rng.standard_normal((n, 6)), ((0, 0), (0, dim - 6)))
    geo = np.repeat(np.arange(n), 2)
    records = np.zeros((2 * n, dim))
    records[:, :3] = images[geo, :3] + 0.3 * rng.standard_normal((2 * n, 3))
    records[:, 8:12] = 3.0 * rng.standard_normal((2 * n, 4))
    prompts = means / np.linalg.norm(means, axis=1, keepdims=True)
    prompts[:, 8:12] = 1.5 * rng.standard_normal((k, 4))

    f = text.shared_directions(images, records, geo)
    np.testing.assert_allclose(f, f.T, atol=1e-12)
    eig = np.linalg.eigvalsh(f)
    assert eig.min() > -1e-9 and eig.max() <= 1.0 + 1e-9
    assert np.abs(f[8:12]).max() < 1e-9 and np.abs(f[:, 8:12]).max() < 1e-9  # the source axes are gone
    assert np.abs(f[3:6]).max() < 0.1  # image-only axes (no record carries them) weigh ~nothing
    assert np.sum(eig > 0.5) == 3  # the three shared axes, each strongly correlated

    truth = labels[geo]
    plain = np.mean((records @ prompts.T).argmax(1) == truth)
    filtered = np.mean((records @ f @ prompts.T).argmax(1) == truth)
    image_side = np.mean((images @ prompts.T).argmax(1) == labels)
    assert filtered > 0.9 and filtered > plain + 0.3, (plain, filtered)
    assert image_side > 0.9  # the prompts themselves read the images


def test_shared_directions_refuse_misaligned_or_unrelated_inputs():
    with pytest.raises(ValueError, match="one geology index a record"):
        text.shared_directions(np.ones((4, 8)), np.ones((6, 8)), np.arange(4))
    with pytest.raises(ValueError, match="do not covary"):
        text.shared_directions(np.ones((4, 8)), np.ones((8, 8)), np.repeat(np.arange(4), 2))
