"""``torch.compile`` for the towers' training steps, where the machine can compile.

The tiny towers are many small operations (HF's convolution layers with a LayerNorm over channels,
reshapes between them, exact GELU, attention over short sequences): on one CPU thread their time
goes to memory passes and dispatch, not arithmetic, which is what Inductor's fusion removes. Each
tower's trunk and head is compiled in place (``nn.Module.compile``: the state-dict keys, and so
checkpoints and saved models, stay as they are); the preprocessors are not (their data-dependent
checks would break the graph). Validation runs them eagerly (:func:`eager`, inside
``seisbind.training.evaluate.evaluate_retrieval``): it is a different graph (no gradient, other
batch sizes) that would cost a second compilation for a few seconds of work.

Inductor needs a C++ compiler on a CPU; without one (or on any failure of a trial compilation)
:func:`compile_towers` says why and the run stays eager.
"""

from __future__ import annotations

import logging
import warnings

import torch


def compiler_problem() -> str | None:
    """None if a small function compiles and runs here; otherwise why not, in one line."""
    try:
        double = torch.compile(lambda x: x * 2.0 + 1.0)
        if not torch.equal(double(torch.ones(3)), torch.full((3,), 3.0)):
            return "a trial compilation gave a wrong result"
    except Exception as err:  # Inductor's compiler, toolchain and backend errors
        text = str(err).strip().splitlines()
        return f"{type(err).__name__}: {text[0] if text else ''}"
    return None


def compile_towers(model) -> str | None:
    """Compile every tower's trunk and head of ``model`` in place; returns why not, or None if done."""
    # transformers' FSDP check is an lru_cache'd function that dynamo traces through, and the towers'
    # data-dependent fast paths (all stations present?) break the graph in two: both harmless, and
    # each a screenful of warnings a run would otherwise print.
    warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools.lru_cache`-wrapped")
    for name in ("torch._dynamo", "torch.utils.cpp_extension"):
        logging.getLogger(name).setLevel(logging.ERROR)
    problem = compiler_problem()
    if problem is not None:
        return problem
    for modality in model.trunks:
        model.trunks[modality].compile()
        model.heads[modality].compile()
    return None


def eager():
    """A context in which compiled modules run their eager code (and compile nothing)."""
    return torch.compiler.set_stance("force_eager")  # torch >= 2.6, as pyproject.toml requires
