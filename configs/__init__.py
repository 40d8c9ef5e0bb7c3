"""The configs seisbind ships: installed as the package ``seisbind.configs`` (see pyproject.toml).

This folder is the repository's ``configs/`` and, in a wheel, ``seisbind/configs/``: the model
architectures (``models/*.json``), the data scenarios (``data/*.yaml``) and the training runs
(``*.yaml``). Code finds them with :func:`config_path`, through ``importlib.resources``, so an
editable install and a plain one read the same files.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import yaml


def config_path(*parts: str) -> Path:
    """The path of a shipped config file or folder, e.g. ``config_path("data", "quake.yaml")``."""
    # A wheel installs unzipped, so the resource is a file on disk and its path can be handed on.
    return Path(str(resources.files(__name__).joinpath(*parts)))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: ``4e3`` and ``1e-3`` are numbers, not
    the strings YAML 1.1 makes of them (a config that says ``width_m: 4e3`` means 4000 m)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def load_yaml(text):
    """A YAML document (text or an open file) read safely, with YAML 1.2 floats (see ``_Loader``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
