"""Adam, AdamW and SGD that do torch.optim's arithmetic without importing ``torch._dynamo``.

Why: ``torch.optim``'s ``Optimizer.step`` (``_use_grad_for_differentiable``) imports ``torch._dynamo``
on the first step of a process, and ``Optimizer.__init__`` / ``zero_grad`` are wrapped by
``torch._disable_dynamo``, which imports it lazily too. Measured with torch 2.14.1 on the
development machine (2 CPU cores): ``python -X importtime`` puts that import at 1.6 s cumulative;
a process that imports torch and takes one Adam step runs 4.2-4.5 s (3.9-4.1 s CPU) with
``torch.optim.Adam`` and 2.4-2.5 s (2.1-2.3 s CPU) with this module's. Every training job of the
default run (stitching pairs, sensitivity, train) paid it; nothing here needs dynamo (no
``torch.compile``, no closures, no CUDA graphs). (The train stage imports it anyway, through
``torch.use_deterministic_algorithms``, which imports ``torch._inductor``.)

The arithmetic follows torch 2.14's step for step, so parameters stay bit-identical to
``torch.optim``'s (tests/foundations/test_optim.py compares them with ``torch.equal``):

* the single-tensor path (torch's default on the CPU) is ``_single_tensor_adam`` /
  ``_single_tensor_sgd``: the same in-place ops in the same order (``lerp_``, ``mul_().addcmul_``,
  ``sqrt() / bias_correction2_sqrt).add_(eps)``, ``addcdiv_``), the step counter a float32 tensor
  (float64 under a float64 default dtype) whose ``.item()`` gives the Python-float bias corrections;
* the multi-tensor path (``foreach=True``; torch's default when every parameter is on CUDA or
  another foreach device) is ``_multi_tensor_adam`` / ``_multi_tensor_sgd``: the same ``torch._foreach_*``
  calls per (device, dtype) group, with per-tensor Python-float step sizes.

What is left out: closures, ``amsgrad``, ``maximize``, ``fused``, ``capturable``, tensor learning
rates, complex and sparse tensors, hooks. ``param_groups`` are plain dicts (callers set
``group["lr"]`` per step) and ``state_dict()`` has torch's layout (state by parameter index,
groups with their settings and parameter indices), so a state saved by ``torch.optim`` loads too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
_UNSUPPORTED = ("amsgrad", "maximize", "capturable", "differentiable", "fused")  # torch.optim group options left out



def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): cosine decay from ``base_lr`` to 0 over
    ``total_steps``, held at 0 after them -- the value torch's
    ``LambdaLR(opt, lambda s: 0.5 * (1 + cos(pi * min(s, total) / total)))`` sets (the training and
    detector schedules; the stitch schedule with warm-up and a floor is ``repmatch.stitching.task.lr_at``)."""
    return base_lr * (0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))


def _scalar_dtype() -> torch.dtype:
    """The step counter's dtype (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _default_foreach(params: list[torch.Tensor]) -> bool:
    """torch's choice when ``foreach`` is None: the multi-tensor path when every parameter is a plain
    tensor on a foreach device (CUDA, XPU, ...), the single-tensor path otherwise (CPU, MPS)."""
    devices = _get_foreach_kernels_supported_devices()
    return all(type(p) in (torch.Tensor, torch.nn.Parameter) and p.device.type in devices for p in params)


def _by_device_and_dtype(*lists: list[Any]) -> list[tuple[list[Any], ...]]:
    """Split parallel lists into groups of parameters on one device with one dtype (first list decides),
    in order of first appearance, as torch's multi-tensor paths do before each ``_foreach`` call."""
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[Any], ...]] = {}
    for items in zip(*lists):
        key = (items[0].device, items[0].dtype)
        bucket = groups.setdefault(key, tuple([] for _ in lists))
        for column, item in zip(bucket, items):
            column.append(item)
    return list(groups.values())


class Optimizer:
    """What Adam and SGD share: parameter groups, ``zero_grad``, ``state_dict`` / ``load_state_dict``."""

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict[torch.Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        items = list(params)
        if not items:
            raise ValueError("optimizer got an empty parameter list")
        for group in items if isinstance(items[0], dict) else [{"params": items}]:
            params_ = list(group["params"])
            for p in params_:
                if not isinstance(p, torch.Tensor) or torch.is_complex(p):
                    raise TypeError(f"optimizer can only optimize real tensors, got {type(p).__name__} {getattr(p, 'dtype', '')}")
            self.param_groups.append({**defaults, **{k: v for k, v in group.items() if k != "params"}, "params": params_})
        seen = [id(p) for g in self.param_groups for p in g["params"]]
        if len(seen) != len(set(seen)):
            raise ValueError("some parameters appear in more than one parameter group")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (default) or zero every parameter's gradient (torch's ``Optimizer.zero_grad``)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def _with_grad(self, group: dict[str, Any]) -> list[torch.Tensor]:
        params = [p for p in group["params"] if p.grad is not None]
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        return params

    def _foreach(self, group: dict[str, Any], params: list[torch.Tensor]) -> bool:
        return _default_foreach(params) if group.get("foreach") is None else bool(group["foreach"])

    def step(self) -> None:
        """One update of every parameter that has a gradient (no gradient tracking)."""
        with torch.no_grad():
            for group in self.param_groups:
                params = self._with_grad(group)
                if params:
                    self._update(group, params, self._foreach(group, params))

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], foreach: bool) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: per-parameter state}, "param_groups": [settings + parameter indices]}``,
        indices counting parameters over the groups in order (torch's layout; tensors are not copied)."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            groups.append(
                {**{k: v for k, v in group.items() if k != "params"}, "params": [index[id(p)] for p in group["params"]]}
            )
        return {"state": {index[id(p)]: s for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also torch.optim's) into an optimizer over the same parameters.
        State tensors are copied onto each parameter's device (moments in its dtype; the step counter as saved)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
            len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)
        ):
            raise ValueError("loaded state dict has other parameter groups than this optimizer")
        unsupported = sorted({k for s in saved for k in _UNSUPPORTED if s.get(k)})
        if unsupported:
            raise ValueError(f"loaded state dict uses options repmatch.optim does not implement: {unsupported}")
        by_index = {i: p for s, g in zip(saved, self.param_groups) for i, p in zip(s["params"], g["params"])}
        state: dict[torch.Tensor, dict[str, Any]] = {}
        for i, values in state_dict["state"].items():
            p = by_index[i]
            state[p] = {k: _cast(v, p, keep=(k == "step")) for k, v in values.items()}
        self.state = state
        self.param_groups = [
            {**{k: v for k, v in s.items() if k != "params"}, "params": g["params"]} for s, g in zip(saved, self.param_groups)
        ]


def _cast(value: Any, param: torch.Tensor, *, keep: bool) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if keep:
        return value.clone()
    if param.is_floating_point():
        return value.to(device=param.device, dtype=param.dtype, copy=True)
    return value.to(device=param.device, copy=True)


class Adam(Optimizer):
    """Adam (L2 weight decay added to the gradient), torch.optim.Adam's arithmetic; ``foreach`` as torch's."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, foreach: bool | None = None, decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        if not (lr >= 0.0 and eps >= 0.0 and weight_decay >= 0.0 and 0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid Adam settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        defaults = {"lr": lr, "betas": (float(betas[0]), float(betas[1])), "eps": eps, "weight_decay": weight_decay,
                    "foreach": foreach, "decoupled_weight_decay": decoupled_weight_decay}  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], foreach: bool) -> None:
        grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
        for p in params:
            state = self.state.setdefault(p, {})
            if not state:  # lazy initialisation; the step counter lives on the CPU (torch without capturable/fused)
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype(), device="cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        settings = {"beta1": beta1, "beta2": beta2, "lr": group["lr"], "weight_decay": group["weight_decay"],
                    "eps": group["eps"], "decoupled": group.get("decoupled_weight_decay", False)}  # fmt: skip
        if foreach:
            for lists in _by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, steps):
                _multi_tensor_adam(*lists, **settings)
        else:
            _single_tensor_adam(params, grads, exp_avgs, exp_avg_sqs, steps, **settings)


class AdamW(Adam):
    """AdamW (decoupled weight decay), torch.optim.AdamW's arithmetic (torch's default weight decay 1e-2)."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, foreach: bool | None = None) -> None:  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, foreach=foreach, decoupled_weight_decay=True)


def _single_tensor_adam(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                        exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor], *, beta1: float, beta2: float,
                        lr: float, weight_decay: float, eps: float, decoupled: bool) -> None:  # fmt: skip
    """torch.optim.adam._single_tensor_adam without amsgrad, maximize, capturable, complex."""
    for param, grad, exp_avg, exp_avg_sq, step_t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        step_t += 1
        if weight_decay != 0:
            if decoupled:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = step_t.item()
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)


def _multi_tensor_adam(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                       exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor], *, beta1: float, beta2: float,
                       lr: float, weight_decay: float, eps: float, decoupled: bool) -> None:  # fmt: skip
    """torch.optim.adam._multi_tensor_adam for one (device, dtype) group, without amsgrad, maximize, capturable, complex."""
    if steps[0].is_cpu:  # torch wraps the 1 once for CPU counters (the same value as adding 1)
        torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    del grads
    bias_correction1 = [1 - beta1 ** step.item() for step in steps]
    bias_correction2 = [1 - beta2 ** step.item() for step in steps]
    step_size = [(lr / bc) * -1 for bc in bias_correction1]
    bias_correction2_sqrt = [bc**0.5 for bc in bias_correction2]
    exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(exp_avg_sq_sqrt, bias_correction2_sqrt)
    torch._foreach_add_(exp_avg_sq_sqrt, eps)
    torch._foreach_addcdiv_(params, exp_avgs, exp_avg_sq_sqrt, step_size)


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay, torch.optim.SGD's arithmetic."""

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, foreach: bool | None = None) -> None:  # fmt: skip
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0:
            raise ValueError(f"invalid SGD settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "foreach": foreach}  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], foreach: bool) -> None:
        momentum = group["momentum"]
        grads = [p.grad for p in params]
        bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        settings = {"weight_decay": group["weight_decay"], "momentum": momentum, "lr": group["lr"],
                    "dampening": group["dampening"], "nesterov": group["nesterov"]}  # fmt: skip
        if foreach:
            for device_params, device_grads, device_bufs, positions in _by_device_and_dtype(
                params, grads, bufs, list(range(len(params)))
            ):
                _multi_tensor_sgd(device_params, device_grads, device_bufs, **settings)
                for k, buf in zip(positions, device_bufs):
                    bufs[k] = buf
        else:
            _single_tensor_sgd(params, grads, bufs, **settings)
        if momentum != 0:
            for p, buf in zip(params, bufs):
                self.state.setdefault(p, {})["momentum_buffer"] = buf


def _single_tensor_sgd(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor | None], *,
                       weight_decay: float, momentum: float, lr: float, dampening: float, nesterov: bool) -> None:  # fmt: skip
    """torch.optim.sgd._single_tensor_sgd without maximize and tensor hyperparameters (fills ``bufs`` in place)."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if momentum != 0:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
        param.add_(grad, alpha=-lr)


def _multi_tensor_sgd(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor | None], *,
                      weight_decay: float, momentum: float, lr: float, dampening: float, nesterov: bool) -> None:  # fmt: skip
    """torch.optim.sgd._multi_tensor_sgd for one (device, dtype) group, without maximize and sparse gradients."""
    if weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum != 0:
        if all(b is not None for b in bufs):
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        else:
            for i, grad in enumerate(grads):
                buf = bufs[i]
                if buf is None:
                    bufs[i] = grad.detach().clone()
                else:
                    buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        if nesterov:
            # in place, as torch does: without weight decay this overwrites the parameters' .grad
            torch._foreach_add_(grads, bufs, alpha=momentum)
        else:
            grads = bufs
    torch._foreach_add_(params, grads, alpha=-lr)
