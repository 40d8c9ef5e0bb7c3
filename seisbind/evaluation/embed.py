"""Embedding a stored split with a model's ``encode_<modality>`` (the only contract evaluation needs).

Each geology row gives one image and, per source, one waveform item (all its stations). Labels
come along: geology labels for both modalities, per-source labels (source depth, moment) for the
waveforms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

GEOLOGY_LABELS = ("family", "fault_present", "vs30", "depth_vs760_m", "n_layers")
SOURCE_LABELS = ("source_depth_m", "source_log10_moment")


@dataclass
class SplitEmbeddings:
    image: np.ndarray  # (geologies, dim)
    waveform: np.ndarray  # (geologies * sources, dim)
    waveform_geology: np.ndarray  # (geologies * sources,) row index of each waveform's image
    image_labels: dict[str, np.ndarray] = field(default_factory=dict)
    waveform_labels: dict[str, np.ndarray] = field(default_factory=dict)

    def positives(self) -> np.ndarray:
        """(waveforms, images) True where the waveform was recorded through that image's geology."""
        return self.waveform_geology[:, None] == np.arange(len(self.image))[None, :]

    def first_geologies(self, n: int) -> SplitEmbeddings:
        """The first ``n`` geologies (all of them when fewer): their images, their waveforms and labels."""
        if n < 1:
            raise ValueError(f"need at least one geology; got n={n}")
        n = min(n, len(self.image))
        keep = self.waveform_geology < n
        return SplitEmbeddings(
            image=self.image[:n],
            waveform=self.waveform[keep],
            waveform_geology=self.waveform_geology[keep],
            image_labels={k: v[:n] for k, v in self.image_labels.items()},
            waveform_labels={k: v[keep] for k, v in self.waveform_labels.items()},
        )


def iterate_items(dataset, batch_size: int):
    """Rows of a split in batches: (images (B,1,H,W), waveforms list of (S,K,C,T) in m/s, rows),
    ``rows`` holding the batch's ``station_x_m`` when the split has it. Read through
    :class:`~seisbind.data.dataset.StoredRows`, not the decoded view's per-row Python lists."""
    from seisbind.data.dataset import StoredRows

    stored = StoredRows(dataset, extra=("station_x_m",))
    for start in range(0, len(stored), batch_size):
        images, waves, rows = stored.get_with_extra(list(range(start, min(start + batch_size, len(stored)))))
        yield torch.from_numpy(images)[:, None], list(torch.from_numpy(waves)), rows


def item_positions(rows, sources_per_row: list[int]) -> torch.Tensor | None:
    """Station positions (items, stations) of a batch of decoded rows, one item per source, or None
    when the rows carry no ``station_x_m`` (the model then assumes a line of stations)."""
    if "station_x_m" not in rows:
        return None
    x = [torch.as_tensor(p, dtype=torch.float32) for p in rows["station_x_m"]]
    return torch.cat([p[None].expand(n, -1) for p, n in zip(x, sources_per_row, strict=True)])


def encode_records(model, items: torch.Tensor, positions: torch.Tensor | None, step: int) -> np.ndarray:
    """Embed records (items, stations, C, T) with their positions, ``step`` items at a time (each
    item is stations x time long sequences: a few at a time bound memory)."""
    step = max(1, step)
    return np.concatenate([
        model.encode_waveform(items[i : i + step], station_x_m=None if positions is None else positions[i : i + step])
        .float().numpy()
        for i in range(0, len(items), step)
    ])


def split_labels(dataset) -> tuple[dict, dict, np.ndarray]:
    """Geology labels per image, the same plus per-source labels per waveform, and the waveform->image map."""
    cols = [c for c in (*GEOLOGY_LABELS, *SOURCE_LABELS) if c in dataset.column_names]
    table = dataset.with_format(None).select_columns(cols + ["waveform_scale"])[:]
    n_sources = np.asarray(table["waveform_scale"][0]).shape[0] if len(dataset) else 0
    image_labels = {c: np.asarray(table[c]) for c in cols if c in GEOLOGY_LABELS}
    waveform_geology = np.repeat(np.arange(len(dataset)), n_sources)
    waveform_labels = {c: v[waveform_geology] for c, v in image_labels.items()}
    for c in cols:
        if c in SOURCE_LABELS:
            waveform_labels[c] = np.asarray(table[c], dtype=np.float64).reshape(-1)
    return image_labels, waveform_labels, waveform_geology


@torch.no_grad()
def embed_split(model, dataset, batch_size: int = 8, progress: bool = True, desc: str = "embedding") -> SplitEmbeddings:
    """Embed every image and every (geology, source) waveform of a decoded split."""
    rate = float(model.config.waveform.sampling_rate)
    if len(dataset) and float(dataset[0]["sampling_rate"]) != rate:
        raise ValueError(
            f"the data are sampled at {dataset[0]['sampling_rate']} Hz but the model expects {rate} Hz; "
            "resample the waveforms or use a model built for that rate"
        )
    model.eval()
    images, waves = [], []
    for image_batch, wave_batch, rows in tqdm(
        iterate_items(dataset, batch_size), total=-(-len(dataset) // batch_size), desc=desc, disable=not progress
    ):
        images.append(model.encode_image(image_batch).float().numpy())
        items = torch.cat(list(wave_batch))  # (B * sources, stations, C, T)
        waves.append(encode_records(model, items, item_positions(rows, [len(w) for w in wave_batch]), batch_size // 2))
    image_labels, waveform_labels, waveform_geology = split_labels(dataset)
    return SplitEmbeddings(
        image=np.concatenate(images),
        waveform=np.concatenate(waves),
        waveform_geology=waveform_geology,
        image_labels=image_labels,
        waveform_labels=waveform_labels,
    )
