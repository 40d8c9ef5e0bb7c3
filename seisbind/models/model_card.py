"""The model card (``README.md``) that ``save_pretrained`` writes beside ``config.json`` and
``model.safetensors``: what a saved model is, what it was trained on, how it scored, which weights.

A Hugging Face model card: YAML front matter from :class:`huggingface_hub.ModelCardData`
(``library_name: seisbind``, the license, tags) and Markdown sections

* **Architecture**: both towers' kinds, widths, depths, patch and image size, ``sampling_rate``,
  ``component_order``, ``embed_dim`` and the parameters of each tower;
* **Training data** and **Training config**: what the caller passed (a dict, rendered as JSON),
  else "not recorded";
* **Evaluation**: a dict of metric name -> value (nested dicts flattened to ``a/b``) or a list of
  row dicts, as a Markdown table, else "not evaluated"; :func:`update_model_card` rewrites only
  this section of an existing card (``seisbind evaluate`` does, after writing its results);
* **Weights**: ``seisbind.io.encode.weights_sha256`` and ``config_sha256`` of the saved model.

The card holds nothing that changes between two saves of the same weights (no date, no host), so
a resumed training run writes the same card as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from seisbind.modalities import ModalityType

CARD_NAME = "README.md"
LIBRARY_NAME = "seisbind"
# pyproject's license (Apache-2.0) as the Hub's license identifier; tests/test_models_hub.py checks they agree.
LICENSE = "apache-2.0"
TAGS = ["seismology", "seismic", "contrastive-learning", "embeddings", "waveforms", "seismic-images"]
# The keyword arguments the card takes: save_pretrained(card_info={...}) and push_to_hub(model_card_kwargs={...}).
CARD_FIELDS = ("training_data", "training_config", "evaluation", "evaluation_note")
NOT_RECORDED = "not recorded"
NOT_EVALUATED = "not evaluated"
# The evaluation section sits between these markers, so update_model_card finds it whatever the
# metric names or a hand edit above it.
_EVAL_BEGIN = "<!-- seisbind:evaluation -->"
_EVAL_END = "<!-- /seisbind:evaluation -->"


def default_card_data() -> ModelCardData:
    """The front matter of a seisbind card (SeisBindModel adds the mixin's own tags)."""
    return ModelCardData(library_name=LIBRARY_NAME, license=LICENSE, tags=sorted(TAGS))


def tower_parameters(model) -> dict[str, int]:
    """Parameters of each tower (its preprocessor, trunk, head and postprocessor), by modality."""
    counts = {}
    for modality in model.modalities:
        modules = (model.preprocessors[modality], model.trunks[modality], model.heads[modality],
                   model.postprocessors[modality])
        counts[modality] = sum(p.numel() for m in modules for p in m.parameters())
    return counts


def build_model_card(
    model,
    *,
    card_data: ModelCardData | None = None,
    training_data: Any = None,
    training_config: Any = None,
    evaluation: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
    evaluation_note: str | None = None,
) -> ModelCard:
    """The card of ``model`` (a :class:`~seisbind.models.joint.SeisBindModel`).

    ``training_data``/``training_config``: a dict (or dataclass, or text) describing the data and
    the run; ``evaluation``: metric name -> value, or a list of rows (dicts, one column per key);
    ``evaluation_note``: one line saying what was evaluated (split, data). Absent ones read
    "not recorded" / "not evaluated".
    """
    from seisbind.io.encode import config_sha256, weights_sha256

    data = card_data if card_data is not None else default_card_data()
    config = model.config
    title = f"# seisbind {config.name}" + (f"\n\n{config.description}" if config.description else "")
    body = "\n\n".join([
        title,
        "A seisbind model: seismic section images and seismic waveforms embedded into one normalised "
        f"{config.embed_dim}-dimensional space, trained contrastively ({config.loss} loss).",
        "## Use\n\n```python\nfrom seisbind.models import SeisBindModel\n\n"
        'model = SeisBindModel.from_pretrained("owner/name")  # a Hub repo id, or this folder\n'
        "image_embedding = model.encode_image(section)  # (H, W) or (batch, in_chans, H, W)\n"
        "waveform_embedding = model.encode_waveform(waveforms)  # (batch, stations, channels, time)\n```",
        "## Architecture\n\n" + _architecture(model),
        "## Training data\n\n" + _block(training_data),
        "## Training config\n\n" + _block(training_config),
        render_evaluation(evaluation, evaluation_note),
        "## Weights\n\n"
        f"- weights sha256: `{weights_sha256(model)}`\n"
        f"- config sha256: `{config_sha256(model)}`\n\n"
        "The weights hash is `seisbind.io.encode.weights_sha256` (every state-dict tensor's name, dtype, shape "
        "and bytes): it is the same for this model and its `from_pretrained` copy. Files: `config.json`, "
        "`model.safetensors` (never a pickle).",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def render_evaluation(evaluation: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None,
                      note: str | None = None) -> str:
    """The evaluation section, markers included: a Markdown table, or "not evaluated"."""
    lines = ["## Evaluation", ""]
    if note:
        lines += [str(note), ""]
    if evaluation is None or (hasattr(evaluation, "__len__") and len(evaluation) == 0):
        lines.append(f"{NOT_EVALUATED}.")
    elif isinstance(evaluation, Mapping):
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in _flatten(evaluation)]
    elif isinstance(evaluation, Iterable) and not isinstance(evaluation, (str, bytes)):
        rows = [dict(_flatten(row)) if isinstance(row, Mapping) else None for row in evaluation]
        if any(row is None for row in rows):
            raise ValueError("evaluation rows must be dicts (column -> value)")
        columns = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["| " + " | ".join(_cell(c) for c in columns) + " |", "|---" * len(columns) + "|"]
        lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    else:
        raise ValueError(f"evaluation must be a dict of metric -> value or a list of row dicts; "
                         f"got {type(evaluation).__name__}")
    return "\n".join([_EVAL_BEGIN, *lines, _EVAL_END])


def update_model_card(model_dir: str | os.PathLike, evaluation: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                      note: str | None = None) -> Path:
    """Rewrite the evaluation section of ``model_dir/README.md`` (written by save_pretrained),
    keeping the rest of the card; a card without the section gets it appended. The file is
    replaced through a rename (in a Hub cache folder that replaces the link, not the cached blob).
    """
    path = Path(model_dir) / CARD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: update_model_card rewrites a card written by save_pretrained")
    card = ModelCard.load(path)
    section = render_evaluation(evaluation, note)
    text = card.text
    start, end = text.find(_EVAL_BEGIN), text.find(_EVAL_END)
    if 0 <= start < end:
        text = text[:start] + section + text[end + len(_EVAL_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card.text = text
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    card.save(tmp)
    os.replace(tmp, path)
    return path


def _architecture(model) -> str:
    config, image, wave = model.config, model.config.image, model.config.waveform
    params = tower_parameters(model)
    total = sum(p.numel() for p in model.parameters())
    height, width = image.img_hw
    rows = [
        ("kind", f"{image.arch} (ViT, {image.stem} stem)", f"{wave.arch} (Wav2Vec2 encoder)"),
        ("width", image.width, wave.hidden_size),
        ("depth", image.depth, wave.num_hidden_layers),
        ("attention heads", image.num_heads, wave.num_attention_heads),
        ("patch size", image.patch_size, "-"),
        ("image size", f"{height} x {width}" + (" (any, interpolated)" if image.dynamic_img_size else ""), "-"),
        ("input channels", image.in_chans, wave.in_chans),
        ("sampling_rate", "-", f"{float(wave.sampling_rate):g} Hz"),
        ("component_order", "-", model.component_order or "none (channels are not components)"),
        ("head", f"{image.pool} pool, projection",
         f"{wave.head} ({wave.array_pool} pool), projection" if wave.head == "array" else f"{wave.head}, projection"),
        ("embed_dim", config.embed_dim, config.embed_dim),
        ("parameters", f"{params[ModalityType.IMAGE]:,}", f"{params[ModalityType.WAVEFORM]:,}"),
    ]
    lines = ["| | image tower | waveform tower |", "|---|---|---|"]
    lines += [f"| {name} | {_cell(a)} | {_cell(b)} |" for name, a, b in rows]
    shared = total - sum(params.values())
    lines += ["", f"Parameters in all: {total:,}: the two towers' and {shared:,} shared (the temperature"
              + (" and the bias" if config.loss == "siglip" else "") + f" of the {config.loss} loss)."]
    return "\n".join(lines)


def _block(value: Any) -> str:
    """A dict (or dataclass) as a JSON block, text as is, nothing as "not recorded"."""
    if value is None or (isinstance(value, (Mapping, list, tuple, str)) and len(value) == 0):
        return f"{NOT_RECORDED}."
    if isinstance(value, str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return "```json\n" + json.dumps(value, indent=2, default=str) + "\n```"


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def _cell(value: Any) -> str:
    """One table cell: integers whole, other numbers to 4 significant digits, text escaped."""
    if isinstance(value, bool) or value is None:
        text = "" if value is None else str(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.0f}" if math.isfinite(value) and value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")
