"""Running statistics: numpy (small CPU batches) and torch (large batches, GPUs) give the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlkd.nn.stats import DiscountedReturnScaler, RunningMeanStd


def test_running_moments_equal_pooled_data_on_both_paths() -> None:
    """Small batches update through numpy views, large ones through torch: both equal the moments of
    all data seen (with the 1e-4 pseudo-count at mean 0, variance 1) and each other."""
    g = torch.Generator().manual_seed(0)
    small = [torch.randn(9, 4, generator=g) * 3 + 1 for _ in range(5)]
    large = [torch.randn(20_000, 4, generator=g) * 3 + 1 for _ in range(2)]  # 80k numbers: torch
    data = torch.cat(small + large).double()
    fed = RunningMeanStd((4,))
    for batch in [*small, large[0], large[1].numpy()]:  # numpy input on the torch path too
        fed.update(batch)
    # The pseudo-count: 1e-4 samples of mean 0 and variance 1.
    n0, n = 1e-4, data.shape[0]
    mean = data.sum(0) / (n + n0)
    second = (data.square().sum(0) + n0 * 1.0) / (n + n0)
    torch.testing.assert_close(fed.mean, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fed.var, second - mean.square(), rtol=1e-9, atol=1e-9)
    assert float(fed.count) == pytest.approx(n + n0)
    by_numpy = RunningMeanStd((4,))
    for batch in small + large:  # the large ones cut into numpy-sized pieces
        for piece in batch.split(4096):
            by_numpy.update(piece.numpy())
    torch.testing.assert_close(by_numpy.mean, fed.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(by_numpy.var, fed.var, rtol=1e-12, atol=1e-12)


def test_normalize_is_the_float32_formula_on_both_paths() -> None:
    rms = RunningMeanStd((3,))
    rms.update(torch.tensor([[1.0, -2.0, 30.0], [3.0, 2.0, 10.0]]))
    for x in (torch.tensor([[2.0, 0.5, 100.0]]), torch.full((30_000, 3), 2.0)):  # numpy, torch
        by_hand = (x - rms.mean.float()) / torch.sqrt(rms.var + 1e-8).float()
        assert torch.equal(rms.normalize(x), by_hand)
        assert torch.equal(rms.normalize(x, clip=1.5), by_hand.clamp(-1.5, 1.5))
    pixels = torch.tensor([[0, 128, 255]], dtype=torch.uint8)  # integers are scaled as float32
    assert rms.normalize(pixels).dtype == torch.float32


def test_discounted_return_scaler_by_hand() -> None:
    """R_t = gamma R_{t-1} + r_t per env, zeroed after an episode end; the variance is of every R_t."""
    scaler = DiscountedReturnScaler(num_envs=2, gamma=0.5, episodic=True)
    rewards = np.array([[1.0, 2.0], [1.0, 0.0], [4.0, 2.0]])
    dones = np.array([[False, True], [False, False], [False, False]])
    for t in range(3):  # one step at a time, as PPO's rollout calls it
        scaler.update(torch.as_tensor(rewards[t : t + 1]), dones[t : t + 1])
    returns = [1.0, 2.0, 1.5, 0.0, 4.75, 2.0]  # env 0: 1, 1.5, 4.75; env 1: 2 (ends), 0, 2
    n0 = 1e-4
    mean = sum(returns) / (6 + n0)
    var = (sum(r * r for r in returns) + n0) / (6 + n0) - mean**2
    assert float(scaler.stats.var) == pytest.approx(var, rel=1e-9)
    assert scaler.returns.tolist() == [4.75, 2.0]
    expected = torch.tensor([2.0 / np.sqrt(var + 1e-8)], dtype=torch.float32)
    assert torch.allclose(scaler.scale(torch.tensor([2.0])), expected)


def test_scalar_statistics_and_numpy_scaling_equal_the_array_paths() -> None:
    """Scalar statistics merge in Python floats, (1,)-shaped ones through numpy arrays: the same
    float64 arithmetic, so the same bits; scaling a numpy reward array equals scaling the tensor."""
    rng = np.random.default_rng(1)
    scalar, vector = RunningMeanStd(()), RunningMeanStd((1,))
    for _ in range(20):
        batch = rng.normal(3.0, 2.0, size=8)
        scalar.update(batch)
        vector.update(batch[:, None])
    for name in ("count", "mean", "var"):
        assert getattr(scalar, name).item() == getattr(vector, name).reshape(-1)[0].item()
    scaler = DiscountedReturnScaler(num_envs=8, gamma=0.99, episodic=True)
    for _ in range(10):
        scaler.update(rng.normal(size=(1, 8)), rng.random((1, 8)) < 0.2)
    rewards = rng.normal(size=8).astype(np.float32)
    scaled = scaler.scale(rewards)
    assert scaled.dtype == np.float32
    assert torch.equal(torch.from_numpy(scaled), scaler.scale(torch.from_numpy(rewards)))
