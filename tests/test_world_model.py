"""World-model losses and networks: analytic checks and invariants (fast, CPU)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rlkd.errors import UserError
from rlkd.world_model.behaviour import Actor
from rlkd.world_model.codecs import BetaVAEEncoder
from rlkd.world_model.model import (
    Distillation,
    WorldModel,
    WorldModelConfig,
    check_compatible,
    distill_loss,
    model_meta,
    vae_kl,
)
from rlkd.world_model.rssm import RSSM, gauss_kl, rssm_kl_loss

TINY = {"deter": 16, "stoch": 4, "hidden": 16, "units": 16, "cnn_depth": 4, "z_dim": 6}


def tiny_cfg(**kw: object) -> WorldModelConfig:
    return dataclasses.replace(WorldModelConfig(), **{**TINY, **kw})


def test_vae_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(vae_kl(mu, logvar), expected)


def test_gauss_kl_sums_the_closed_form_over_the_last_axis() -> None:
    # KL(N(0, 1) || N(1, 2)) = log 2 + (1 + 1) / 8 - 1/2; KL(N(2, 3) || N(2, 3)) = 0.
    ma, sa = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 3.0]])
    mb, sb = torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 3.0]])
    torch.testing.assert_close(gauss_kl(ma, sa, mb, sb), torch.tensor([math.log(2.0) - 0.25]))
    assert gauss_kl(mb, sb, mb, sb).item() == 0.0


def test_actor_entropy_is_the_untruncated_normals() -> None:
    # H(N(m, s)) = 1/2 log(2 pi e s^2) per dimension, whatever the mean; summed over actions.
    actor = Actor(3, 2, 8, min_std=0.1)
    _, entropy, std = actor.sample(torch.randn(5, 3))
    expected = (0.5 * math.log(2 * math.pi * math.e) + std.log()).sum(-1)
    torch.testing.assert_close(entropy, expected)


def test_distill_loss_equals_the_official_formula_on_fixed_tensors() -> None:
    # B = 2, T = 1, Z = 2. Teacher logits (0, 0) -> p = (1/2, 1/2); student logits (0, log 3) ->
    # q = (1/4, 3/4). KL(p || q) = 1/2 log 2 + 1/2 log(2/3) = 1/2 log(4/3) per step.
    student = torch.tensor([[[0.0, math.log(3.0)]], [[0.0, math.log(3.0)]]])
    teacher = torch.zeros(2, 1, 2)
    per_step_kl = 0.5 * math.log(4.0 / 3.0)
    assert distill_loss(student, teacher).item() == pytest.approx(per_step_kl)
    # Official: F.kl_div(log_softmax(s), softmax(t), reduction="batchmean") divides by B only, so
    # with T = 3 steps the value is 3 per-step KLs; the per-step mean stays one.
    s3, t3 = student.expand(2, 3, 2), teacher.expand(2, 3, 2)
    kl_div = torch.nn.functional.kl_div
    official = kl_div(torch.log_softmax(s3, -1), torch.softmax(t3, -1), reduction="batchmean")
    assert official.item() == pytest.approx(3 * per_step_kl)
    assert distill_loss(s3, t3).item() == pytest.approx(official.item())
    assert distill_loss(s3, t3, per_step=True).item() == pytest.approx(per_step_kl)
    assert distill_loss(t3, t3).abs().item() < 1e-6


def test_free_nats_clip_the_mean_kl() -> None:
    state = {"mean": torch.zeros(2, 3, 4), "std": torch.ones(2, 3, 4)}
    near = {"mean": torch.full((2, 3, 4), 0.01), "std": torch.ones(2, 3, 4)}
    loss, _ = rssm_kl_loss(state, near, balance=0.8, free=1.0)
    assert loss.item() == pytest.approx(1.0)  # tiny KL is clipped up to the free nats
    far = {"mean": torch.full((2, 3, 4), 3.0), "std": torch.ones(2, 3, 4)}
    loss, value = rssm_kl_loss(state, far, balance=0.8, free=1.0)
    assert loss.item() == pytest.approx(value.mean().item())  # 4 * 0.5 * 9 = 18 > free


def test_kl_balance_splits_gradients_between_prior_and_posterior() -> None:
    # Above the free nats, balance 0.8 sends 0.8 of the KL gradient to the prior and 0.2 to the
    # posterior (each side sees the other stopped). For KL(N(q,1) || N(p,1)) = 0.5 (q - p)^2 summed
    # over 4 dims, mean over (2, 3): d/dp = -(q - p) / 6 per element.
    post_mean = torch.full((2, 3, 4), 3.0, requires_grad=True)
    prior_mean = torch.zeros(2, 3, 4, requires_grad=True)
    post = {"mean": post_mean, "std": torch.ones(2, 3, 4)}
    prior = {"mean": prior_mean, "std": torch.ones(2, 3, 4)}
    loss, _ = rssm_kl_loss(post, prior, balance=0.8, free=1.0)
    loss.backward()
    torch.testing.assert_close(prior_mean.grad, torch.full((2, 3, 4), -0.8 * 3.0 / 6))
    torch.testing.assert_close(post_mean.grad, torch.full((2, 3, 4), 0.2 * 3.0 / 6))


def test_action_free_rssm_ignores_actions() -> None:
    # The pretraining world model (action_dim 0) given the same frames with zero and with large
    # actions: identical posteriors, priors and losses.
    wm = WorldModel(tiny_cfg(), action_dim=0, beta_vae=True)
    images = torch.randint(0, 255, (2, 5, 64, 64, 3), dtype=torch.uint8)
    first = torch.zeros(2, 5, dtype=torch.bool)
    first[:, 0] = True
    outs = []
    for actions in (torch.zeros(2, 5, 3), torch.randn(2, 5, 3) * 10):
        batch = {"obs": images, "action": actions, "reward": torch.zeros(2, 5), "is_first": first,
                 "is_terminal": torch.zeros(2, 5, dtype=torch.bool)}  # fmt: skip
        torch.manual_seed(4)
        losses, post, _ = wm.loss(batch)
        outs.append((post["deter"], post["stoch"], losses["kl"]))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b)
    embed = torch.randn(2, 5, 6)
    # And the action-conditioned RSSM *does* depend on them (so the check above is meaningful).
    rssm_a = RSSM(embed=6, action_dim=3, deter=8, stoch=4, hidden=8, min_std=0.1)
    torch.manual_seed(4)
    a, _ = rssm_a.observe(embed, torch.zeros(2, 5, 3), first)
    torch.manual_seed(4)
    b, _ = rssm_a.observe(embed, torch.ones(2, 5, 3), first)
    assert not torch.allclose(a["deter"][:, 1:], b["deter"][:, 1:])


def test_is_first_resets_the_state() -> None:
    torch.manual_seed(5)
    rssm = RSSM(embed=6, action_dim=2, deter=8, stoch=4, hidden=8, min_std=0.1)
    embed, action = torch.randn(1, 4, 6), torch.randn(1, 4, 2)
    first = torch.tensor([[True, False, True, False]])
    torch.manual_seed(6)
    post, _ = rssm.observe(embed, action, first)
    torch.manual_seed(7)
    fresh, _ = rssm.observe(embed[:, 2:], action[:, 2:], first[:, 2:])
    torch.testing.assert_close(post["deter"][:, 2], fresh["deter"][:, 0])


def test_world_model_loss_shapes_and_grads() -> None:
    cfg = tiny_cfg()
    wm = WorldModel(cfg, action_dim=2, beta_vae=True)
    batch = {
        "obs": torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8),
        "action": torch.rand(2, 3, 2) * 2 - 1,
        "reward": torch.randn(2, 3),
        "is_first": torch.tensor([[True, False, False]] * 2),
        "is_terminal": torch.zeros(2, 3, dtype=torch.bool),
    }
    teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth).requires_grad_(False)
    losses, post, metrics = wm.loss(batch, Distillation(teacher))
    assert set(losses) == {"image", "kl", "reward", "distill"}
    assert post["deter"].shape == (2, 3, cfg.deter)
    assert metrics["recon"].shape == (2, 3, 64, 64, 3)
    sum(losses.values()).backward()
    assert wm.encoder.head.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_check_compatible_names_the_field() -> None:
    cfg = tiny_cfg()
    meta = model_meta(cfg)
    check_compatible(meta, cfg, "x")
    with pytest.raises(UserError, match="z_dim=7"):
        check_compatible({**meta, "z_dim": 7}, cfg, "x")
    with pytest.raises(UserError, match="image_size"):
        check_compatible({**meta, "image_size": 84}, cfg, "x")


def test_image_sizes_without_conv_stacks_are_rejected() -> None:
    with pytest.raises(UserError, match="image-size"):
        tiny_cfg(image_size=84).validate()


def test_lambda_return_matches_hand_computation() -> None:
    from rlkd.world_model.behaviour import lambda_return

    # H = 2, one env: r = [1, 2], v = [10, 20], discount 0.5, bootstrap v_2 = 40.
    r, v, d, boot = (
        torch.tensor([[1.0], [2.0]]),
        torch.tensor([[10.0], [20.0]]),
        torch.full((2, 1), 0.5),
        torch.tensor([40.0]),
    )
    # lam = 0, one-step TD: R_1 = 2 + 0.5*40 = 22, R_0 = 1 + 0.5*20 = 11.
    torch.testing.assert_close(lambda_return(r, v, d, boot, 0.0), torch.tensor([[11.0], [22.0]]))
    # lam = 1, Monte Carlo + bootstrap: R_1 = 22, R_0 = 1 + 0.5*22 = 12.
    torch.testing.assert_close(lambda_return(r, v, d, boot, 1.0), torch.tensor([[12.0], [22.0]]))
    # lam = 0.5: R_0 = 1 + 0.5 * (0.5*20 + 0.5*22) = 11.5.
    torch.testing.assert_close(lambda_return(r, v, d, boot, 0.5), torch.tensor([[11.5], [22.0]]))
