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
