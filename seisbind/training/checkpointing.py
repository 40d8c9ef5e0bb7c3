"""Training checkpoints that a crash cannot leave half-written, and that are checked before use.

Layout under ``<output_dir>/checkpoints/``::

    step-00000200/        accelerate's save_state (model.safetensors, optimizer.bin, scheduler.bin,
                          random_states_<rank>.pkl, scaler.pt with fp16) + trainer_state.json
                          + manifest.json (every file's size and SHA-256, written last)
    .tmp-step-00000400/   a save in progress; renamed to step-00000400 once complete

A save writes into the ``.tmp-`` folder, syncs every file, writes the manifest, syncs it, then
renames the folder into place and syncs the parent: a SIGKILL or power cut at any point leaves
either the finished folder or a ``.tmp-`` folder that is never read. :func:`verify_checkpoint`
checks a folder against its manifest before anything in it is loaded (accelerate's load_state
unpickles the optimizer and RNG files, so it is only pointed at folders this code wrote and
verified); :func:`find_resumable` walks back from the newest folder to the newest good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
TRAINER_STATE_NAME = "trainer_state.json"
MANIFEST_FORMAT = 1
# What a checkpoint must hold besides the manifest (accelerate's names for one model/optimizer/scheduler).
REQUIRED_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", TRAINER_STATE_NAME)
_STEP_DIR = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, partial or corrupted; the message says which and why."""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a synced temporary file and a rename."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_manifest(folder: Path, step: int) -> dict:
    """Sync every file of ``folder`` and record its size and SHA-256 in ``manifest.json`` (written last)."""
    entries = {}
    for path in _files(folder):
        _fsync_file(path)
        entries[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"format": MANIFEST_FORMAT, "step": int(step), "files": entries}
    write_json_atomic(folder / MANIFEST_NAME, manifest)
    return manifest


def publish_dir(tmp_folder: Path, final_folder: Path) -> Path:
    """Rename a finished ``tmp_folder`` to ``final_folder``, replacing an older folder of that name."""
    fsync_dir(tmp_folder)
    if final_folder.exists():
        stale = final_folder.with_name(f"{TMP_PREFIX}stale-{final_folder.name}")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final_folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp_folder, final_folder)
    fsync_dir(final_folder.parent)
    return final_folder


def finalize(tmp_folder: Path, final_folder: Path, step: int) -> Path:
    """Manifest ``tmp_folder`` and publish it as ``final_folder``."""
    write_manifest(tmp_folder, step)
    return publish_dir(tmp_folder, final_folder)


def save_model_atomic(model, folder: str | os.PathLike, info: dict | None = None,
                      card_info: dict | None = None) -> Path:
    """``model.save_pretrained`` into ``folder`` through a temporary folder and a rename; ``info``
    (step, metrics) goes beside it as ``training.json``, and its validation metrics into the model
    card's evaluation table unless ``card_info`` (``save_pretrained``'s: training data and config,
    evaluation) gives one."""
    folder = Path(folder)
    tmp = folder.with_name(f"{TMP_PREFIX}{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    card_info = dict(card_info or {})
    if info is not None and info.get("metrics") and "evaluation" not in card_info:
        card_info["evaluation"] = info["metrics"]
        card_info.setdefault("evaluation_note", f"Validation split, measured during training at step {info.get('step')}.")
    model.save_pretrained(tmp, card_info=card_info)
    if info is not None:
        (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    for path in _files(tmp):
        _fsync_file(path)
    return publish_dir(tmp, folder)


def verify_checkpoint(folder: str | os.PathLike) -> dict:
    """The manifest of ``folder`` if every file it lists is present, whole and unchanged.

    Raises :class:`CheckpointError` saying what is wrong: no folder, no or unreadable manifest
    (a partial save), a missing required file, a file of the wrong size or hash (corrupted).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {folder} is partial: it has no {MANIFEST_NAME} (the save did not finish)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unexpected layout")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {folder} is corrupted: {MANIFEST_NAME} is unreadable ({err})") from None
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise CheckpointError(f"checkpoint {folder} is incomplete: its manifest lacks {missing}")
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} is corrupted: {name} is missing")
        size = path.stat().st_size
        if size != entry.get("size"):
            raise CheckpointError(f"checkpoint {folder} is corrupted: {name} has {size} bytes, "
                                  f"the manifest says {entry.get('size')}")
        if sha256_file(path) != entry.get("sha256"):
            raise CheckpointError(f"checkpoint {folder} is corrupted: {name} does not match its SHA-256 "
                                  "in the manifest")
    return manifest


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every finished-looking checkpoint folder under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_resumable(root: str | os.PathLike, warn: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint under ``root`` that verifies, warning about each newer one that does not.

    ``None`` when ``root`` holds no checkpoint folder at all; :class:`CheckpointError` when it holds
    some but none verifies.
    """
    found = list_checkpoints(root)
    if not found:
        return None
    problems = []
    for _, folder in reversed(found):
        try:
            verify_checkpoint(folder)
        except CheckpointError as err:
            problems.append(str(err))
            warn(f"{err}; falling back to the previous checkpoint")
            continue
        return folder
    raise CheckpointError(f"no usable checkpoint in {root}: " + "; ".join(problems))


def read_trainer_state(folder: Path) -> dict:
    """The trainer state (step, best metric, ...) of a verified checkpoint; its step must be the
    one the folder is named for (a forged or misplaced state is refused)."""
    folder = Path(folder)
    try:
        state = json.loads((folder / TRAINER_STATE_NAME).read_text())
        step = state["step"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {folder}: {TRAINER_STATE_NAME} is unreadable ({err})") from None
    named = _STEP_DIR.match(folder.name)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or (named and int(named.group(1)) != step):
        raise CheckpointError(f"checkpoint {folder}: {TRAINER_STATE_NAME} says step {step!r}, but the folder is "
                              f"{folder.name}; the checkpoint was tampered with or moved")
    return state


def clean_partial(root: str | os.PathLike) -> list[Path]:
    """Remove ``.tmp-`` folders that killed saves left behind; return them."""
    root = Path(root)
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(TMP_PREFIX) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def prune(root: str | os.PathLike, keep_last: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoint folders (never ``protect``); return the deleted."""
    found = list_checkpoints(root)
    doomed = [folder for _, folder in found[: max(0, len(found) - keep_last)] if folder != protect]
    for folder in doomed:
        # Rename first so a kill during the delete leaves a .tmp- folder, never a half-deleted step-.
        trash = folder.with_name(f"{TMP_PREFIX}deleting-{folder.name}")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed
