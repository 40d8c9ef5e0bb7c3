"""Pictures of an evaluation: recall@k curves, a similarity heat map, a 2-D map of the joint space."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def recall_curves(curves: dict[str, np.ndarray], path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def similarity_heatmap(similarity: np.ndarray, waveform_geology: np.ndarray, path: Path, n_images: int = 24) -> Path:
    """Waveforms (rows, grouped by geology) against the first ``n_images`` images (columns)."""
    plt = _plt()
    n = min(n_images, similarity.shape[1])
    rows = np.flatnonzero(waveform_geology < n)
    fig, ax = plt.subplots(figsize=(6, 6))
    im = ax.imshow(similarity[np.ix_(rows, np.arange(n))], aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xlabel("image (geology)")
    ax.set_ylabel("waveform (grouped by geology)")
    ax.set_title("cosine similarity: true pairs lie on the block diagonal")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def joint_space_map(image: np.ndarray, waveform: np.ndarray, image_family, waveform_family, path: Path, seed: int = 0) -> Path:
    """t-SNE of image and waveform embeddings together, coloured by geology family."""
    from sklearn.manifold import TSNE

    plt = _plt()
    x = np.concatenate([image, waveform])
    xy = TSNE(n_components=2, perplexity=float(min(30, max(2, len(x) // 4))), random_state=seed, init="pca").fit_transform(x)
    fams = sorted(set(image_family) | set(waveform_family))
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(fams)}
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    n = len(image)
    for f in fams:
        mi = np.asarray(image_family) == f
        mw = np.asarray(waveform_family) == f
        ax.scatter(*xy[:n][mi].T, marker="s", s=36, color=colors[f], edgecolor="k", linewidth=0.5, label=f"{f} (image)")
        ax.scatter(*xy[n:][mw].T, marker="o", s=12, color=colors[f], alpha=0.6, label=f"{f} (waveform)")
    ax.set_title("joint space (t-SNE): squares images, dots waveforms")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
