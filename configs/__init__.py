"""The configs seisbind ships: installed as the package ``seisbind.configs`` (see pyproject.toml).

This folder is the repository's ``configs/`` and, in a wheel, ``seisbind/configs/``: the model
architectures (``models/*.json``), the data scenarios (``data/*.yaml``) and the training runs
(``*.yaml``). Code finds them with :func:`config_path`, through ``importlib.resources``, so an
editable install and a plain one read the same files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_path(*parts: str) -> Path:
    """The path of a shipped config file or folder, e.g. ``config_path("data", "quake.yaml")``."""
    # A wheel installs unzipped, so the resource is a file on disk and its path can be handed on.
    return Path(str(resources.files(__name__).joinpath(*parts)))
