"""FusedAdam: torch.optim.Adam(fused=True)'s numbers and state_dict, without its machinery."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from rlkd.nn.optim import FusedAdam, clip_grad_norm_


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def _train(net: nn.Module, opt, steps: int, seed: int, lrs: list[float] | None = None) -> None:
    gen = torch.Generator().manual_seed(seed)
    for k in range(steps):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        x = torch.randn(16, 5, generator=gen)
        loss = net(x).square().mean()
        opt.zero_grad()
        loss.backward()
        if k % 3 == 2:  # a parameter without a gradient is left alone, as torch does
            net[2].bias.grad = None
        opt.step()


def test_matches_torch_fused_adam_bit_for_bit() -> None:
    a, b = _net(0), _net(0)
    lrs = [1e-2 * (1 - k / 12) for k in range(12)]  # a schedule written into param_groups
    _train(a, torch.optim.Adam(a.parameters(), lr=1e-2, eps=1e-5, fused=True), 12, 1, lrs)
    ours = FusedAdam(b.parameters(), lr=1e-2, eps=1e-5)
    _train(b, ours, 12, 1, lrs)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # The bias that missed every third gradient took 8 steps, the others 12.
    assert [float(s["step"]) for s in ours.state.values()] == [12.0, 12.0, 12.0, 8.0]


def test_hand_computed_first_step() -> None:
    """First Adam step: m = (1-b1) g, v = (1-b2) g^2, p -= lr * (m / (1-b1)) / (sqrt(v / (1-b2)) + eps)."""
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    p.grad = torch.tensor([0.5, -4.0])
    opt = FusedAdam([p], lr=0.1, eps=1e-8)
    opt.step()
    # The bias-corrected ratio is g / (|g| + eps): each parameter moves by ~lr against its gradient.
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 0.1, -2.0 + 0.1]), atol=1e-6)
    assert torch.allclose(opt.state[0]["exp_avg"], torch.tensor([0.05, -0.4]))
    assert torch.allclose(opt.state[0]["exp_avg_sq"], torch.tensor([0.25, 16.0]) * 1e-3)


@pytest.mark.parametrize("direction", ["torch_to_ours", "ours_to_torch"])
def test_state_dict_moves_between_classes(direction: str) -> None:
    """A checkpoint of either optimizer resumes in the other and continues the same numbers."""
    ref, net = _net(0), _net(0)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3, eps=1e-5, fused=True)
    _train(ref, ref_opt, 6, 2)
    _train(ref, ref_opt, 6, 3)  # the reference: 12 uninterrupted steps
    first = FusedAdam if direction == "ours_to_torch" else torch.optim.Adam
    kwargs = {} if first is FusedAdam else {"fused": True}
    opt = first(net.parameters(), lr=3e-3, eps=1e-5, **kwargs)
    _train(net, opt, 6, 2)
    saved = opt.state_dict()
    copy = {k: v.clone() for k, v in saved["state"][0].items()}
    resumed = (
        torch.optim.Adam(net.parameters(), lr=1.0, eps=1e-5, fused=True)
        if first is FusedAdam
        else FusedAdam(net.parameters(), lr=1.0, eps=1e-5)
    )
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 3e-3  # hyperparameters come from the checkpoint
    _train(net, resumed, 6, 3)
    for pa, pb in zip(ref.parameters(), net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    if direction == "torch_to_ours":  # ours copies what it loads (torch's own loader aliases it)
        assert all(torch.equal(copy[k], saved["state"][0][k]) for k in copy)


def test_refuses_other_parameters() -> None:
    saved = FusedAdam(_net(0).parameters(), lr=1e-3).state_dict()
    with pytest.raises(ValueError, match="parameters"):
        FusedAdam([nn.Parameter(torch.zeros(3))], lr=1e-3).load_state_dict(saved)
    net = _net(0)
    opt = FusedAdam(net.parameters(), lr=1e-3)
    _train(net, opt, 1, 0)
    saved = opt.state_dict()
    other = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="saved moments"):
        FusedAdam(other.parameters(), lr=1e-3).load_state_dict(saved)


def test_ppo_update_never_imports_dynamo() -> None:
    """The point of the class: a PPO process never imports torch._dynamo (~0.75 s of start-up)."""
    code = (
        "import sys, gymnasium as gym, numpy as np, torch\n"
        "from rlkd.agents.ppo import PPO, PPOConfig\n"
        "from rlkd.core.guard import UpdateGuard\n"
        "cfg = PPOConfig(env_id='CartPole-v1', num_envs=2, num_steps=8, num_minibatches=2, total_steps=16)\n"
        "algo = PPO(cfg, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))\n"
        "algo.learn(torch.randn(8, 2), torch.randn(8, 2), torch.zeros(8, 2), UpdateGuard())\n"
        "algo.optimizer.load_state_dict(algo.optimizer.state_dict())\n"
        "print(int(algo.optimizer.state[0]['step']), 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["8", "False"]  # 4 epochs x 2 minibatches stepped, no dynamo


@pytest.mark.parametrize("max_norm", [0.05, 1e3])  # clips / leaves alone
def test_clip_grad_norm_matches_torch(max_norm: float) -> None:
    a, b = _net(0), _net(0)
    for net in (a, b):
        net(torch.ones(4, 5)).square().sum().backward()
        net[2].bias.grad = None  # skipped by both
    ref = torch.nn.utils.clip_grad_norm_(list(a.parameters()), max_norm)
    ours = clip_grad_norm_(list(b.parameters()), max_norm)
    assert torch.equal(ref, ours)
    by_hand = torch.cat([p.grad.reshape(-1) for p in _grads_of(_net(0))]).norm()
    assert torch.allclose(ours, by_hand)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert (pa.grad is None and pb.grad is None) or torch.equal(pa.grad, pb.grad)
    after = torch.cat([p.grad.reshape(-1) for p in b.parameters() if p.grad is not None]).norm()
    assert float(after) == pytest.approx(min(max_norm, float(by_hand)), rel=1e-5)


def _grads_of(net: nn.Module) -> list[nn.Parameter]:
    net(torch.ones(4, 5)).square().sum().backward()
    net[2].bias.grad = None
    return [p for p in net.parameters() if p.grad is not None]
