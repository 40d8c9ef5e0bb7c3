"""Loading a model for embedding, and embedding items in batches.

``--model`` names either a folder written by ``SeisBindModel.save_pretrained`` (trained weights)
or an architecture the factory knows (``tiny``, ``sfm-seislm-base``, ...), which is built with
random weights and a warning: useful to test a pipeline, not to search.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from seisbind.modalities import ModalityType
from seisbind.paths import require_folder


def config_json(model) -> str:
    """The model's config as canonical JSON (sorted keys, no spaces): what the config hash covers."""
    return json.dumps(model.config.to_dict(), sort_keys=True, separators=(",", ":"))


def config_sha256(model) -> str:
    """sha256 of :func:`config_json`: equal for models that embed into the same architecture."""
    return hashlib.sha256(config_json(model).encode()).hexdigest()


def weights_sha256(model) -> str:
    """sha256 of the model's weights (every state-dict tensor: name, dtype, shape, bytes, in key
    order): what tells two models of one config apart, such as two random inits or a run's
    best-model and final-model. The same for a model and its save_pretrained/from_pretrained copy."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(spec: str | os.PathLike, device: str = "cpu"):
    """``(model in eval mode, info dict)`` from a save_pretrained folder, a Hub repo id (read from
    the Hugging Face cache only: nothing is downloaded) or an architecture name (random weights)."""
    from seisbind.models.factory import list_models
    from seisbind.models.joint import SeisBindModel, is_hub_repo_id

    path = Path(spec).expanduser()
    if path.is_dir():
        model = SeisBindModel.from_pretrained(path, map_location=device)
        weights = "pretrained"
    else:
        from seisbind.models.factory import create_model

        names = list_models()
        if str(spec) not in names and not (path.suffix == ".json" and path.is_file()):
            if is_hub_repo_id(str(spec)) and not path.exists():
                # owner/name: a Hub repo, read from the Hugging Face cache only. The commands never
                # download (a mistyped relative path looks like a repo id too); fetch it once with
                # `huggingface-cli download owner/name` or SeisBindModel.from_pretrained online.
                model = SeisBindModel.from_pretrained(str(spec), map_location=device, local_files_only=True)
                return _loaded(model, spec, "pretrained")
            require_folder(path, "a model folder written by save_pretrained (config.json + model.safetensors), "
                                 f"a Hub repo id (owner/name) or an architecture name ({', '.join(names)})")
        model = create_model(str(spec)).to(device)
        weights = "random"
        warnings.warn(
            f"model {str(spec)!r} is an architecture name: its weights are random, so the embeddings only "
            "test the pipeline. Pass a folder written by save_pretrained for a trained model.",
            UserWarning,
            stacklevel=2,
        )
    return _loaded(model, spec, weights)


def _loaded(model, spec, weights: str):
    """``(model in eval mode, info)``: what ``load_model`` returns."""
    model.eval()
    info = {
        "model": str(spec),
        "weights": weights,
        "weights_sha256": weights_sha256(model),
        "config_json": config_json(model),
        "config_sha256": config_sha256(model),
        "embed_dim": model.config.embed_dim,
    }
    return model, info


class BatchEncoder:
    """Embeds items in batches under ``torch.no_grad`` and hands the rows to an ``EmbeddingWriter``.

    Items are grouped by shape (images by (H, W), waveforms by length); waveform items with
    different station counts share a batch, padded and masked out with ``station_mask``.
    """

    def __init__(self, model, modality: str, writer, batch_size: int = 32, device: str = "cpu") -> None:
        if modality not in (ModalityType.IMAGE, ModalityType.WAVEFORM):
            raise ValueError(f"modality must be {ModalityType.IMAGE!r} or {ModalityType.WAVEFORM!r}, got {modality!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.modality = modality
        self.writer = writer
        self.batch_size = batch_size
        self.device = device
        self.count = 0
        self._buckets: dict[Any, list[tuple[np.ndarray, str, dict, np.ndarray | None]]] = defaultdict(list)

    def add(self, array: np.ndarray, item_id: str, meta: dict, station_x_m: np.ndarray | None = None) -> None:
        """Queue one item: an image (H, W), or waveforms (stations, 3, T) with, optionally, the
        stations' positions along the array in metres (None: on a line in the order given)."""
        if self.modality == ModalityType.IMAGE:
            key = array.shape
        else:
            key = (array.shape[-1], station_x_m is not None)  # items with and without positions batch apart
        bucket = self._buckets[key]
        bucket.append((array, item_id, meta, station_x_m))
        if len(bucket) >= self.batch_size:
            self._encode(self._buckets.pop(key))

    def _encode(self, items: list[tuple[np.ndarray, str, dict, np.ndarray | None]]) -> None:
        import torch

        with torch.no_grad():
            if self.modality == ModalityType.IMAGE:
                x = torch.from_numpy(np.stack([a for a, *_ in items]).astype(np.float32)[:, None]).to(self.device)
                emb = self.model.encode_image(x)
            else:
                stations = max(a.shape[0] for a, *_ in items)
                channels, length = items[0][0].shape[1:]
                x = np.zeros((len(items), stations, channels, length), np.float32)
                mask = np.zeros((len(items), stations), bool)
                positions = None if items[0][3] is None else np.zeros((len(items), stations), np.float32)
                for i, (a, _, _, pos) in enumerate(items):
                    x[i, : a.shape[0]] = a
                    mask[i, : a.shape[0]] = True
                    if positions is not None:
                        positions[i, : a.shape[0]] = pos
                emb = self.model.encode_waveform(
                    torch.from_numpy(x).to(self.device), station_mask=torch.from_numpy(mask).to(self.device),
                    station_x_m=None if positions is None else torch.from_numpy(positions).to(self.device),
                )
        self.writer.add([i for _, i, _, _ in items], [m for _, _, m, _ in items], emb.float().cpu().numpy())
        self.count += len(items)

    def close(self) -> None:
        """Embed what is still queued."""
        for key in sorted(self._buckets, key=str):
            self._encode(self._buckets.pop(key))
