"""Build models by name from JSON architecture files, as open_clip does.

Each architecture is one file, ``configs/models/<name>.json`` (shipped as package data,
``seisbind.configs``). The factory looks for a name in: a path given directly
(``create_model("my/arch.json")``), the directory named by the environment variable
``SEISBIND_MODEL_CONFIGS``, and the shipped ``configs/models``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from seisbind.configs import config_path
from seisbind.modalities import ModalityType
from seisbind.models.config import SeisBindConfig, merge_overrides
from seisbind.models.joint import SeisBindModel

ENV_VAR = "SEISBIND_MODEL_CONFIGS"
_SHIPPED_CONFIGS = config_path("models")


def config_dirs() -> list[Path]:
    """The directories searched for ``<name>.json``, in order."""
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(_SHIPPED_CONFIGS)
    return dirs


def list_models() -> list[str]:
    """Names of the architectures found in the config directories, sorted."""
    names = set()
    for d in config_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.json"))
    return sorted(names)


def _find_config(name: str) -> Path:
    candidate = Path(name).expanduser()
    if candidate.suffix == ".json" and candidate.is_file():
        return candidate
    looked = []
    for d in config_dirs():
        path = d / f"{name}.json"
        looked.append(str(path))
        if path.is_file():
            return path
    raise ValueError(
        f"unknown model {name!r}: no architecture file found; looked in {looked}. "
        f"Available: {list_models() or 'none (is configs/models present? set ' + ENV_VAR + ')'}"
    )


def get_model_config(name: str) -> dict[str, Any]:
    """The architecture dict of ``name`` (a model name or a path to a JSON file)."""
    path = _find_config(name)
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(config).__name__}")
    config.setdefault("name", path.stem)
    return config


def model_config(name: str, **overrides: Any) -> SeisBindConfig:
    """The resolved config of architecture ``name`` with ``overrides`` (as :func:`create_model`
    takes them), without building the model."""
    return SeisBindConfig.from_dict(merge_overrides(get_model_config(name), overrides))


def create_model(
    name: str,
    *,
    image_checkpoint: str | os.PathLike | None = None,
    waveform_checkpoint: str | os.PathLike | None = None,
    **overrides: Any,
) -> SeisBindModel:
    """Build the architecture ``name``, optionally loading pretrained trunks from local files.

    ``overrides`` replace config entries; tower sections merge key by key, e.g.
    ``create_model("tiny", loss="siglip", image={"img_size": 128})``. ``image_checkpoint`` is an
    SFM MAE ``.pth``, ``waveform_checkpoint`` a SeisLM Lightning ``.ckpt``.
    """
    model = SeisBindModel(model_config(name, **overrides))
    if image_checkpoint is not None:
        model.load_tower_checkpoint(ModalityType.IMAGE, image_checkpoint)
    if waveform_checkpoint is not None:
        model.load_tower_checkpoint(ModalityType.WAVEFORM, waveform_checkpoint)
    return model
