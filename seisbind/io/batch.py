"""Batch jobs over many files: a bad file is reported and skipped, the rest is processed.

Every reader raises :class:`InputError` (a ``ValueError``) with a message that names the file and
the problem. :class:`BatchJob` catches it (and the ``OSError``/``RuntimeError`` that file libraries
raise), prints one line at once, keeps going, and lists every failure at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from typing import TextIO


class InputError(ValueError):
    """A file or record seisbind cannot use; the message names the file and the problem."""


_STDERR = object()  # "sys.stderr when printing", so redirected stderr (tests, notebooks) is honoured

# What a per-file failure looks like: our own errors, and what segyio, ObsPy, h5py and the OS raise
# for unreadable files. Programming errors (AttributeError, KeyError, ...) still stop the job.
RECOVERABLE = (ValueError, OSError, RuntimeError, EOFError)


@dataclasses.dataclass(frozen=True)
class Failure:
    """One item that could not be processed, and why."""

    item: str
    reason: str


class BatchJob:
    """Collects per-item failures so a batch job finishes the items it can.

    Use ``with job.guard(name): ...`` around the work for one item; a recoverable error inside is
    recorded (and printed to ``log``, standard error by default, at once) instead of stopping the job.
    """

    def __init__(self, what: str = "file", log: TextIO | None | object = _STDERR) -> None:
        self.what = what
        self.log = log
        self.failures: list[Failure] = []
        self.attempted = 0

    @contextlib.contextmanager
    def guard(self, item: str) -> Iterator[None]:
        self.attempted += 1
        try:
            yield
        except RECOVERABLE as err:
            self.fail(item, describe(err))

    def fail(self, item: str, reason: str) -> None:
        """Record a failure found without an exception (e.g. a manifest row that points nowhere)."""
        if reason.startswith(f"{item}: "):  # messages name their file already
            reason = reason[len(item) + 2 :]
        self.failures.append(Failure(item, reason))
        self._print(f"skipped {self.what} {item}: {reason}")

    def _print(self, text: str) -> None:
        log = sys.stderr if self.log is _STDERR else self.log
        if log is not None:
            print(text, file=log)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """The failures, one per line, under a count; empty when every item succeeded."""
        if not self.failures:
            return ""
        lines = [f"{len(self.failures)} of {self.attempted} {self.what}(s) failed:"]
        lines += [f"  {f.item}: {f.reason}" for f in self.failures]
        return "\n".join(lines)

    def finish(self) -> int:
        """Print the failure list (if any) and return the exit code: 0 if all succeeded, else 1."""
        if self.failures:
            self._print(self.summary())
        return 0 if self.ok else 1


def describe(err: BaseException) -> str:
    """An exception as one line: our own errors as they are, others with their type."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, InputError) else f"{type(err).__name__}: {text}"
