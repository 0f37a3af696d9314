"""Data-parallel training on torch.distributed (gloo, 2 CPU processes): the update equals one
process's on the same data, statistics agree on every rank, rank 0 alone writes, and a killed rank
ends the job with an error line after which the run resumes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rlkd.agents.ppo import PPO, PPOConfig

from rlkd.api import check_world
from rlkd.cli import main
from rlkd.core import distributed
from rlkd.core.guard import UpdateGuard
from rlkd.core.run import Run
from rlkd.errors import UserError
from rlkd.nn.stats import RunningMeanStd, chan_merge
from tests.helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]
T, E = 8, 3  # rollout steps, envs per rank (two ranks: 6 envs in all)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    if size > 1:
        dist.init_process_group("gloo", rank=rank, world_size=size)


def _leave(size: int) -> None:
    if size > 1:  # gloo's threads abort the process if it exits still in the group
        dist.barrier()
        dist.destroy_process_group()


def _spawn(fn, out: Path) -> None:
    mp.spawn(fn, args=(2, _free_port(), str(out)), nprocs=2, join=True)


# ---------------------------------------------------------------------------------------- the update
def _job_data() -> dict[str, torch.Tensor]:
    """One rollout of the whole job: (T, 2E, ...) for 2 ranks x E envs, or 1 rank x 2E envs."""
    g = torch.Generator().manual_seed(0)
    n = 2 * E
    return {
        "obs": torch.randn(T, n, 4, generator=g),
        "next_obs": torch.randn(T, n, 4, generator=g),
        "actions": torch.randint(0, 2, (T, n), generator=g),
        "logp_noise": 0.3 * torch.randn(T, n, generator=g),
        "v_ext": torch.randn(T, n, generator=g),
        "v_int": torch.randn(T, n, generator=g),
        "adv": 3.0 * torch.randn(T, n, generator=g) + 1.0,
        "ret_ext": torch.randn(T, n, generator=g),
        "ret_int": torch.randn(T, n, generator=g),
    }


def _ppo_update(rank: int, size: int, port: int, out: str) -> None:
    """Rank ``rank`` of ``size`` takes its envs' columns of the job's rollout and runs one PPO update."""
    _join(rank, size, port)
    num_envs = 2 * E // size
    cfg = PPOConfig(env_id="CartPole-v1", intrinsic="rnd", num_envs=num_envs, num_steps=T, num_minibatches=4,
                    update_epochs=3, hidden_size=16, seed=5)  # fmt: skip
    torch.manual_seed(cfg.seed)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    algo = PPO(cfg, obs_space, gym.spaces.Discrete(2))
    cols = slice(rank * num_envs, (rank + 1) * num_envs)
    data = {k: v[:, cols] for k, v in _job_data().items()}
    algo.buffer.obs.copy_(data["obs"])
    algo.buffer.next_obs.copy_(data["next_obs"])
    algo.buffer.actions.copy_(data["actions"])
    with torch.no_grad():
        logp = algo.agent.evaluate(data["obs"].reshape(-1, 4), data["actions"].reshape(-1))[0]
    logp = logp.reshape(T, num_envs)
    algo.buffer.logprobs.copy_(logp + data["logp_noise"])
    algo.buffer.v_ext.copy_(data["v_ext"])
    algo.buffer.v_int.copy_(data["v_int"])
    logs = algo.learn(data["adv"], data["ret_ext"], data["ret_int"], UpdateGuard("stop"))
    params = {f"agent.{k}": v for k, v in algo.agent.state_dict().items()}
    params |= {f"predictor.{k}": v for k, v in algo.intrinsic.predictor.state_dict().items()}
    torch.save({"params": params, "logs": logs}, Path(out) / f"rank{rank}_of{size}.pt")
    _leave(size)


def test_two_ranks_update_equals_one_process_with_all_envs(tmp_path):
    _ppo_update(0, 1, 0, str(tmp_path))  # one process, 2E envs
    _spawn(_ppo_update, tmp_path)  # two ranks, E envs each
    one = torch.load(tmp_path / "rank0_of1.pt")
    ranks = [torch.load(tmp_path / f"rank{r}_of2.pt") for r in range(2)]
    start = PPO(PPOConfig(env_id="CartPole-v1", intrinsic="rnd", num_envs=2 * E, num_steps=T, hidden_size=16),
                gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))  # fmt: skip
    moved = 0.0
    for name, value in one["params"].items():
        for r in ranks:  # every rank holds the same weights as the one process, to float rounding
            torch.testing.assert_close(r["params"][name], value, rtol=0, atol=1e-6)
        if name.startswith("agent."):
            moved = max(moved, float((value - start.agent.state_dict()[name[6:]]).abs().max()))
    assert moved > 1e-3  # the update did change the weights (the comparison is not of untouched nets)
    for tag in ("losses/policy_loss", "losses/value_loss", "losses/approx_kl", "intrinsic/predictor_loss"):
        assert ranks[0]["logs"][tag] == pytest.approx(one["logs"][tag], abs=1e-5)
        assert ranks[1]["logs"][tag] == ranks[0]["logs"][tag]


def test_local_rows_take_each_ranks_envs():
    """Job row t*N*W + e lives at row t*N + e % N of rank e // N (hand example: N=2, W=2)."""
    from rlkd.agents.ppo_buffer import Batch, RolloutBuffer

    def batch(rank: int) -> Batch:
        world = distributed.World(rank, 2)
        buf = RolloutBuffer(2, 2, (3,), False, (), True, False, world, torch.device("cpu"))
        buf.obs[:] = torch.arange(4.0).reshape(2, 2, 1)  # each sample's row of this rank's batch
        zeros = torch.zeros(2, 2)
        return buf.flatten(zeros, zeros, zeros)

    rows = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])  # t = 0: envs 0..3; t = 1: envs 0..3
    for rank, want in ((0, [0, 1, 2, 3]), (1, [0, 1, 2, 3])):
        assert batch(rank).rows(rows).tolist() == want
    assert batch(1).rows(torch.tensor([7, 2, 4])).tolist() == [3, 0]  # (1, env 3), (0, env 2)
    assert batch(0).rows(torch.tensor([7, 2, 4])).tolist() == [2]  # (1, env 0)
    assert batch(0).job_size == 8
    # An epoch serves every rank each of its samples once, in minibatches of the job's size.
    for rank in (0, 1):
        served = list(batch(rank).minibatches(2, torch.Generator().manual_seed(3)))
        assert [mb.size for mb in served] == [4, 4]
        assert sorted(int(v) for mb in served for v in mb.obs[:, 0]) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------- statistics
def _stats(rank: int, size: int, port: int, out: str) -> None:
    _join(rank, size, port)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(2, 10, 3, generator=g) * 4 + 2 for _ in range(3)]  # 3 updates, 2 ranks x 10
    rms = RunningMeanStd((3,))
    for b in batches:
        rms.update(b[rank] if size > 1 else b.reshape(-1, 3))
    torch.save(rms.state_dict(), Path(out) / f"rms{rank}_of{size}.pt")
    _leave(size)


def test_running_statistics_agree_on_every_rank(tmp_path):
    _stats(0, 1, 0, str(tmp_path))
    _spawn(_stats, tmp_path)
    one = torch.load(tmp_path / "rms0_of1.pt")
    r0, r1 = (torch.load(tmp_path / f"rms{r}_of2.pt") for r in range(2))
    for key in ("mean", "var", "count"):
        assert torch.equal(r0[key], r1[key])  # bit-identical on both ranks
        torch.testing.assert_close(r0[key], one[key], rtol=1e-12, atol=1e-12)
    assert float(one["count"]) == pytest.approx(60 + 1e-4)


def test_merged_moments_by_hand():
    """Chan's combination of (n, mean, var) pairs equals the moments of the pooled data, on tensors
    (how merge_moments combines ranks), numpy arrays and floats (RunningMeanStd on the CPU)."""
    a, b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([10.0, 20.0], dtype=torch.float64)
    pooled = torch.cat([a, b])
    m, v = (6.0 + 30.0) / 5, float(pooled.var(unbiased=False))
    moments = [(3.0, a.mean(), a.var(unbiased=False)), (2.0, b.mean(), b.var(unbiased=False))]
    for cast in (lambda t: t, lambda t: t.numpy(), float):
        args = [cast(x) if isinstance(x, torch.Tensor) else x for p in moments for x in p]
        n, mean, var = chan_merge(*args)
        assert (n, float(mean), float(var)) == pytest.approx((5.0, m, v))
    assert distributed.merge_moments(torch.tensor(3.0), a.mean(), a.var()) == (3.0, a.mean(), a.var())


# ---------------------------------------------------------------------------------------- the job
def _rlkd(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rlkd.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=180, **kw)  # fmt: skip


def test_two_process_run_has_one_writer(tmp_path):
    run_dir = tmp_path / "run"
    proc = _rlkd("train", "--preset", "debug", "--intrinsic", "rnd", "--nproc", "2", "--total-steps", "1024",
                 "--run-dir", str(run_dir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("run folder:") == 1  # rank 0 alone announces (and writes)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    steps = [s for s, _ in read_scalars(run_dir)["charts/SPS"]]
    assert steps == sorted(set(steps)) and steps[-1] == 1024  # 2 ranks x 4 envs x 32 steps per rollout
    assert steps[0] % 256 == 0
    run = Run.open(run_dir)
    assert run.config["nproc"] == 2
    state = run.load_checkpoint()["state"]
    assert len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    returns = state["int_returns_ranks"]  # each rank's envs' running intrinsic returns
    assert [r.shape for r in returns] == [(4,), (4,)] and not torch.equal(returns[0], returns[1])


def _rank_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the ranks among ``parent``'s child processes (read from /proc)."""
    out = {}
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            ppid = int((pid / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (pid / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = [e for e in environ if e.startswith(b"RANK=")]
        if ppid == parent and rank:
            out[int(rank[0][5:])] = int(pid.name)
    return out


def test_killed_rank_ends_the_job_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--preset", "debug", "--nproc", "2", "--total-steps", "200000", "--checkpoint-interval",
            "512", "--run-dir", str(run_dir)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen([sys.executable, "-m", "rlkd.cli", *args], stderr=subprocess.PIPE, text=True,
                           env=env, cwd=ROOT)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not list((run_dir / "checkpoints").glob("step_*.pt")):
            assert time.time() < deadline and job.poll() is None, "no checkpoint was written"
            time.sleep(0.2)
        os.kill(_rank_pids(job.pid)[1], signal.SIGKILL)
        _, err = job.communicate(timeout=60)  # ends instead of hanging
    finally:
        job.kill()
    assert job.returncode == 2
    last = err.strip().splitlines()[-1]
    resume = f"rlkd resume {run_dir} continues from its last checkpoint"
    assert last == f"error: rank 1 of 2 ended with signal SIGKILL; {resume}"
    assert "Traceback" not in err
    kept = Run.open(run_dir).checkpoint_steps()[-1]
    proc = _rlkd("resume", str(run_dir), "--total-steps", str(kept + 1024))
    assert proc.returncode == 0, proc.stderr
    assert f"resuming {run_dir} from step {kept}" in proc.stderr
    assert Run.open(run_dir).checkpoint_steps()[-1] == kept + 1024


# ---------------------------------------------------------------------------------------- errors
def test_world_size_must_match_the_run(monkeypatch):
    from rlkd.agents import ppo

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(0, 2))
    check_world(ppo, PPOConfig(nproc=2))
    with pytest.raises(UserError, match="this run has nproc 3 but torchrun started 2 processes"):
        check_world(ppo, PPOConfig(nproc=3))


def test_nproc_is_refused_for_one_process_agents_and_tune(capsys):
    assert main(["train", "--agent", "dreamer", "--preset", "debug", "--nproc", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --agent dreamer trains in one process; drop --nproc (and torchrun)"
    )
    assert main(["tune", "--preset", "debug", "--nproc", "2", "--trials", "1"]) == 2
    assert "rlkd tune reports each trial's curve from its own process" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- pretraining
@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlkd.world_model.datasets import collect

    return collect("rlkd/AGVWarehouse-SimpleStatic-Pixels-v0", 6, tmp_path_factory.mktemp("d") / "v", seed=0)


def test_dataset_shards_split_the_episode_files(videos):
    from rlkd.world_model.datasets import SequenceDataset

    def prints(d: SequenceDataset) -> list[bytes]:
        return [ep["image"].tobytes()[:4096] + ep["action"].tobytes() for ep in d.episodes]

    whole = SequenceDataset(videos, 2, 2)
    shards = [SequenceDataset(videos, 2, 2, shard=(r, 2)) for r in range(2)]
    assert all(d.episodes for d in shards)  # no rank is left without data
    assert sorted(prints(shards[0]) + prints(shards[1])) == sorted(prints(whole))  # a partition
    assert not set(prints(shards[0])) & set(prints(shards[1]))
    with pytest.raises(UserError, match="has 6 episodes for 7 processes"):
        SequenceDataset(videos, 2, 2, shard=(0, 7))


def test_pretrain_runs_on_two_ranks_with_one_writer(videos, tmp_path):
    run_dir = tmp_path / "pt"
    args = ["--preset", "debug", "--nproc", "2", "--run-dir", str(run_dir), "--torch-threads", "1"]
    proc = _rlkd("pretrain", "--data", str(videos), *args)
    assert proc.returncode == 0, proc.stderr
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    steps = [s for s, _ in read_scalars(run_dir)["losses/image"]]
    assert steps == [5, 10, 15, 20]
    state = Run.open(run_dir).load_checkpoint()["state"]
    assert len(state["data_rng_ranks"]) == 2 and state["data_rng_ranks"][0] != state["data_rng_ranks"][1]
