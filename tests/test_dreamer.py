"""DreamerV2: gradient paths, slow critic, discounts, encoders, shapes, GRU cell, env checks (fast, CPU)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rlkd.agents import dreamer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlkd.cli import main
from rlkd.world_model.behaviour import imagine, imagined_discount
from rlkd.world_model.codecs import (
    BetaVAEEncoder,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    preprocess,
)
from rlkd.world_model.model import sum_squared_error
from rlkd.world_model.rssm import GRUCell

SMALL = {"deter": 16, "stoch": 4, "hidden": 16, "units": 16, "cnn_depth": 4, "mlp_layers": 2,
         "imag_horizon": 4, "batch_size": 2, "batch_length": 5}  # fmt: skip


def small_cfg(**kw: object) -> dreamer.DreamerConfig:
    cfg = dataclasses.replace(dreamer.DreamerConfig(), **{**SMALL, **kw})
    cfg.validate()
    return cfg


def batch(obs_shape: tuple[int, ...], action_dim: int = 2, b: int = 2, t: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if len(obs_shape) == 3:
        obs = torch.randint(0, 255, (b, t, *obs_shape), dtype=torch.uint8, generator=gen)
    else:
        obs = torch.randn(b, t, *obs_shape, generator=gen)
    first = torch.zeros(b, t, dtype=torch.bool)
    first[:, 0] = True
    return {"obs": obs, "action": torch.rand(b, t, action_dim, generator=gen) * 2 - 1,
            "reward": torch.randn(b, t, generator=gen), "is_first": first,
            "is_terminal": torch.zeros(b, t, dtype=torch.bool)}  # fmt: skip


def posterior(agent: dreamer.Agent, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    _, post, _ = agent.wm.loss(data)
    return {k: v.reshape(-1, v.shape[-1]) for k, v in post.items()}


# ----------------------------------------------------------------------------- gradient paths


def test_actor_gradients_reach_the_actor_only_and_flow_through_the_dynamics() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(actor_entropy=0.0)
    agent = dreamer.Agent(cfg, (3,), 2)
    data = batch((3,))
    start = posterior(agent, data)
    losses, _ = agent.behaviour.losses(agent.wm, start, data["is_terminal"].reshape(-1))
    agent.zero_grad(set_to_none=True)
    losses["actor"].backward()
    actor_grads = [p.grad for p in agent.behaviour.actor.parameters()]
    assert all(g is not None for g in actor_grads) and sum(g.abs().sum() for g in actor_grads) > 0
    # The critic and the slow critic get nothing from the actor loss.
    assert all(p.grad is None for p in agent.behaviour.critic.parameters())
    assert all(p.grad is None for p in agent.behaviour.slow_critic.parameters())
    # Without the entropy term the actor can only improve the return through the imagined
    # dynamics: cut the actions out of the RSSM and its gradient vanishes.
    with torch.no_grad():
        agent.wm.rssm.img_in[0].weight[:, cfg.stoch :] = 0.0
    agent.zero_grad(set_to_none=True)
    losses, _ = agent.behaviour.losses(agent.wm, start, data["is_terminal"].reshape(-1))
    losses["actor"].backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in agent.behaviour.actor.parameters())


def test_world_model_loss_reaches_no_actor_or_critic_parameter() -> None:
    torch.manual_seed(0)
    agent = dreamer.Agent(small_cfg(), (64, 64, 3), 2)
    losses, _, _ = agent.wm.loss(batch((64, 64, 3)))
    sum(losses.values()).backward()
    assert all(p.grad is None for p in agent.behaviour.parameters())
    assert agent.wm.encoder.convs[0].weight.grad.abs().sum() > 0


def test_update_changes_the_world_model_actor_and_critic_but_not_the_slow_critic() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(slow_target_update=3)
    agent = dreamer.Agent(cfg, (3,), 2)
    opts = dreamer.build_optimizers(agent, cfg)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    losses, metrics = dreamer.update(agent, opts, batch((3,)), 0.0)
    after = agent.state_dict()
    for prefix in ("wm.encoder.", "wm.rssm.", "wm.reward.", "behaviour.actor.", "behaviour.critic."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("behaviour.slow_critic."))
    assert set(losses) == {"image", "reward", "kl", "continue", "actor", "critic"}
    for key in ("grad_norm_model", "grad_norm_actor", "grad_norm_critic", "reward_mse", "reward_var",
                "actor_entropy", "action_std", "imag_return", "imag_value", "critic_target", "image_nll"):
        assert torch.isfinite(metrics[key]), key


def test_slow_critic_makes_the_targets_and_is_copied_every_k_updates() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(slow_target_update=3)
    agent = dreamer.Agent(cfg, (3,), 2)
    beh = agent.behaviour
    data = batch((3,))
    start = posterior(agent, data)
    term = data["is_terminal"].reshape(-1)

    def targets() -> torch.Tensor:
        torch.manual_seed(1)
        return beh.losses(agent.wm, start, term)[1]["critic_target"]

    beh.updates.fill_(1)  # no copy on the next call
    base = targets()
    with torch.no_grad():
        for p in beh.critic.parameters():
            p.add_(1.0)
    beh.updates.fill_(1)
    assert torch.equal(targets(), base)  # the critic itself does not enter the targets
    with torch.no_grad():
        for p in beh.slow_critic.parameters():
            p.add_(1.0)
    beh.updates.fill_(1)
    assert not torch.equal(targets(), base)  # the slow critic does
    # Copied on updates 0, 3, 6, ...: after call k (0-based) the slow critic equals the critic
    # of the last multiple of 3 up to k.
    beh.updates.zero_()
    for k in range(7):
        with torch.no_grad():
            for p in beh.critic.parameters():
                p.add_(0.5)
        snapshot = [p.clone() for p in beh.critic.parameters()]
        beh.losses(agent.wm, start, term)
        copied = all(torch.equal(s, c) for s, c in zip(beh.slow_critic.parameters(), snapshot, strict=True))
        assert copied == (k % 3 == 0), k
    assert int(beh.updates) == 7


def test_first_imagined_discount_is_the_replayed_terminal_flag() -> None:
    feat = torch.randn(4, 3, 8)  # (H, N, F)
    cont = torch.nn.Linear(8, 1)
    with torch.no_grad():
        cont.weight.zero_()
        cont.bias.fill_(math.log(9.0))  # sigmoid = 0.9
    disc = imagined_discount(cont, feat, torch.tensor([True, False, True]), 0.99)
    torch.testing.assert_close(disc[0], torch.tensor([0.0, 0.99, 0.0]))
    torch.testing.assert_close(disc[1:], torch.full((3, 3), 0.99 * 0.9))
    no_head = imagined_discount(None, feat, torch.tensor([True, False, True]), 0.99)
    torch.testing.assert_close(no_head, torch.full((4, 3), 0.99))


# ----------------------------------------------------------------------------- networks


def test_dreamer_builds_the_plain_encoder_and_diswm_the_beta_vae() -> None:
    plain = dreamer.Agent(small_cfg(), (64, 64, 3), 2, beta_vae=False)
    assert isinstance(plain.wm.encoder, ConvEncoder) and isinstance(plain.wm.decoder, ConvDecoder)
    vae = dreamer.Agent(small_cfg(agent="diswm", pretrained="x"), (64, 64, 3), 2, beta_vae=True)
    assert isinstance(vae.wm.encoder, BetaVAEEncoder)
    vector = dreamer.Agent(small_cfg(), (5,), 2)
    assert isinstance(vector.wm.encoder, MLPEncoder) and isinstance(vector.wm.decoder, MLPDecoder)
    # build_agent picks by mode: dreamer -> plain, diswm/naive -> beta-VAE (needs a teacher run).
    agent, teacher = dreamer.build_agent(small_cfg(), (64, 64, 3), 2, resuming=False)
    assert teacher is None and isinstance(agent.wm.encoder, ConvEncoder)


@pytest.mark.parametrize("obs_shape", [(64, 64, 3), (5,)])
def test_world_model_shapes(obs_shape: tuple[int, ...]) -> None:
    cfg = small_cfg()
    agent = dreamer.Agent(cfg, obs_shape, 2)
    data = batch(obs_shape)
    x = agent.wm.encode(preprocess(data["obs"]))[0]
    embed = 32 * cfg.cnn_depth if len(obs_shape) == 3 else cfg.units
    assert x.shape == (2, 5, embed)
    losses, post, metrics = agent.wm.loss(data)
    assert set(losses) == {"image", "reward", "kl", "continue"} and losses["image"].shape == ()
    assert post["deter"].shape == (2, 5, cfg.deter) and post["stoch"].shape == (2, 5, cfg.stoch)
    assert metrics["recon"].shape == (2, 5, *obs_shape)
    start = {k: v.reshape(-1, v.shape[-1]) for k, v in post.items()}
    feat, ent, std = imagine(agent.wm.rssm, agent.behaviour.actor, start, cfg.imag_horizon)
    assert feat.shape == (cfg.imag_horizon, 10, cfg.deter + cfg.stoch)
    assert ent.shape == (cfg.imag_horizon - 1, 10) and std.shape == (cfg.imag_horizon - 1, 10, 2)


def test_conv_encoder_and_decoder_follow_dreamerv2_sizes() -> None:
    enc = ConvEncoder(depth=2)
    assert enc(torch.zeros(3, 64, 64, 3)).shape == (3, 64)  # (8 d, 2, 2) flattened
    dec = ConvDecoder(feat_size=7, depth=2)
    assert [m.kernel_size[0] for m in dec.deconvs if isinstance(m, torch.nn.ConvTranspose2d)] == [5, 5, 6, 6]
    assert dec(torch.zeros(3, 7)).shape == (3, 64, 64, 3)


def test_layer_norm_gru_matches_its_definition() -> None:
    torch.manual_seed(0)
    cell = GRUCell(3, 4, norm=True)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    parts = cell.layer(torch.cat([x, h], -1))
    mu, var = parts.mean(-1, keepdim=True), parts.var(-1, unbiased=False, keepdim=True)
    normed = (parts - mu) / torch.sqrt(var + 1e-5) * cell.norm.weight + cell.norm.bias
    reset, cand, update = normed[:, :4], normed[:, 4:8], normed[:, 8:]
    cand = torch.tanh(torch.sigmoid(reset) * cand)
    update = torch.sigmoid(update - 1.0)
    want = update * cand + (1 - update) * h
    torch.testing.assert_close(cell(x, h), want)
    plain = GRUCell(3, 4, norm=False)
    assert plain.norm is None and plain(x, h).shape == (2, 4)


def test_sum_squared_error_value_and_gradient() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    loss = sum_squared_error(pred, target)
    assert loss.item() == pytest.approx(1.0 + 0.0 + 4.0 + 4.0)
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[2.0, 0.0], [4.0, -4.0]]))


# ----------------------------------------------------------------------------- env checks


def test_actions_are_rescaled_to_the_env_bounds() -> None:
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    out = dreamer.to_env_action(np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], np.float32), low, high)
    np.testing.assert_allclose(out, [[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0]])


@pytest.mark.parametrize(
    ("env", "message"),
    [("CartPole-v1", "continuous Box(A,) actions"),
     ("MontezumaRevenge-v5", "Box(shape=(4, 84, 84), uint8, bounds [0, 255])")],
)
def test_unsupported_spaces_are_one_error_line(
    env: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", env, "--total-steps", "60",
            "--run-dir", str(tmp_path / "r"), "--torch-threads", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and message in err and env in err
    assert not (tmp_path / "r").exists()  # a start that failed leaves no run folder


def test_checkpoint_records_what_acting_needs(tmp_path: Path) -> None:
    from rlkd.core.run import Run

    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", "Pendulum-v1",
            "--total-steps", "60", "--run-dir", str(tmp_path / "p"), "--env-backend", "gymnasium",
            "--torch-threads", "1"]  # fmt: skip
    assert main(argv) == 0
    run = Run.open(tmp_path / "p")
    state = run.load_checkpoint()["state"]
    assert state["obs_shape"] == [3] and state["beta_vae"] is False
    torch.testing.assert_close(state["action_low"], torch.tensor([-2.0]))
    policy = dreamer.load_policy(run, run.load_checkpoint(), "cpu")
    # Sampled actions of the untrained actor span the env's [-2, 2], not the actor's [-1, 1].
    act = policy.act(np.zeros((64, 3), np.float32), np.ones(64, bool), deterministic=False)
    assert act.shape == (64, 1) and np.all(np.abs(act) <= 2.0) and np.abs(act).max() > 1.0


def test_debug_preset_trains_on_the_default_env_and_logs_the_diagnostics(tmp_path: Path) -> None:
    run_dir = tmp_path / "d"
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--run-dir", str(run_dir),
            "--env-backend", "gymnasium", "--torch-threads", "1"]  # fmt: skip
    assert main(argv) == 0
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("behaviour/actor_entropy", "behaviour/action_std", "behaviour/imag_return",
                "behaviour/imag_value", "behaviour/critic_target", "behaviour/grad_norm_actor",
                "behaviour/grad_norm_critic", "world_model/reward_mse", "world_model/reward_var",
                "world_model/image_nll", "world_model/kl_value", "world_model/grad_norm_model",
                "losses/image", "losses/reward", "losses/kl", "losses/actor", "losses/critic"):  # fmt: skip
        assert tag in tags, tag
    # The reward loss is the official reward_scale (2) times half the squared error.
    mse = [e.value for e in acc.Scalars("world_model/reward_mse")]
    loss = [e.value for e in acc.Scalars("losses/reward")]
    assert loss == pytest.approx(mse, rel=1e-5)


def test_beta_vae_uses_the_official_kaiming_init_and_dreamerv2_parts_torch_defaults() -> None:
    torch.manual_seed(0)
    enc = BetaVAEEncoder(z_dim=20, depth=32)
    first = enc.convs[0]  # fan-in 3 * 4 * 4 = 48
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 48), rel=0.1)
    assert first.bias.abs().max() == 0 and enc.head.bias.abs().max() == 0
    # DreamerV2's conv encoder keeps PyTorch's default: uniform in +-1/sqrt(fan_in), biases nonzero.
    plain = ConvEncoder(depth=32).convs[0]
    assert plain.weight.abs().max() <= 1 / math.sqrt(48) and plain.bias.abs().max() > 0


def test_checkpoint_of_other_networks_is_one_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch as th

    from rlkd.core.run import Run

    run_dir = tmp_path / "d"
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", "Pendulum-v1",
            "--total-steps", "60", "--run-dir", str(run_dir), "--env-backend", "gymnasium",
            "--torch-threads", "1"]  # fmt: skip
    assert main(argv) == 0
    path = Run.open(run_dir).checkpoint_path("latest")
    payload = th.load(path, weights_only=True)
    # As a checkpoint of the old Dreamer: torch.nn.GRUCell parameter names.
    agent = payload["state"]["agent"]
    agent["wm.rssm.cell.weight_ih"] = agent.pop("wm.rssm.cell.layer.weight")
    th.save(payload, path)
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "different Dreamer networks" in err
