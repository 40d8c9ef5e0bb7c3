"""Evaluation of the text modality: emergent waveform->text zero-shot, and text queries.

Text is bound to images only; no (waveform, text) pair is ever trained. What this module measures
is therefore ImageBind's emergent link:

* **waveform -> text zero-shot**: each class (family, fault present, NEHRP site class) is the mean
  of its prompts' text embeddings (CLIP's prompt ensembles, :mod:`seisbind.data.captions`), and a
  waveform takes the class whose text it is nearest. Beside it, in the same run: the image-prototype
  zero-shot (class means of the train images' embeddings) and a supervised linear probe on the
  waveform embeddings, the bar that uses labels; and the same prompts **prior-matched**
  (:func:`prior_matching_biases`): one bias a class, fitted without labels on the train split so
  that the records' class frequencies are those the bound image-text pair gives the train images;
  and the same prompts compared with the records only along the **shared directions**
  (:func:`shared_directions`): the image directions the paired train records predict, each
  weighted by how well, so that what a record carries and no image does (its source, its path)
  does not meet the prompts' own off-image components;
* **text -> image and text -> waveform retrieval**: one caption per geology of the evaluated split
  (geologies training never saw, so captions it never saw), ranked against the split's images and
  waveforms with :mod:`seisbind.evaluation.metrics`; once in the training bank's phrasings and
  once in a disjoint bank of phrasings and words the text tower never met (``templates="heldout"``),
  which a tower trained from scratch cannot be expected to read: words it never saw have only
  their initial embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from seisbind.evaluation.metrics import classification_report, retrieval_report
from seisbind.evaluation.zeroshot import class_prototypes, l2_normalize, zero_shot_predict

TASKS = ("family", "fault_present", "site_class")
_CAPTION_SEED_STREAM = 7  # SeedSequence(seed, 7, geology): held-out query captions


def prompt_classifier(model, prompts: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, class embeddings)``: each class the re-normalised mean of its prompts' embeddings."""
    classes = list(prompts)
    with torch.no_grad():
        embs = [l2_normalize(model.encode_text(list(prompts[c])).float().cpu().numpy()).mean(0) for c in classes]
    return np.array(classes, dtype=object), l2_normalize(np.stack(embs))


def prior_matching_biases(record_scores: np.ndarray, image_scores: np.ndarray, steps: int = 200) -> np.ndarray:
    """One bias a class such that the mean softmax of ``record_scores + bias`` over the records
    equals the mean softmax of ``image_scores`` over the images; the biases sum to zero.

    Both are (items, classes) logits of the same text classifier, on unlabelled train records and
    unlabelled train images. The emergent classifier can lean on one class whose text direction
    records sit near (stop 38 found one prompt taking a quarter of the test records); the bound
    image-text pair says how often each class should come up. This is prior re-estimation (Saerens
    et al. 2002) with the prior read from the images instead of estimated by EM: proportional
    fitting of the class marginals, a few lines that no maintained library offers on its own.
    It uses no label and no waveform-text pair.
    """
    from scipy.special import softmax

    record_scores, image_scores = np.asarray(record_scores, float), np.asarray(image_scores, float)
    if record_scores.ndim != 2 or image_scores.ndim != 2 or record_scores.shape[1] != image_scores.shape[1]:
        raise ValueError(f"scores must be (items, classes) with the same classes; got {record_scores.shape} "
                         f"and {image_scores.shape}")
    target = softmax(image_scores, axis=1).mean(axis=0)
    bias = np.zeros(record_scores.shape[1])
    for _ in range(steps):
        bias += np.log(target / softmax(record_scores + bias, axis=1).mean(axis=0))
    return bias - bias.mean()


def shared_directions(images: np.ndarray, waveforms: np.ndarray, waveform_geology: np.ndarray) -> np.ndarray:
    """A (dim, dim) similarity filter that keeps only what records and images share: the image
    directions that the paired train records predict, each weighted by how well they predict it.

    The directions are the partial-least-squares SVD of the records' and images' cross-covariance
    over the train pairs (sklearn's ``PLSSVD``; Tucker's inter-battery factors), up to its rank.
    Each is weighted by rho_i, the correlation between the images' and the records' scores along
    it (clipped at 0): ``F = sum_i rho_i u_i u_i^T`` over the image-side directions u_i. A record
    and a text prompt are then compared as ``w @ F @ t``. Why: a record embedding meets its image
    at cosine ~0.5; the rest of it (source, path) is not in the image space, and a text prompt has
    its own components outside what records carry. Plain cosine lets the two meet there, and the
    emergent classifier leans on whichever class those stray components favour. The filter uses
    only the bound pair's train embeddings: no label and no waveform-text pair.
    """
    from sklearn.cross_decomposition import PLSSVD

    images, waveforms = np.asarray(images, np.float64), np.asarray(waveforms, np.float64)
    waveform_geology = np.asarray(waveform_geology)
    if images.ndim != 2 or waveforms.ndim != 2 or len(waveform_geology) != len(waveforms):
        raise ValueError(f"need (geologies, dim) images, (records, dim) waveforms and one geology index a record; got "
                         f"{images.shape}, {waveforms.shape} and {waveform_geology.shape}")
    paired = images[waveform_geology]
    cross = (paired - paired.mean(0)).T @ (waveforms - waveforms.mean(0))
    # Its rank at float32 precision, the embeddings' own: past it the singular values are rounding
    # (a tower narrower than the embedding, e.g. a 32-wide head projected to 512, leaves a null space).
    singular = np.linalg.svd(cross, compute_uv=False)
    rank = int(np.sum(singular > singular[0] * max(cross.shape) * np.finfo(np.float32).eps)) if singular[0] > 0 else 0
    if rank == 0:
        raise ValueError("records and images do not covary: no shared direction to compare them along")
    pls = PLSSVD(n_components=rank, scale=False).fit(paired, waveforms)
    x_scores, w_scores = pls.transform(paired, waveforms)
    x_scores, w_scores = x_scores - x_scores.mean(0), w_scores - w_scores.mean(0)
    rho = np.sum(x_scores * w_scores, 0) / np.sqrt(np.sum(x_scores**2, 0) * np.sum(w_scores**2, 0))
    u = pls.x_weights_
    return (u * np.clip(rho, 0.0, 1.0)) @ u.T


def text_logit_scale(model) -> float:
    """The model's image-text temperature (its logit scale), or CLIP's initial 1/0.07 without one."""
    from seisbind.modalities import ModalityType, pair_key

    scales = getattr(model, "logit_scales", None) or {}
    key = pair_key((ModalityType.IMAGE, ModalityType.TEXT))
    return float(scales[key]().detach()) if key in scales else 1.0 / 0.07


def site_classes(vs30: np.ndarray) -> np.ndarray:
    from seisbind.data.captions import site_class

    return np.array([site_class(float(v)) for v in np.asarray(vs30, float)], dtype=object)


def task_labels(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The three tasks' labels from a split's label columns (site class from Vs30), as objects."""
    out = {}
    if "family" in labels:
        out["family"] = np.asarray(labels["family"]).astype(object)
    if "fault_present" in labels:
        out["fault_present"] = np.asarray(labels["fault_present"]).astype(bool).astype(object)
    if "vs30" in labels:
        out["site_class"] = site_classes(labels["vs30"])
    return out


def task_prompts(task: str, classes) -> dict:
    from seisbind.data.captions import family_prompts, fault_prompts, site_class_prompts

    if task == "family":
        return family_prompts(sorted(str(c) for c in classes))
    if task == "fault_present":
        return fault_prompts()
    return site_class_prompts()


def train_shared_directions(emb: dict) -> np.ndarray:
    """:func:`shared_directions` of the train split's unit embeddings (``emb["train"]``)."""
    train = emb["train"]
    return shared_directions(l2_normalize(train.image), l2_normalize(train.waveform), train.waveform_geology)


def emergent_zero_shot(model, emb: dict, split: str, shared: np.ndarray | None = None) -> dict:
    """Per task: waveform->text prompts (emergent), image->text prompts (the bound pair),
    image-prototype zero-shot and a linear probe on waveforms, with the chance level."""
    from seisbind.evaluation.probes import linear_probe_classification

    train_labels = task_labels(emb["train"].image_labels)
    test_w = task_labels(emb[split].waveform_labels)
    test_i = task_labels(emb[split].image_labels)
    val_all, train_all = task_labels(emb["validation"].waveform_labels), task_labels(emb["train"].waveform_labels)
    scale = text_logit_scale(model)
    shared = train_shared_directions(emb) if shared is None else shared
    train_records, train_images = l2_normalize(emb["train"].waveform), l2_normalize(emb["train"].image)
    records = l2_normalize(emb[split].waveform)
    out = {}
    for task in TASKS:
        if task not in test_w or task not in train_labels:
            continue
        prompts = task_prompts(task, np.unique(train_labels[task]))
        classes, text_protos = prompt_classifier(model, prompts)
        y = test_w[task]
        bias = prior_matching_biases(scale * train_records @ text_protos.T, scale * train_images @ text_protos.T)
        matched = classes[np.argmax(scale * records @ text_protos.T + bias, axis=1)]
        filtered = classes[np.argmax(records @ shared @ text_protos.T, axis=1)]
        row = {
            "waveform -> text prompts (emergent)": classification_report(y, zero_shot_predict(emb[split].waveform, classes, text_protos)),
            "waveform -> text prompts, prior-matched (emergent)": classification_report(y, matched),
            "waveform -> text prompts, shared directions (emergent)": classification_report(y, filtered),
            "image -> text prompts": classification_report(test_i[task], zero_shot_predict(emb[split].image, classes, text_protos)),
        }  # fmt: skip
        img_classes, img_protos = class_prototypes(emb["train"].image, train_labels[task])
        row["waveform -> image prototypes"] = classification_report(y, zero_shot_predict(emb[split].waveform, img_classes, img_protos))
        val_w, train_w = val_all[task], train_all[task]
        if len(np.unique(train_w)) > 1:
            codes = {c: i for i, c in enumerate(sorted(set(train_w) | set(val_w) | set(y), key=str))}
            enc = [np.array([codes[c] for c in v]) for v in (train_w, val_w, y)]
            probe = linear_probe_classification(emb["train"].waveform, enc[0], emb["validation"].waveform, enc[1],
                                                emb[split].waveform, enc[2])  # fmt: skip
            row["linear probe on waveforms (supervised)"] = {k: probe[k] for k in ("acc1", "mean_per_class_recall")}
        present = np.unique(y)
        row["chance (uniform over the classes)"] = {"acc1": 1.0 / len(classes), "mean_per_class_recall": 1.0 / len(classes)}
        row["classes"] = [str(c) for c in classes]
        row["classes_in_split"] = [str(c) for c in present]
        out[task] = row
    return out


def heldout_captions(dataset, seed: int = 0, templates: str = "heldout") -> list[str]:
    """One caption per geology of a decoded split, in the ``templates`` bank's phrasings."""
    from seisbind.data.captions import geology_captions
    from seisbind.training.data import LABEL_COLUMNS

    cols = [c for c in LABEL_COLUMNS if c in dataset.column_names]
    table = dataset.with_format(None).select_columns(cols + ["geology_id"])[:]
    return [geology_captions({c: table[c][i] for c in cols}, 1, seed, _CAPTION_SEED_STREAM, gid, templates)[0]
            for i, gid in enumerate(table["geology_id"])]


def text_retrieval(model, dataset, emb, seed: int = 0, batch_size: int = 64, templates: str = "heldout",
                   shared: np.ndarray | None = None) -> dict:
    """text -> image and text -> waveform retrieval with one caption per geology of the split; with
    ``shared`` (:func:`train_shared_directions`), text -> waveform through it as well."""
    captions = heldout_captions(dataset, seed, templates)
    with torch.no_grad():
        text = np.concatenate([model.encode_text(captions[i : i + batch_size]).float().cpu().numpy()
                               for i in range(0, len(captions), batch_size)])  # fmt: skip
    n = len(captions)
    to_image = retrieval_report(text @ emb.image.T, np.eye(n, dtype=bool))
    positives = np.arange(n)[:, None] == emb.waveform_geology[None, :]
    to_waveform = retrieval_report(text @ emb.waveform.T, positives)
    out = {"text_to_image": to_image, "text_to_waveform": to_waveform, "examples": captions[:5]}
    if shared is not None:
        out["text_to_waveform_shared_directions"] = retrieval_report(
            l2_normalize(text) @ shared @ l2_normalize(emb.waveform).T, positives)
    return out


def markdown(text_results: dict) -> str:
    """The zero-shot and text-retrieval tables."""
    lines = ["| zero-shot (acc1 / mean per-class recall) | " + " | ".join(text_results["zero_shot"]) + " |",
             "|---" * (len(text_results["zero_shot"]) + 1) + "|"]  # fmt: skip
    methods = []
    for row in text_results["zero_shot"].values():
        methods += [m for m in row if m not in methods and isinstance(row[m], dict)]
    for m in methods:
        cells = []
        for row in text_results["zero_shot"].values():
            r = row.get(m)
            cells.append(f"{r['acc1']:.3f} / {r['mean_per_class_recall']:.3f}" if r else "n/a")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| text query (one caption per test geology) | R@1 | R@5 | R@10 | median rank | gallery | "
              "~chance R@10 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, key in (("training phrasings", "retrieval"), ("held-out phrasings", "retrieval_heldout_phrasings")):
        if key not in text_results:
            continue
        for name, direction in (("text -> image", "text_to_image"), ("text -> waveform", "text_to_waveform"),
                                ("text -> waveform, shared directions", "text_to_waveform_shared_directions")):
            if direction not in text_results[key]:
                continue
            x = text_results[key][direction]
            chance = min(1.0, 10 * x["positives_per_query"] / x["gallery_size"])
            lines.append(f"| {name}, {label} | {x['recall@1']:.3f} | {x['recall@5']:.3f} | {x['recall@10']:.3f} | "
                         f"{x['median_rank']:.1f} | {x['gallery_size']} | {chance:.3f} |")
    return "\n".join(lines)
