"""Adam on PyTorch's own functional kernel, without ``torch.optim.Optimizer``'s start-up cost.

``torch.optim.Optimizer.__init__`` imports ``torch._dynamo`` (about 2 s of
imports in every training job, more than a whole default-size fold trains).
:class:`LeanAdam` keeps the same state (``exp_avg``, ``exp_avg_sq``, ``step``)
and calls ``torch.optim.adam.adam`` — the exact function ``torch.optim.Adam``
calls — with the fused kernel where the device supports it, else the foreach
one. The unit tests check that its parameters equal ``torch.optim.Adam``'s
after several steps.

On the fused path the step counters of all parameters are views into one
tensor, so a step is one ``add_`` and one ``torch._fused_adam_`` call (the
kernel ``torch.optim.Adam(fused=True)`` runs) instead of a Python grouping pass
and one ``add_`` per parameter tensor: about 0.3 ms less per step for the
60-tensor P-RMF model on the 2-core dev VM.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.optim.adam import adam


class LeanAdam:
    """Adam with L2 ``weight_decay`` (as ``torch.optim.Adam``, not AdamW)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, fused: bool | None = None) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("LeanAdam: no parameters that require grad")
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, float(eps)
        if fused is None:
            fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self.params)
        self.fused = bool(fused)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        devices = {p.device for p in self.params}
        # all parameters on one device: one counter tensor, the per-parameter steps are its views
        self._flat_steps: torch.Tensor | None = None
        if self.fused and len(devices) == 1:
            self._flat_steps = torch.zeros(len(self.params), dtype=torch.float32, device=devices.pop())
            self.steps = list(self._flat_steps.unbind())
        else:
            step_dtype = torch.float32 if self.fused else torch.get_default_dtype()
            self.steps = [torch.zeros((), dtype=step_dtype, device=p.device if self.fused else "cpu")
                          for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not idx:
            return
        if self._flat_steps is not None:
            if len(idx) == len(self.params):
                self._flat_steps.add_(1)
            else:
                for i in idx:
                    self.steps[i].add_(1)
            torch._fused_adam_(
                [self.params[i] for i in idx],
                [self.params[i].grad for i in idx],
                [self.exp_avg[i] for i in idx],
                [self.exp_avg_sq[i] for i in idx],
                [],
                [self.steps[i] for i in idx],
                lr=self.lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=self.weight_decay,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
            )
            return
        adam(
            [self.params[i] for i in idx],
            [self.params[i].grad for i in idx],
            [self.exp_avg[i] for i in idx],
            [self.exp_avg_sq[i] for i in idx],
            [],
            [self.steps[i] for i in idx],
            foreach=None if self.fused else True,
            capturable=False,
            differentiable=False,
            fused=True if self.fused else None,
            grad_scale=None,
            found_inf=None,
            has_complex=False,
            amsgrad=False,
            beta1=self.betas[0],
            beta2=self.betas[1],
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )
