"""Adam on PyTorch's fused kernel, without ``torch.optim``'s per-call machinery.

``torch.optim.Adam(fused=True)`` runs one kernel for all parameters, but constructing it imports
``torch._dynamo`` (its ``step`` and ``zero_grad`` are wrapped in ``torch._disable_dynamo``), which
costs ~0.75 s of a process's start-up on this machine's CPU, and every step passes through
profiler and hook wrappers. PPO's update is many small steps and a short run is a few seconds, so
:class:`FusedAdam` calls the same kernel directly: the same numbers as ``torch.optim.Adam(...,
fused=True)`` bit for bit (tested), the same ``state_dict`` format, so checkpoints move between them.
Every rlkd learner steps it (PPO, Dreamer/DisWM, pretraining, the monitor's scorers); only the
Stable-Baselines3 side (``rlkd.intrinsic.sb3``) keeps ``torch.optim``, as SB3 itself does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor


class FusedAdam:
    """Adam (Kingma & Ba 2015) over one parameter group, as ``torch.optim.Adam(fused=True)``.

    What it computes is ``torch/optim/adam.py``'s ``_fused_adam``: each stepped parameter's step
    count (a float32 tensor on its device) plus one, then ``torch._fused_adam_``. As there, a
    parameter whose ``grad`` is None is left alone and its state created at its first gradient.

    Args:
        params: The parameters (one device, floating point).
        lr: Step size; ``param_groups[0]["lr"]`` may be changed between steps (schedules).
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator.
    """

    def __init__(
        self, params: Iterable[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:  # fmt: skip
        self.params = list(params)
        if len({p.device for p in self.params}) > 1:
            raise ValueError("FusedAdam takes the parameters of one device")
        # torch.optim.Adam's group keys, so state_dict() reads the same to either class.
        group: dict[str, Any] = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0, "amsgrad": False,
            "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
            "fused": True, "decoupled_weight_decay": False,
        }  # fmt: skip
        self.param_groups = [{**group, "params": self.params}]
        self.state: dict[int, dict[str, Tensor]] = {}  # index into params -> step, exp_avg, exp_avg_sq
        # The step counts live in one buffer (each state's "step" a 0-d view into it) while every
        # parameter has state, so that one add counts a step of all of them.
        self._step_buffer = torch.zeros(len(self.params), dtype=torch.float32, device=self.params[0].device)
        self._shared_steps = False

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``, torch's default)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        group = self.param_groups[0]
        params, grads, avgs, sqs, steps = [], [], [], [], []
        stepped = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in stepped:
            if i not in self.state:
                self._init_state(i, self.params[i])
        for i in stepped:
            p, state = self.params[i], self.state[i]
            params.append(p)
            grads.append(p.grad)
            avgs.append(state["exp_avg"])
            sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        if len(params) == len(self.params) and self._shared_steps:
            self._step_buffer.add_(1)  # every count at once (_foreach_add_ is a loop on CPU)
        else:
            torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params, grads, avgs, sqs, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
            beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False,
        )  # fmt: skip

    def _init_state(self, i: int, p: Tensor) -> dict[str, Tensor]:
        self.state[i] = state = {
            "step": torch.zeros((), dtype=torch.float32, device=p.device),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        self._share_steps()
        return state

    def _share_steps(self) -> None:
        """Move the step counts into the shared buffer once every parameter has state."""
        self._shared_steps = len(self.state) == len(self.params)
        if self._shared_steps:
            for i, state in self.state.items():
                self._step_buffer[i] = state["step"]
                state["step"] = self._step_buffer[i]

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {step, exp_avg, exp_avg_sq}}, "param_groups": [...]}`` (torch's format)."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.params)))
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of this class or of ``torch.optim.Adam`` over the same parameters.

        Raises:
            ValueError: The saved optimizer holds other parameters (count or shapes).
        """
        groups = state["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(
                f"loaded state has {sum(len(g['params']) for g in groups)} parameters in "
                f"{len(groups)} groups; this optimizer has {len(self.params)} in 1"
            )
        index = {pid: i for i, pid in enumerate(groups[0]["params"])}
        loaded: dict[int, dict[str, Tensor]] = {}
        for pid, saved in state["state"].items():
            i = index[pid]
            p = self.params[i]
            if saved["exp_avg"].shape != p.shape:
                raise ValueError(f"parameter {i}: saved moments {tuple(saved['exp_avg'].shape)}, "
                                 f"parameter {tuple(p.shape)}")  # fmt: skip
            # As torch.optim.Optimizer.load_state_dict for a fused group: step as float32, the
            # moments in the parameter's dtype, everything on the parameter's device (copies: the
            # loaded dict stays as it was).
            loaded[i] = {
                "step": saved["step"].to(dtype=torch.float32, device=p.device, copy=True),
                "exp_avg": saved["exp_avg"].to(dtype=p.dtype, device=p.device, copy=True),
                "exp_avg_sq": saved["exp_avg_sq"].to(dtype=p.dtype, device=p.device, copy=True),
            }
        self.state = loaded
        self._share_steps()
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})


@torch.no_grad()
def clip_grad_norm_(params: list[Tensor], max_norm: float) -> Tensor:
    """Scale the gradients of ``params`` to a global L2 norm of at most ``max_norm``; returns the norm
    before clipping.

    ``torch.nn.utils.clip_grad_norm_``'s arithmetic and results (``clip_grad.py``: the norm of the
    per-tensor norms, coefficient ``max_norm / (norm + 1e-6)`` clamped at 1, one ``_foreach_mul_``),
    without its grouping by device and dtype and per-norm ``.to`` copies (one device and dtype here),
    and without the multiplication when the coefficient is 1. Parameters without a gradient are
    skipped, as there.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    # Multiplying by a coefficient of 1 changes nothing, and costs most of the call on CPU (~3 us a
    # tensor): skipped. Reading it waits for a GPU, as the update guard's check of the norm does anyway.
    if float(coef) < 1.0:
        torch._foreach_mul_(grads, coef)
    return total
