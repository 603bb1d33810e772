"""LeanAdam: torch.optim.Adam's updates, step by step, on both of its paths."""

import pytest
import torch

import prmf.optim
from prmf.optim import LeanAdam, fused_kernel_available

LR, WD = 1e-2, 1e-3
SHAPES = [(4, 3), (3,), (2, 2, 2)]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in SHAPES]


def _grads(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(*shape, generator=g) for shape in SHAPES]


def _updates(opt_for, steps: int = 6) -> list[list[torch.Tensor]]:
    """The parameters after each of ``steps`` steps of ``opt_for(params)``, from the same weights and grads."""
    params = _params()
    opt = opt_for(params)
    history = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        for p, grad in zip(params, _grads(step)):
            p.grad = grad.clone()
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history


def _assert_same_updates(a, b):
    for step, (pa, pb) in enumerate(zip(a, b), start=1):
        for x, y in zip(pa, pb):
            assert torch.equal(x, y), f"step {step}: {(x - y).abs().max().item()}"


@pytest.fixture
def fresh_detection():
    """Forget the cached kernel check before and after the test (so a monkeypatch takes effect, then ends)."""
    fused_kernel_available.cache_clear()
    yield
    fused_kernel_available.cache_clear()


def test_this_torch_takes_the_kernel_path():
    assert fused_kernel_available()
    assert LeanAdam(_params(), lr=LR, weight_decay=WD).uses_kernel


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreach"])
def test_lean_adam_matches_torch_adam_step_by_step(fused):
    ours = _updates(lambda ps: LeanAdam(ps, lr=LR, weight_decay=WD, fused=fused))
    ref = _updates(lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=WD, fused=fused,
                                               foreach=None if fused else True))
    _assert_same_updates(ours, ref)
    start = _params()
    assert all(not torch.equal(p, q) for p, q in zip(ours[0], start))  # the first step moved every tensor


def test_first_step_is_adam_by_hand():
    """Step 1 of Adam with L2 decay: g' = g + wd p; m = (1-b1) g', v = (1-b2) g'^2; bias-corrected
    m_hat = g', v_hat = g'^2, so p1 = p0 - lr g' / (|g'| + eps)."""
    p0, g = _params(), _grads(0)
    ours = _updates(lambda ps: LeanAdam(ps, lr=LR, weight_decay=WD), steps=1)[0]
    for p, grad, got in zip(p0, g, ours):
        p, grad = p.detach().double(), grad.double()
        g_l2 = grad + WD * p
        m_hat = (1 - 0.9) * g_l2 / (1 - 0.9)
        v_hat = (1 - 0.999) * g_l2.square() / (1 - 0.999)
        torch.testing.assert_close(got.double(), p - LR * m_hat / (v_hat.sqrt() + 1e-8), rtol=0, atol=1e-7)


def test_lean_adam_skips_params_without_grad():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = LeanAdam([p, q], lr=0.1, weight_decay=0.0)
    p.grad = torch.ones(2)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.9))  # first step: -lr * sign(g)
    assert torch.equal(q, torch.ones(2))
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "fallback"])
def test_lean_adam_matches_torch_adam_when_some_params_skip_steps(kernel, monkeypatch, fresh_detection):
    """Parameters without a gradient keep their own step count (bias correction), as in torch.optim.Adam."""
    if not kernel:
        monkeypatch.setattr(prmf.optim, "fused_kernel", lambda: None)
    torch.manual_seed(1)
    a = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ref = torch.optim.Adam(a, lr=LR, weight_decay=WD, fused=True)
    ours = LeanAdam(b, lr=LR, weight_decay=WD)
    assert ours.uses_kernel == kernel
    for step in range(5):
        g = [torch.randn(4, 3) for _ in range(3)]
        for params, opt in ((a, ref), (b, ours)):
            opt.zero_grad(set_to_none=True)
            for i, p in enumerate(params):
                if not (i == 1 and step % 2 == 0):  # the middle tensor only gets a grad on odd steps
                    p.grad = g[i].clone()
            opt.step()
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert [float(s) for s in ours.steps] == [5.0, 2.0, 5.0]


def _wrong_signature(*args, lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, grad_scale, found_inf):
    raise AssertionError("never reached: the call lacks grad_scale / found_inf")


def _does_nothing(*args, **kwargs):
    return None


@pytest.mark.parametrize("break_kernel", ["absent", "other_signature", "other_semantics"])
def test_fallback_gives_the_kernel_paths_updates(break_kernel, monkeypatch, fresh_detection):
    """Where torch._fused_adam_ is missing or is not the kernel LeanAdam was written for, LeanAdam uses
    torch.optim.Adam(fused=True) and its parameters follow exactly the kernel path's."""
    kernel_path = _updates(lambda ps: LeanAdam(ps, lr=LR, weight_decay=WD))
    # LeanAdam's view of the private kernel changes; torch.optim.Adam keeps the real one
    broken = {"absent": None, "other_signature": _wrong_signature, "other_semantics": _does_nothing}[break_kernel]
    monkeypatch.setattr(prmf.optim, "fused_kernel", lambda: broken)
    fused_kernel_available.cache_clear()
    assert not fused_kernel_available()
    built = []
    fallback = _updates(lambda ps: built.append(LeanAdam(ps, lr=LR, weight_decay=WD)) or built[-1])
    assert not built[0].uses_kernel and isinstance(built[0]._torch_adam, torch.optim.Adam)
    assert built[0]._torch_adam.defaults["fused"] is True
    _assert_same_updates(fallback, kernel_path)
    assert [float(s) for s in built[0].steps] == [6.0] * len(SHAPES)


def test_kernel_check_runs_once(monkeypatch, fresh_detection):
    calls = []
    kernel = prmf.optim.fused_kernel()

    def counting(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(prmf.optim, "fused_kernel", lambda: counting)
    for _ in range(3):
        assert LeanAdam(_params(), lr=LR, weight_decay=WD).uses_kernel
    assert len(calls) == 1  # the try on a tiny tensor, for the first optimizer only
