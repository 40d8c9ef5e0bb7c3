"""Training pairs from a generated dataset: which rows, which source, which stations, which noise.

Everything random is a function of ``(seed, epoch, row)``, never of a process's or a worker's
random state, so the data a step sees depends only on the seed and the step number:

* :class:`GlobalBatchSampler` cuts a seeded permutation of the rows of each epoch into global
  batches (the tail that does not fill a batch is left for that epoch, so a geology appears at most
  once per batch, and one batch never spans two epochs) and hands each process its slice. Resuming
  at step ``s`` starts the sampler at batch ``s`` directly: nothing is replayed.
* :class:`PairDataset` turns a key ``(epoch, row)`` into a pair: the geology's image and one of its
  sources, seen at a random subset of its stations, augmented by :class:`WaveformAugment`.
* :func:`collate_pairs` pads the station axis and returns the ``station_mask`` the model reads.

One process with global batch ``B`` and two processes with ``B / 2`` each see the same pairs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seisbind.mirror import ZNE, mirror_records, mirrorable
from seisbind.training.augment import WaveformAugment, mirror_pair, stretch_record

# Streams of SeedSequence(seed, stream, ...): the sampler's permutations, the pairs' draws, each
# geology's caption pool, the other sources of a pair's views, and a pair's velocity factor.
_SAMPLER_STREAM, _PAIR_STREAM, _CAPTION_STREAM, _VIEW_STREAM, _VELOCITY_STREAM = 0, 1, 2, 3, 4
TRAIN_COLUMNS = ("image", "waveforms", "waveform_scale", "geology_id")
POSITIONS = "station_x_m"  # optional column: each station's position along the array (m)
# The label columns captions are made from (those a dataset has; see seisbind.data.captions).
LABEL_COLUMNS = ("family", "n_layers", "fault_present", "fault_kind", "fault_dip_deg", "fault_throw_m", "body_kind",
                 "heterogeneity_std", "vs30", "depth_vs760_m")  # fmt: skip


def load_rows(path: str | os.PathLike, split: str, labels: bool = False):
    """The ``split`` of a generated dataset with only the columns training reads, as NumPy arrays.

    Rows stay as stored (float16 images and per-trace-scaled waveforms); :func:`decode_image` and
    :func:`decode_record` turn the parts a pair uses into model inputs, as ``load_paired`` would,
    without decoding the sources and stations the pair does not use.
    """
    from seisbind.data.dataset import load_paired

    rows = load_paired(path, split, decode=False)
    missing = [c for c in TRAIN_COLUMNS if c not in rows.column_names]
    if missing:
        raise ValueError(f"{path} ({split}) lacks the column(s) {missing} that training needs; "
                         f"it has {rows.column_names}")
    extra = [c for c in ("sampling_rate", "channels", POSITIONS, *(LABEL_COLUMNS if labels else ()))
             if c in rows.column_names]
    return rows.select_columns([*TRAIN_COLUMNS, *extra]).with_format("numpy")


def decode_image(stored: np.ndarray) -> torch.Tensor:
    """A stored (H, W) section as the (1, H, W) float32 image ``load_paired`` returns, in its stored
    units (the image tower's preprocessor scales it, as its config says)."""
    return torch.as_tensor(np.asarray(stored, np.float32))[None]


def decode_record(row: dict, source: int | None = None, stations: np.ndarray | None = None) -> np.ndarray:
    """Waveforms of ``row`` in m/s (float32), as ``load_paired`` returns them: all sources
    (sources, stations, channels, time), or one ``source`` (stations, channels, time); optionally
    only ``stations``."""
    waveforms, scale = row["waveforms"], row["waveform_scale"]
    if source is not None:
        waveforms, scale = waveforms[source], scale[source]
    if stations is not None:
        waveforms, scale = waveforms[..., stations, :, :], scale[..., stations]
    return waveforms.astype(np.float32) * scale.astype(np.float32)[..., None, None]


def decode_positions(row: dict, stations: np.ndarray | None = None) -> np.ndarray | None:
    """The stations' positions along the array (m) of ``row``, optionally only ``stations``; None if
    the row has no ``station_x_m`` (the model then assumes a line at its ``station_spacing_m``)."""
    if row.get(POSITIONS) is None:
        return None
    x = np.asarray(row[POSITIONS], dtype=np.float32)
    return x if stations is None else x[stations]


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless per-process batches of ``(epoch, row)`` keys; see the module doc.

    ``global_batch_size`` rows form one global batch (one micro-batch of every process); process
    ``rank`` of ``world_size`` gets rows ``[rank * b, (rank + 1) * b)`` of it, ``b`` being
    ``global_batch_size / world_size``. ``start_batch`` is the global batch to begin with.
    """

    def __init__(self, num_rows: int, global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_batch: int = 0) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {world_size} processes")
        if num_rows < global_batch_size:
            raise ValueError(f"the split has {num_rows} rows (geologies), fewer than one global batch of "
                             f"{global_batch_size}; lower batch_size or generate more geologies")
        self.num_rows, self.global_batch_size, self.seed = num_rows, global_batch_size, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.local_batch_size = global_batch_size // world_size
        self.batches_per_epoch = num_rows // global_batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The rows of ``epoch`` in the order they are drawn."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _SAMPLER_STREAM, epoch]))
        return rng.permutation(self.num_rows)

    def global_batch(self, index: int) -> list[tuple[int, int]]:
        """The keys of global batch ``index`` (all processes)."""
        epoch, j = divmod(index, self.batches_per_epoch)
        order = self.epoch_order(epoch)[j * self.global_batch_size : (j + 1) * self.global_batch_size]
        return [(epoch, int(r)) for r in order]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        index, epoch, order = self.start_batch, None, None
        b = self.local_batch_size
        while True:
            e, j = divmod(index, self.batches_per_epoch)
            if e != epoch:
                epoch, order = e, self.epoch_order(e)
            start = j * self.global_batch_size + self.rank * b
            yield [(epoch, int(r)) for r in order[start : start + b]]
            index += 1


class PairDataset(Dataset):
    """(image, waveform record) pairs keyed by ``(epoch, row)``; see the module doc.

    ``rows`` is a decoded split (``load_rows``). Each key draws, from ``SeedSequence(seed, 1,
    epoch, row)``: a source of the geology, whether to drop stations (probability
    ``station_drop_prob``; then a subset of ``min_stations..max_stations`` of them is kept, all of
    them if it has fewer, in their order along the surface; otherwise the whole array), whether the
    pair is mirrored (probability ``mirror_prob``; ZNE or shot-gather records, see ``mirror_pair``) and the waveform
    augmentation (``augment``, or none). The stations keep their positions (``station_x_m``).

    With ``captions_per_geology`` = n > 0 each pair also carries a caption (``text``), one of a pool
    of n captions of its geology made from its labels (``rows`` loaded with ``labels=True``) by
    :func:`seisbind.data.captions.make_captions`; the pool is a function of ``(seed, geology)``
    only, so n = 1 is one fixed caption per geology and n = 16 sixteen phrasings of it. With a
    ``tokenizer`` the caption comes as its token row (each pool tokenized once, where items are built).

    With ``sources_per_pair`` = V > 1 each pair also carries ``waveform_views``: the records of V - 1
    other sources of the geology (drawn from ``SeedSequence(seed, 3, epoch, row)``, so the first
    view is the pair of ``sources_per_pair`` = 1), at the same stations and mirrored with the
    image, each with its own augmentation draw. The loss binds every view to the image and the
    views to each other (:class:`~seisbind.models.losses.ContrastiveLoss`).

    With ``velocity_scale`` = (low, high) other than (1, 1), every record of a pair (its views too)
    is the record of the same ground with its velocities times one factor, drawn log-uniformly from
    ``SeedSequence(seed, 4, epoch, row)``: compressed in time by it (:func:`stretch_record`); the
    image is unchanged.
    """

    def __init__(self, rows, seed: int, min_stations: int, max_stations: int,
                 augment: WaveformAugment | None = None, mirror_prob: float = 0.0,
                 station_drop_prob: float = 1.0, captions_per_geology: int = 0, tokenizer=None,
                 sources_per_pair: int = 1, velocity_scale: tuple[float, float] = (1.0, 1.0)) -> None:
        self.rows, self.seed, self.augment = rows, seed, augment
        low, high = (float(v) for v in velocity_scale)
        if not 0 < low <= high:
            raise ValueError(f"velocity_scale must be [low, high] with 0 < low <= high; got {velocity_scale!r}")
        self.velocity_scale = (low, high)
        self.sources_per_pair = int(sources_per_pair)
        if self.sources_per_pair < 1:
            raise ValueError(f"sources_per_pair must be >= 1; got {sources_per_pair!r}")
        if self.sources_per_pair > 1 and len(rows):
            n_sources = int(np.asarray(rows[0]["waveform_scale"]).shape[0])
            if n_sources < self.sources_per_pair:
                raise ValueError(f"sources_per_pair={self.sources_per_pair} needs that many sources per geology; "
                                 f"these rows hold {n_sources}: set sources_per_pair <= {n_sources} or generate "
                                 f"with --sources-per-geology {self.sources_per_pair}")
        self.captions_per_geology = int(captions_per_geology)
        self.tokenizer = tokenizer  # strings -> (n, context) token rows
        self._caption_pools: dict[int, list[str]] = {}  # row index -> captions
        self._token_pools: dict[int, torch.Tensor] = {}
        # Items read only the columns they use each time; the labels are read once per geology, for
        # its caption pool (formatting ten more columns doubled a batch's read).
        self._item_rows = rows.select_columns([c for c in rows.column_names if c not in LABEL_COLUMNS])
        self.min_stations, self.max_stations = min_stations, max_stations
        self.mirror_prob = float(mirror_prob)
        self.station_drop_prob = float(station_drop_prob)
        from seisbind.data.dataset import record_channels

        # The channels the mirror flips, None when it is off.
        self.mirror_channels = record_channels(rows, ZNE) if self.mirror_prob > 0 and len(rows) else None
        if self.mirror_channels is not None and not mirrorable(self.mirror_channels):
            raise ValueError(f"mirroring needs ZNE records (2-D P-SV) or one channel a shot; these rows hold "
                             f"channels {self.mirror_channels!r}: set mirror_prob=0")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return self._item(key, self._item_rows[int(key[1])])

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[dict]:
        """The pairs of a whole batch from one read of their rows (the DataLoader calls this).

        ``datasets`` formats a row read in about 7 ms whatever its size, so 32 single-row reads
        cost more than half a training step of the quickstart towers on one core; one read of
        the batch's rows costs a few ms. Same items as :meth:`__getitem__`, key by key."""
        indices = sorted({int(index) for _, index in keys})
        batch = self._item_rows[indices]
        where = {index: i for i, index in enumerate(indices)}
        return [self._item(key, {c: v[where[int(key[1])]] for c, v in batch.items()}) for key in keys]

    def _item(self, key: tuple[int, int], row: dict) -> dict:
        epoch, index = key
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _PAIR_STREAM, int(epoch), int(index)]))
        n_sources, n_stations = row["waveforms"].shape[:2]  # (sources, stations, channels, time)
        source = int(rng.integers(n_sources))
        low, high = min(self.min_stations, n_stations), min(self.max_stations, n_stations)
        count = int(rng.integers(low, high + 1))
        subset = np.sort(rng.choice(n_stations, size=count, replace=False))
        drop = bool(rng.random() < self.station_drop_prob)
        stations = subset if drop else np.arange(n_stations)
        mirror = bool(rng.random() < self.mirror_prob)
        image = decode_image(row["image"]).numpy()
        record = decode_record(row, source, stations)
        positions = decode_positions(row, stations)
        records, view_rng = [], None
        if self.sources_per_pair > 1:  # the other views' sources, and then their augmentations
            view_rng = np.random.default_rng(np.random.SeedSequence([self.seed, _VIEW_STREAM, int(epoch), int(index)]))
            others = [s for s in range(n_sources) if s != source]
            records = [decode_record(row, others[i], stations)
                       for i in view_rng.permutation(len(others))[: self.sources_per_pair - 1]]  # fmt: skip
        if self.velocity_scale != (1.0, 1.0):
            # One factor for every record of the pair: they are of one ground. Its own stream, so the
            # draws above stay what they are with the option off.
            low, high = self.velocity_scale
            factor = float(np.exp(np.random.default_rng(np.random.SeedSequence(
                [self.seed, _VELOCITY_STREAM, int(epoch), int(index)])).uniform(np.log(low), np.log(high))))
            record, records = stretch_record(record, factor), [stretch_record(r, factor) for r in records]
        if mirror:
            # Stations reversed onto the same (symmetric) positions: see mirror_pair.
            records = [mirror_records(r, self.mirror_channels) for r in records]
            image, record = mirror_pair(image, record, self.mirror_channels)
        if self.augment is not None:
            record = self.augment(record, rng)
            records = [self.augment(r, view_rng) for r in records]
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "waveforms": torch.from_numpy(np.ascontiguousarray(record)),
            "geology_id": int(row["geology_id"]),
        }
        if records:
            item["waveform_views"] = torch.from_numpy(np.ascontiguousarray(np.stack(records)))
        if positions is not None:
            item[POSITIONS] = torch.from_numpy(np.ascontiguousarray(positions))
        if self.captions_per_geology:
            # make_captions gives exactly captions_per_geology captions
            choice, index = int(rng.integers(self.captions_per_geology)), int(index)
            item["text"] = self._caption_tokens(index)[choice] if self.tokenizer is not None else self.caption_pool(index)[choice]
        return item

    def caption_pool(self, index: int) -> list[str]:
        """The captions the pairs of row ``index`` draw from (made once per geology and kept)."""
        from seisbind.data.captions import geology_captions

        if index not in self._caption_pools:
            row = self.rows[int(index)]
            labels = {k: _scalar(row[k]) for k in LABEL_COLUMNS if k in row}
            if "family" not in labels:
                raise ValueError("captions need the rows' labels: load them with load_rows(..., labels=True)")
            self._caption_pools[index] = geology_captions(labels, self.captions_per_geology, self.seed,
                                                          _CAPTION_STREAM, row["geology_id"])  # fmt: skip
        return self._caption_pools[index]

    def _caption_tokens(self, index: int) -> torch.Tensor:
        """The token rows of :meth:`caption_pool`, tokenized once per geology and kept."""
        if index not in self._token_pools:
            self._token_pools[index] = self.tokenizer(self.caption_pool(index))
        return self._token_pools[index]


def _scalar(value):
    """A stored label as a plain Python value (NumPy-formatted rows give 0-d arrays and numpy scalars)."""
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def collate_pairs(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Stack pairs into a batch: images (B, C, H, W), waveforms (B, max stations, channels, T) zero-padded,
    ``station_mask`` (B, max stations) True where a station is real, ``geology_id`` (B,), and
    ``station_x_m`` (B, max stations) when every item has positions.

    Items with ``waveform_views`` (V - 1 more records each) give V * B waveforms, view-major (row
    ``v * B + i`` is view ``v`` of item ``i``), with ``station_mask`` and ``station_x_m`` repeated
    for every view: the layout :class:`~seisbind.models.losses.ContrastiveLoss` reads as views."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    counts = {len(it.get("waveform_views", ())) for it in items}
    if len(counts) != 1:
        raise ValueError(f"items of one batch must have the same number of views; got {sorted(counts)}")
    # Every record of the batch, view-major: the items' own, then each further view of every item.
    records = [it["waveforms"] for it in items] + [it["waveform_views"][v] for v in range(counts.pop()) for it in items]
    shapes = {tuple(r.shape[1:]) for r in records}
    if len(shapes) != 1:
        raise ValueError(f"records in one batch must share (channels, time); got {sorted(shapes)}")
    (channels, samples), = shapes
    k = max(r.shape[0] for r in records)
    # Only the padding is zeroed: zeroing the whole batch first (45 MB for 32 OpenFWI records) is a
    # pass over memory that the copies overwrite anyway.
    waveforms = torch.empty(len(records), k, channels, samples)
    mask = torch.zeros(len(records), k, dtype=torch.bool)
    for i, r in enumerate(records):
        n = r.shape[0]
        waveforms[i, :n] = r
        waveforms[i, n:] = 0.0
        mask[i, :n] = True
    batch = {
        "images": torch.stack([it["image"] for it in items]),
        "waveforms": waveforms,
        "station_mask": mask,
        "geology_id": torch.tensor([it["geology_id"] for it in items]),
    }
    if all("text" in it for it in items):
        texts = [it["text"] for it in items]
        batch["texts"] = torch.stack(texts) if all(isinstance(t, torch.Tensor) for t in texts) else texts
    if all(POSITIONS in it for it in items):
        positions = torch.zeros(len(records), k)
        for i in range(len(records)):  # a view is at its item's stations
            x = items[i % len(items)][POSITIONS]
            positions[i, : len(x)] = x
        batch[POSITIONS] = positions
    return batch


def _worker_init(_: int) -> None:
    # Worker processes share the cores with the training process: one thread each.
    torch.set_num_threads(1)


def make_loader(dataset: PairDataset, sampler: GlobalBatchSampler, num_workers: int,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``sampler``'s batches; workers only change where items are built, not which."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_pairs,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=2 if num_workers else None,
    )
