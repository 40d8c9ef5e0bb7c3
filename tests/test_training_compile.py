"""torch.compile of the towers for training: same numbers as eager, same checkpoint keys, and an
eager run (with a note) where the machine cannot compile."""

from __future__ import annotations

import copy

import pytest
import torch

from seisbind.models import ContrastiveLoss, create_model
from seisbind.training import compiling, train
from seisbind.training.compiling import compile_towers, compiler_problem, eager
from tests.test_training import tiny_config, tiny_data  # noqa: F401 (a fixture)


def _batch(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    return {
        "image": torch.randn(4, 1, c.image.img_size, c.image.img_size, generator=g),
        "waveform": torch.randn(4, 3, 3, 400, generator=g),
        "station_mask": torch.ones(4, 3, dtype=torch.bool),
    }


def _grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = ContrastiveLoss()(model(batch))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compiled_towers_give_the_eager_loss_gradients_and_keys():
    problem = compiler_problem()
    if problem is not None:
        pytest.skip(f"this machine cannot compile: {problem}")
    torch.manual_seed(0)
    plain = create_model("tiny", image={"img_size": 32}).train()
    compiled = copy.deepcopy(plain)
    assert compile_towers(compiled) is None
    assert compiled.trunks["waveform"]._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(plain.state_dict())  # checkpoints load either way
    batch = _batch(plain)
    loss, grads = _grads(plain, batch)
    closs, cgrads = _grads(compiled, batch)
    assert closs.item() == pytest.approx(loss.item(), abs=1e-5)
    assert grads.keys() == cgrads.keys()
    for name in grads:
        assert torch.allclose(cgrads[name], grads[name], rtol=1e-3, atol=1e-5), name
    with torch.no_grad(), eager():  # validation and embedding run the same modules eagerly
        other = _batch(plain, seed=1)
        assert torch.allclose(compiled.encode_image(other["image"]), plain.encode_image(other["image"]), atol=1e-5)


def test_a_machine_that_cannot_compile_trains_eagerly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    monkeypatch.setattr(compiling.torch, "compile", broken)
    model = create_model("tiny", image={"img_size": 32})
    assert compile_towers(model) == "RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    assert all(m._compiled_call_impl is None for m in [*model.trunks.values(), *model.heads.values()])


def test_training_with_compile_on_a_machine_that_cannot_says_so_and_trains(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(compiling.torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no compiler")))
    result = train(tiny_config(tiny_data, tmp_path / "run", compile=True, max_steps=2, eval_every=0, save_every=0))
    assert "cannot compile (RuntimeError: no compiler); training eagerly" in capsys.readouterr().out
    assert result.step == 2 and (tmp_path / "run" / "final-model" / "model.safetensors").exists()


def test_validation_of_a_compiled_model_compiles_nothing(tiny_data):
    problem = compiler_problem()
    if problem is not None:
        pytest.skip(f"this machine cannot compile: {problem}")
    from accelerate import Accelerator
    from torch._dynamo.utils import counters

    from seisbind.training.data import load_rows
    from seisbind.training.evaluate import evaluate_retrieval

    model = create_model("tiny", image={"img_size": 32})
    assert compile_towers(model) is None
    before = dict(counters["stats"])
    metrics = evaluate_retrieval(model, load_rows(tiny_data, "validation"), Accelerator(cpu=True), batch_size=2)
    assert metrics["gallery_size"] == 2
    assert dict(counters["stats"]) == before  # no frame was traced: the towers ran eagerly
