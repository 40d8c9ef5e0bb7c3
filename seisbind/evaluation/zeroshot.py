"""Zero-shot classification of waveforms from image-side class prototypes (CLIP_benchmark style).

The prototypes come from labelled *images* only; waveforms are classified by their nearest
prototype, so no waveform label is ever used. :func:`bank_prototypes` makes prototypes with no
label at all: prompts label an unlabelled bank of embeddings, whose class means become the
prototypes.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_prototypes(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes and their prototypes: the mean of the normalised embeddings of each class, re-normalised."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    emb = l2_normalize(embeddings)
    protos = np.stack([emb[labels == c].mean(0) for c in classes])
    return classes, l2_normalize(protos)


def zero_shot_predict(queries: np.ndarray, classes: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """The class whose prototype has the highest cosine similarity with each query."""
    return classes[np.argmax(l2_normalize(queries) @ prototypes.T, axis=1)]


def bank_prototypes(bank: np.ndarray, classes: np.ndarray, prompt_prototypes: np.ndarray) -> np.ndarray:
    """Prototypes from an *unlabelled* bank, labelled by the prompts: each class's prototype is the
    re-normalised mean of the bank's embeddings nearest its prompt prototype (a class no embedding
    is nearest keeps its prompt prototype), in the order of ``classes``.

    Why: in an ImageBind space text reaches waveforms through images. A prompt's text embedding
    points where the captions of a class's *images* point, which is not where the part of those
    images that waveforms can see lies; the mean of the images the prompt picks out is. This is the
    name-only transfer of SuS-X (Udandarao et al., ICCV 2023), with the support set taken from
    images the model already has rather than retrieved or generated; one pass of the nearest-mean
    assignment, no label of any modality.
    """
    bank = l2_normalize(bank)
    prompt_prototypes = l2_normalize(prompt_prototypes)
    nearest = np.argmax(bank @ prompt_prototypes.T, axis=1)
    protos = prompt_prototypes.copy()
    for j in range(len(classes)):
        if np.any(nearest == j):
            protos[j] = bank[nearest == j].mean(0)
    return l2_normalize(protos)
