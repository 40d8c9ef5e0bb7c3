"""One override syntax for every command: ``--set KEY=VALUE`` (repeatable; the value is YAML).

``generate`` sets scenario config keys, ``train`` and ``quickstart`` train config keys (dotted keys
reach into mappings: ``--set model_overrides.image.img_size=32``), ``evaluate`` its options by
name. Training's older bare ``key=value`` positionals still work, with a deprecation note.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEPRECATED_BARE = ("note: bare key=value overrides are deprecated and will be removed; "
                   "write --set key=value")  # fmt: skip


def add_set_argument(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """The ``--set KEY=VALUE`` option, collected into ``args.set`` (a list of strings)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"set {what} (YAML value; repeat the option for more), e.g. --set {example}")  # fmt: skip


def split_override(item: str) -> tuple[str, str]:
    """``"key=value"`` as ``(key, value text)``; a one-line ValueError for anything else."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
    return key.strip(), text


def parse_overrides(items: list[str], allowed: set[str] | None = None, where: str = "--set") -> dict[str, Any]:
    """``{key: YAML value}`` of ``KEY=VALUE`` strings; with ``allowed``, other keys are refused."""
    import yaml

    from seisbind.configs import load_yaml

    out: dict[str, Any] = {}
    for item in items:
        key, text = split_override(item)
        if allowed is not None and key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}; choose one of {', '.join(sorted(allowed))}")
        try:
            out[key] = load_yaml(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ValueError(f"{where} {item!r}: the value is not valid YAML ({err})") from None
    return out


def warn_bare(items: list[str]) -> None:
    """Print the deprecation note once when old-style bare ``key=value`` overrides were given."""
    if items:
        print(DEPRECATED_BARE, file=sys.stderr)
