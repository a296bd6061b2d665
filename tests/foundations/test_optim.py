"""repmatch.optim's Adam, AdamW and SGD give torch.optim's parameters bit for bit, resume from a state_dict,
and never import torch._dynamo (the reason they exist).

Why bitwise: the training stage promises bitwise-identical weights for a seed (and after a resume), and
swapping the optimizer must not move any result. Each case runs both optimizers side by side on the
same parameters (several shapes, a 0-dim one, one float64 one, one that never gets a gradient) with the
same gradients and a learning rate that changes every step, and compares with ``torch.equal``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from repmatch import optim

SRC = Path(__file__).resolve().parents[2] / "src"
STEPS = 7
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
]

# (torch class, repmatch class, settings); foreach None is torch's default (single-tensor on the CPU, foreach on CUDA)
CASES = [
    *[(torch.optim.Adam, optim.Adam, {"lr": 1e-2, "weight_decay": wd, "foreach": fe}) for wd in (0.0, 1e-2) for fe in (None, False, True)],
    *[(torch.optim.AdamW, optim.AdamW, {"lr": 1e-2, "weight_decay": wd, "foreach": fe}) for wd in (0.0, 5e-2) for fe in (None, False, True)],
    *[(torch.optim.SGD, optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": nest, "weight_decay": wd, "foreach": fe})
      for nest in (True, False) for wd in (0.0, 5e-4) for fe in (None, False, True)],
    *[(torch.optim.SGD, optim.SGD, {"lr": 0.1, "weight_decay": wd, "foreach": fe}) for wd in (0.0, 5e-4) for fe in (False, True)],
]  # fmt: skip
IDS = [f"{t.__name__}-{'-'.join(f'{k}={v}' for k, v in s.items() if k != 'lr')}" for t, _, s in CASES]


def _params(device: str) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (4,), (), (5, 7)]
    ps = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    ps.append(torch.nn.Parameter(torch.randn(3, 2, generator=gen, dtype=torch.float64)))  # a second dtype group
    ps.append(torch.nn.Parameter(torch.randn(6, generator=gen)))  # never gets a gradient
    return [torch.nn.Parameter(p.detach().to(device)) for p in ps]


def _grads(step: int, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    gen = torch.Generator().manual_seed(100 + step)
    return [
        None if k == len(params) - 1 else torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
        for k, p in enumerate(params)
    ]


def _lr(base: float, step: int) -> float:
    return base * (0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / STEPS)).item()))


def _run(opt, params: list[torch.nn.Parameter], base_lr: float, steps: range) -> None:
    for step in steps:
        for group in opt.param_groups:
            group["lr"] = _lr(base_lr, step)
        opt.zero_grad(set_to_none=True)
        for p, g in zip(params, _grads(step, params)):
            p.grad = None if g is None else g.clone()
        opt.step()


def _clone(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _assert_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for k, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and torch.equal(x, y), f"parameter {k} differs: max |diff| {(x - y).abs().max().item()}"


def _assert_same_state(ours: dict, theirs: dict) -> None:
    assert ours["state"].keys() == theirs["state"].keys()
    for i, state in theirs["state"].items():
        assert ours["state"][i].keys() == state.keys(), i
        for key, value in state.items():
            assert torch.equal(ours["state"][i][key], value), (i, key)
            assert ours["state"][i][key].dtype == value.dtype and ours["state"][i][key].device == value.device, (i, key)


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("torch_cls", "ours_cls", "settings"), CASES, ids=IDS)
def test_bit_identical_to_torch(torch_cls, ours_cls, settings, device):
    start = _params(device)
    theirs, ours = _clone(start), _clone(start)
    torch_opt, our_opt = torch_cls(theirs, **settings), ours_cls(ours, **settings)
    _run(torch_opt, theirs, settings["lr"], range(STEPS))
    _run(our_opt, ours, settings["lr"], range(STEPS))
    _assert_equal(ours, theirs)
    assert torch.equal(ours[-1], start[-1]) and not our_opt.state_dict()["state"].get(len(ours) - 1)  # no gradient: untouched
    _assert_same_state(our_opt.state_dict(), torch_opt.state_dict())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("torch_cls", "ours_cls", "settings"), CASES, ids=IDS)
def test_resume_from_state_dict(torch_cls, ours_cls, settings, device):
    """Stop after k steps, save (torch.save round trip), load into a fresh optimizer over copies of the
    parameters, continue: the same parameters as an uninterrupted run. A torch.optim state loads as well."""
    start, k = _params(device), 3
    whole = _clone(start)
    _run(ours_cls(whole, **settings), whole, settings["lr"], range(STEPS))

    first = _clone(start)
    opt = ours_cls(first, **settings)
    _run(opt, first, settings["lr"], range(k))
    saved = _roundtrip(opt.state_dict())
    resumed = _clone(first)
    opt = ours_cls(resumed, **settings)
    opt.load_state_dict(saved)
    _run(opt, resumed, settings["lr"], range(k, STEPS))
    _assert_equal(resumed, whole)

    from_torch = _clone(start)
    torch_opt = torch_cls(from_torch, **settings)
    _run(torch_opt, from_torch, settings["lr"], range(k))
    opt = ours_cls(from_torch, **settings)
    opt.load_state_dict(_roundtrip(torch_opt.state_dict()))
    _run(opt, from_torch, settings["lr"], range(k, STEPS))
    _assert_equal(from_torch, whole)


def test_training_through_backward_matches_torch():
    """A real backward pass (gradients from autograd, zero_grad between steps) on a small network."""

    def net() -> torch.nn.Module:
        torch.manual_seed(3)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))

    x, y = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    for torch_cls, ours_cls, settings in [(torch.optim.Adam, optim.Adam, {"lr": 1e-2, "weight_decay": 1e-4}),
                                          (torch.optim.SGD, optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True})]:  # fmt: skip
        a, b = net(), net()
        opt_a, opt_b = torch_cls(a.parameters(), **settings), ours_cls(b.parameters(), **settings)
        for model, opt in ((a, opt_a), (b, opt_b)):
            for _ in range(5):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        _assert_equal(list(b.parameters()), list(a.parameters()))
        assert all(p.grad is not None for p in b.parameters())
        opt_b.zero_grad()
        assert all(p.grad is None for p in b.parameters())


def test_bad_settings_and_state_are_refused():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="invalid Adam"):
        optim.Adam([p], lr=-1.0)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([p]).load_state_dict(optim.Adam([p, torch.nn.Parameter(torch.zeros(1))]).state_dict())
    with pytest.raises(ValueError, match="amsgrad"):
        optim.Adam([p]).load_state_dict(torch.optim.Adam([p], amsgrad=True).state_dict())


def test_stepping_does_not_import_dynamo():
    """The point of the module: a process that trains with it never imports torch._dynamo (1.5-2 s)."""
    script = textwrap.dedent("""
        import sys, torch
        from repmatch.optim import SGD, Adam, AdamW
        for cls, kw in ((Adam, {"foreach": False}), (Adam, {"foreach": True}), (AdamW, {}),
                        (SGD, {"momentum": 0.9, "nesterov": True}), (SGD, {"momentum": 0.9, "foreach": True})):
            p = torch.nn.Parameter(torch.zeros(3))
            opt = cls([p], lr=0.1, **kw)
            for _ in range(2):
                opt.zero_grad()
                p.grad = torch.ones(3)
                opt.step()
            opt.load_state_dict(opt.state_dict())
        print("torch._dynamo" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False", "repmatch.optim imported torch._dynamo"


def test_cosine_lr_is_the_value_torchs_lambdalr_sets():
    """The training and detector schedule: torch's LambdaLR with 0.5 * (1 + cos(pi * min(s, T) / T)),
    compared value for value over the steps and past their end (held at 0)."""
    import math

    from repmatch.optim import cosine_lr

    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=0.1)
    total = 7
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    for step in range(total + 3):
        assert cosine_lr(0.1, step, total) == opt.param_groups[0]["lr"], step
        opt.step()
        sched.step()
    assert cosine_lr(0.1, 0, total) == 0.1 and cosine_lr(0.1, total + 5, total) == 0.0
