"""Adam on PyTorch's fused kernel, without ``torch.optim.Optimizer``'s start-up cost.

:class:`LeanAdam` is Adam with L2 ``weight_decay`` (``torch.optim.Adam``'s
update, not AdamW). It takes one of two paths, chosen when it is built:

* **Kernel path** -- every parameter a floating-point tensor on one CPU or
  CUDA device, and this torch's private ``torch._fused_adam_`` (the kernel
  ``torch.optim.Adam(fused=True)`` runs) accepting LeanAdam's keyword call
  and doing Adam's update (checked once per process on a tiny tensor,
  :func:`fused_kernel_available`).
  LeanAdam keeps Adam's state itself (``exp_avg``, ``exp_avg_sq`` and float32
  step counters that are views into one tensor), so a step is one ``add_`` on
  the counters and one kernel call. ``torch.optim.Optimizer`` is never built:
  its ``__init__`` imports ``torch._dynamo``, seconds in every training job.
* **Fallback** -- the kernel is absent or its signature differs, the
  parameters are on several devices, or ``fused=False``: a
  ``torch.optim.Adam`` with the same hyper-parameters does the step
  (``fused=True`` where asked, else ``foreach=True``; ``capturable`` when
  every parameter is on CUDA, so a CUDA graph can capture it).

Either way the parameters follow ``torch.optim.Adam``'s updates exactly;
``tests/test_optim.py`` checks both paths step by step against it.
Seconds per epoch with it: ``benchmarks/bench_train.py``.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

import torch


def fused_kernel() -> Callable | None:
    """torch's private fused Adam kernel, ``torch._fused_adam_``; ``None`` where this torch has none."""
    return getattr(torch, "_fused_adam_", None)


def _kernel_step(kernel: Callable, params: list[torch.Tensor], grads: list[torch.Tensor],
                 exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor], *,
                 lr: float, betas: tuple[float, float], weight_decay: float, eps: float) -> None:
    """One Adam update of ``params`` in place by ``kernel`` (``steps`` already incremented)."""
    kernel(
        params, grads, exp_avgs, exp_avg_sqs, [], steps,
        lr=lr, beta1=betas[0], beta2=betas[1], weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False,
    )


@functools.lru_cache(maxsize=None)
def fused_kernel_available() -> bool:
    """Whether :func:`fused_kernel` exists, takes :func:`_kernel_step`'s call and does Adam's first step.

    Tried once per process on a two-element CPU tensor: Adam's first step
    moves every entry by ``-lr * sign(grad)``.
    """
    kernel = fused_kernel()
    if kernel is None:
        return False
    p, g = torch.zeros(2), torch.tensor([1.0, -2.0])
    try:
        _kernel_step(kernel, [p], [g], [torch.zeros(2)], [torch.zeros(2)], [torch.ones((), dtype=torch.float32)],
                     lr=0.5, betas=(0.9, 0.999), weight_decay=0.0, eps=1e-8)
    except (TypeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.allclose(p, torch.tensor([-0.5, 0.5])))


class LeanAdam:
    """Adam with L2 ``weight_decay`` (as ``torch.optim.Adam``, not AdamW); see the module docstring.

    ``fused``: ``None`` -- the fused update wherever every parameter is a
    floating-point CPU or CUDA tensor; ``False`` -- ``torch.optim.Adam``'s
    foreach update. :attr:`uses_kernel` tells which path was taken.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, fused: bool | None = None) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("LeanAdam: no parameters that require grad")
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, float(eps)
        if fused is None:
            fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self.params)
        self.fused = bool(fused)
        devices = {p.device for p in self.params}
        self.uses_kernel = self.fused and len(devices) == 1 and fused_kernel_available()
        self._torch_adam: torch.optim.Adam | None = None
        if self.uses_kernel:
            self._kernel = fused_kernel()
            self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            # one counter tensor; the per-parameter step counts are its views
            self._flat_steps = torch.zeros(len(self.params), dtype=torch.float32, device=devices.pop())
            self._steps = list(self._flat_steps.unbind())
        else:
            capturable = all(p.device.type == "cuda" for p in self.params)
            path = {"fused": True} if self.fused else {"foreach": True}
            self._torch_adam = torch.optim.Adam(self.params, lr=self.lr, betas=self.betas, eps=self.eps,
                                                weight_decay=self.weight_decay, capturable=capturable, **path)

    @property
    def steps(self) -> list[torch.Tensor]:
        """Adam's step count of each parameter (a parameter without a gradient does not step)."""
        if self._torch_adam is None:
            return self._steps
        state = self._torch_adam.state
        return [state[p]["step"] if "step" in state[p] else torch.zeros(()) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        if self._torch_adam is not None:
            self._torch_adam.step()
            return
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not idx:
            return
        if len(idx) == len(self.params):
            self._flat_steps.add_(1)
        else:
            for i in idx:
                self._steps[i].add_(1)
        _kernel_step(
            self._kernel,
            [self.params[i] for i in idx],
            [self.params[i].grad for i in idx],
            [self.exp_avg[i] for i in idx],
            [self.exp_avg_sq[i] for i in idx],
            [self._steps[i] for i in idx],
            lr=self.lr, betas=self.betas, weight_decay=self.weight_decay, eps=self.eps,
        )
