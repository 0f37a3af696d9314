"""The learned per-step scores of the monitor, fitted on successful in-distribution steps.

* :class:`NoveltyScorer`: distillation novelty (rlkd's RND or RDD module, :mod:`rlkd.intrinsic`)
  of a vector: FIPER's observation score when the vector is the policy's embedding, "RND on raw
  observations" (the usual baseline) when it is the observation.
* :class:`EnsembleScorer`: for a policy whose action uncertainty does not depend on the state (PPO's
  Gaussian): the disagreement of ``k`` small heads, each trained on a bootstrap resample of the
  calibration steps to predict the policy's mode action from its embedding. Away from the data they
  were fitted on the heads extrapolate differently (Osband et al. 2016, bootstrapped DQN; Lakshminarayanan
  et al. 2017), so their variance grows where the policy is unsure of its training support.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from torch import nn

from rlkd.intrinsic import IntrinsicModule, make_intrinsic
from rlkd.nn.nets import mlp
from rlkd.nn.optim import FusedAdam

FIT_BATCH = 256


def _batches(n: int, updates: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``updates`` random index batches of ``min(FIT_BATCH, n)`` rows (with replacement across batches)."""
    return [torch.randint(n, (min(FIT_BATCH, n),), generator=generator) for _ in range(updates)]


class NoveltyScorer(nn.Module):
    """Distillation novelty of vectors ``(B, D)``: RND's (or RDD's) prediction error on them.

    Args:
        dim: Vector size.
        kind: ``rnd`` or ``rdd``.
        hidden: Width of the target and predictor MLPs.
    """

    def __init__(self, dim: int, kind: str = "rnd", hidden: int = 128) -> None:
        super().__init__()
        space = gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        module = make_intrinsic(kind, space, num_envs=1, update_proportion=1.0, output_dim=64)
        assert isinstance(module, IntrinsicModule)
        self.module, self.kind, self.dim = module, kind, dim

    def fit(self, x: np.ndarray, updates: int, lr: float, seed: int) -> list[float]:
        """Normalise by the statistics of ``x`` ``(M, D)`` and train the predictor on it; the loss
        of every 100th update."""
        self.module.init_obs_stats(x)
        data = torch.as_tensor(x, dtype=torch.float32)
        opt = FusedAdam(self.module.predictor.parameters(), lr=lr)
        curve = []
        for i, idx in enumerate(_batches(len(data), updates, torch.Generator().manual_seed(seed))):
            loss = self.module.loss(data[idx])["predictor"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 100 == 0:
                curve.append(loss.item())
        return curve

    @torch.no_grad()
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Novelty ``(B,)`` of ``x`` ``(B, D)``."""
        return self.module.bonus(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)


class EnsembleScorer(nn.Module):
    """Disagreement of ``heads`` bootstrapped MLPs mapping embeddings ``(B, F)`` to mode actions ``(B, A)``.

    Args:
        dim: Embedding size.
        action_dim: Size of the mode action.
        heads: Ensemble size.
        hidden: Width of each head's two hidden layers.
    """

    def __init__(self, dim: int, action_dim: int, heads: int = 5, hidden: int = 64) -> None:
        super().__init__()
        self.heads = nn.ModuleList(mlp([dim, hidden, hidden, action_dim], nn.ReLU) for _ in range(heads))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray, y: np.ndarray, updates: int, lr: float, seed: int) -> list[float]:
        """Train each head on its own bootstrap resample of (``x`` ``(M, F)``, ``y`` ``(M, A)``)."""
        feats = torch.as_tensor(x, dtype=torch.float32)
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp(min=1e-6))
        target = torch.as_tensor(y, dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed)
        curve = []
        for head in self.heads:
            sample = torch.randint(len(feats), (len(feats),), generator=gen)  # the bootstrap resample
            opt = FusedAdam(head.parameters(), lr=lr)
            for i, idx in enumerate(_batches(len(sample), updates, gen)):
                rows = sample[idx]
                loss = (head(self._norm(feats[rows])) - target[rows]).square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i == updates - 1:
                    curve.append(loss.item())
        return curve

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Variance across heads, averaged over action dimensions ``(B,)``."""
        feats = self._norm(torch.as_tensor(x, dtype=torch.float32))
        preds = torch.stack([head(feats) for head in self.heads])  # (heads, B, A)
        return preds.var(0, unbiased=False).mean(-1).numpy().astype(np.float64)
