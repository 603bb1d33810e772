"""LeanAdam must match torch.optim.Adam exactly."""

import pytest
import torch

from prmf.optim import LeanAdam


@pytest.mark.parametrize("fused", [True, False])
def test_lean_adam_matches_torch_adam(fused):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    b = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    b.load_state_dict(a.state_dict())
    ref = torch.optim.Adam(a.parameters(), lr=1e-2, weight_decay=1e-3, fused=fused, foreach=None if fused else True)
    ours = LeanAdam(b.parameters(), lr=1e-2, weight_decay=1e-3, fused=fused)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    for _ in range(6):
        for model, opt in ((a, ref), (b, ours)):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    # it actually moved the parameters
    c = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    assert not torch.equal(next(c.parameters()), next(b.parameters()))


def test_lean_adam_skips_params_without_grad():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = LeanAdam([p, q], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.all(p < 1) and torch.equal(q, torch.ones(2))
    opt.zero_grad()
    assert p.grad is None


def test_lean_adam_matches_torch_adam_when_some_params_skip_steps():
    """Parameters without a gradient keep their own step count (bias correction), as in torch.optim.Adam."""
    torch.manual_seed(1)
    a = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ref = torch.optim.Adam(a, lr=1e-2, weight_decay=1e-3, fused=True)
    ours = LeanAdam(b, lr=1e-2, weight_decay=1e-3)
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
