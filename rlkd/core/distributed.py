"""Data-parallel training on ``torch.distributed``: ranks, collectives and the local launcher.

One training job can span several processes (ranks), on one machine (``rlkd train --nproc N``, which
starts them through PyTorch's own launcher, ``torch.distributed.run``) or on several (``torchrun``
on each machine, c10d rendezvous). Each rank steps its own environments; what must agree is made
to agree here, once, for every agent:

* gradients are summed across ranks before each optimizer step (:func:`all_reduce_`), the anchor
  being the RND reference code's MPI all-reduce and CleanRL's ``ppo_atari_multigpu.py``;
* running statistics (observation normalisation, RND/RDD observation and intrinsic-return
  statistics) merge every rank's batch moments (:func:`merge_moments`), so every rank holds the
  statistics one process would have computed from all the data;
* rank 0 alone writes the run folder; the others learn its path (:func:`share`).

With one process nothing here communicates: every function is then the identity.
Backends: gloo for CPU tensors, NCCL for CUDA tensors (``"cpu:gloo,cuda:nccl"``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from rlkd.core.moments import chan_merge
from rlkd.errors import UserError

T = TypeVar("T")
M = TypeVar("M", np.ndarray, Tensor)

TIMEOUT = datetime.timedelta(minutes=10)
"""Longest wait in one collective: a rank that stops answering (its machine gone) ends the job
after this, where a dead process on a live machine ends it at once (its sockets close)."""


class ReplicatedError(UserError):
    """An error rank 0 met and reported; the other ranks stop with it silently (exit 2)."""


class PeerLost(UserError):
    """A collective failed because another rank is gone (exit 3, so the launcher names the rank
    that failed first rather than this one)."""


@contextlib.contextmanager
def _collective() -> Iterator[None]:
    # A dead peer surfaces as gloo's/NCCL's RuntimeError (connection reset, timeout): one line.
    try:
        yield
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # gloo's source location off
        raise PeerLost(f"lost contact with another rank ({reason[:160]})") from None


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` ranks, and its rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run folder and prints progress."""
        return self.rank == 0


_ALONE = World()


def launched() -> bool:
    """Whether this process was started by torchrun / ``torch.distributed.run`` with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """This process's place in the job (rank 0 of 1 outside a distributed job)."""
    if not (dist.is_available() and dist.is_initialized()):
        return _ALONE  # called at every env step by the statistics: no new object each time
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init() -> World:
    """Join the job torchrun started (environment variables ``RANK``, ``WORLD_SIZE``, ``MASTER_*``)."""
    if launched() and not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=TIMEOUT)
    return world()


def close() -> None:
    """Leave the job (a no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device(name: str) -> torch.device:
    """The torch device of this rank: ``cuda`` means the rank's own GPU (``cuda:LOCAL_RANK``)."""
    if name == "cuda" and world().size > 1:
        return torch.device("cuda", world().local_rank)
    return torch.device(name)


# ---------------------------------------------------------------------------------------- collectives
def all_reduce_(tensors: Sequence[Tensor]) -> None:
    """Sum each tensor over the ranks, in place, in one collective (flattened into one buffer)."""
    if world().size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    with _collective():
        dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def average_(tensors: Sequence[Tensor]) -> None:
    """Mean of each tensor over the ranks, in place (one collective): gradients of per-rank mean
    losses become those of the mean over the whole job's batch."""
    all_reduce_(tensors)
    if world().size > 1:
        for t in tensors:
            t.div_(world().size)


def merge_moments(count: M, mean: M, var: M) -> tuple[M, M, M]:
    """Count, mean and (biased) variance of the union of every rank's batch.

    Each rank gives its own batch's moments (tensors, or numpy arrays of CPU statistics); the
    result, identical on every rank and of the same type, is what one process would compute from the
    concatenated batches (up to float rounding): Chan et al.'s parallel combination, in rank order.
    """
    if world().size == 1:
        return count, mean, var
    as_numpy = not isinstance(mean, Tensor)  # numpy arrays or scalars
    ts = [torch.as_tensor(np.asarray(v)) if as_numpy else v for v in (count, mean, var)]
    packed = torch.cat([t.reshape(-1) for t in ts]).to(ts[1].dtype)
    parts = [torch.empty_like(packed) for _ in range(world().size)]
    with _collective():
        dist.all_gather(parts, packed)
    size = ts[1].numel()
    n, m, v = parts[0][0], parts[0][1 : 1 + size], parts[0][1 + size :]
    for p in parts[1:]:
        n, m, v = chan_merge(n, m, v, p[0], p[1 : 1 + size], p[1 + size :])
    out = n.reshape(ts[0].shape), m.view_as(ts[1]), v.view_as(ts[2])
    return tuple(t.numpy() for t in out) if as_numpy else out  # type: ignore[return-value]


def job_sums(params: Sequence[Tensor], terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """Sum the gradients of ``params`` and the loss ``terms`` (each rank's sums over its rows of a
    minibatch) over the ranks, in one collective; returns the terms as the whole job's (detached)."""
    if world().size == 1:
        return {k: v.detach() for k, v in terms.items()}
    for p in params:
        if p.grad is None:  # a rank whose rows missed a head still sends its (zero) share
            p.grad = torch.zeros_like(p)
    values = torch.stack([v.detach().float() for v in terms.values()])
    all_reduce_([*(p.grad for p in params), values])
    return dict(zip(terms, values.unbind(), strict=True))


def gather(value: T) -> list[T]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    if world().size == 1:
        return [value]
    out: list[Any] = [None] * world().size
    with _collective():
        dist.all_gather_object(out, value)
    return out


def broadcast(value: T | None) -> T:
    """Rank 0's ``value`` on every rank."""
    if world().size == 1:
        return value  # type: ignore[return-value]
    box = [value]
    with _collective():
        dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def broadcast_module_(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (equal starting weights)."""
    if world().size == 1:
        return
    with torch.no_grad(), _collective():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def share(make: Callable[[], T]) -> T:
    """Run ``make`` on rank 0 only and give its result to every rank.

    A :class:`UserError` rank 0 meets (a run folder that exists, a checkpoint that does not fit)
    is raised on every rank: rank 0's is printed, the others stop quietly with the same exit code.
    """
    result: Any = None
    error = ""
    if world().main:
        try:
            result = make()
        except UserError as exc:
            error = str(exc)
            if world().size == 1:
                raise
            broadcast(("error", error))
            raise
    shared = broadcast(("ok", result))
    if shared[0] == "error":
        raise ReplicatedError(shared[1])
    return shared[1]


# ---------------------------------------------------------------------------------------- launcher
def launch(nproc: int, argv: Sequence[str], what: str) -> None:
    """Run ``python -m rlkd.cli ARGV`` as ``nproc`` ranks on this machine (``torch.distributed.run``).

    A rank that fails (an error line of its own, a crash, a kill) ends the job: the launcher stops
    the other ranks and this raises one :class:`UserError` naming the rank and how it ended.

    Args:
        nproc: Processes to start.
        argv: The ``rlkd`` command line each rank runs.
        what: How to refer to the job in the error (e.g. the run folder and how to resume it).
    """
    import logging

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The launcher's own log lines (one per stopped rank) would bury the failed rank's error line.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # One intra-op thread per rank unless the user says otherwise (torchrun's default, which it
    # otherwise announces in a warning); --torch-threads still sets each rank's count.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = torchrun.parse_args(
        ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", "0",
         "--module", "rlkd.cli", *argv]
    )  # fmt: skip
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items(), key=lambda item: (_blame(item[1].exitcode), item[0]))
        how = f"exit code {failure.exitcode}"
        if failure.exitcode < 0:
            how = f"signal {signal.Signals(-failure.exitcode).name}"
        quiet = failure.exitcode == 2  # the rank printed its own error line
        msg = f"rank {rank} of {nproc} ended with {how}; {what}"
        raise UserError(msg if not quiet else f"{msg} (its error line is above)") from None
    finally:
        sys.stderr.flush()


def _blame(exitcode: int) -> int:
    """Which failed rank to name first: killed or crashed, then its own error (2), then ranks that
    lost a peer (3), then those the launcher stopped (SIGTERM)."""
    if exitcode == -signal.SIGTERM:
        return 3
    if exitcode == 3:
        return 2
    return 0 if exitcode < 0 else 1
