"""Offline video datasets: per-episode ``.npz`` files, a manifest, a validated sequence loader.

A dataset folder holds one compressed ``episode_<n>.npz`` per episode plus ``manifest.json``::

    image        uint8   (T, 64, 64, 3)   observation t
    action       float32 (T, A)           action that led to observation t (zeros at t = 0)
    reward       float32 (T,)             reward received on arriving at observation t
    is_first     bool    (T,)             True at t = 0
    is_terminal  bool    (T,)             True where the episode terminated (not truncated)

This is the dreamer-torch episode layout the official DisWM code pretrains on.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.core.paths import make_dir
from rlkd.envs.wrappers import final_observations
from rlkd.errors import UserError, describe_space
from rlkd.world_model.videos import VIDEO_SUFFIXES, video_episodes, video_files, write_video

KEYS = ("image", "action", "reward", "is_first", "is_terminal")
MANIFEST = "manifest.json"


def write_episode(path: Path, episode: dict[str, np.ndarray]) -> None:
    """Write one episode as a compressed ``.npz`` (atomically, via a temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{k: episode[k] for k in KEYS})
    tmp.replace(path)


def validate_episode(
    name: str, data: Any, min_length: int, image_size: int | None = None
) -> dict[str, np.ndarray]:
    """Check keys, dtypes, shapes and length of one loaded episode; raise a :class:`UserError`.

    Args:
        name: File name used in error messages.
        data: Mapping of arrays as returned by ``np.load``.
        min_length: Shortest acceptable episode.
        image_size: Required image side, or None for any square RGB image.
    """
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise UserError(f"dataset file {name} lacks key(s) {', '.join(missing)}; it needs {', '.join(KEYS)}")
    ep = {k: data[k] for k in KEYS}
    img = ep["image"]
    if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3 or img.shape[1] != img.shape[2]:
        raise UserError(
            f"dataset file {name}: 'image' must be uint8 (T, H, H, 3), got {img.dtype} {tuple(img.shape)}"
        )
    if image_size is not None and img.shape[1] != image_size:
        raise UserError(
            f"dataset file {name}: images are {img.shape[1]}x{img.shape[2]}, "
            f"expected {image_size}x{image_size}"
        )
    steps = img.shape[0]
    want = {
        "action": (np.float32, 2),
        "reward": (np.float32, 1),
        "is_first": (np.bool_, 1),
        "is_terminal": (np.bool_, 1),
    }
    for key, (dtype, ndim) in want.items():
        arr = ep[key]
        if arr.dtype != dtype or arr.ndim != ndim or arr.shape[0] != steps:
            raise UserError(
                f"dataset file {name}: {key!r} must be {np.dtype(dtype).name} with {ndim} dim(s) and "
                f"length {steps}, got {arr.dtype} {tuple(arr.shape)}"
            )
    if steps < min_length:
        raise UserError(
            f"dataset file {name}: episode has {steps} steps, fewer than the sequence length {min_length}"
        )
    return ep


def load_episode(path: Path, min_length: int = 1, image_size: int | None = None) -> dict[str, np.ndarray]:
    """Load and validate one episode file; pickled (object) arrays are refused."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return validate_episode(path.name, {k: data[k] for k in data.files}, min_length, image_size)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise UserError(
                f"dataset file {path} holds pickled object arrays; only plain numeric arrays are allowed"
            ) from None
        raise UserError(f"dataset file {path} is not a valid .npz: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(
            f"dataset file {path} cannot be read ({type(exc).__name__}); delete or re-collect it"
        ) from None


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a dataset folder; a folder of video files without one gets a manifest
    listing them (``format: videos``); anything else -> UserError with the fix."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        videos = video_files(directory) if directory.is_dir() else []
        if videos:
            return {"format": "videos", "env_id": "", "color_set": "", "episodes": [p.name for p in videos]}
        raise UserError(
            f"{directory} is neither a dataset folder ({MANIFEST}, made by `rlkd collect`) nor a folder "
            f"of video files ({', '.join(VIDEO_SUFFIXES)})"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON; re-collect the dataset") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("episodes"), list):
        raise UserError(f"{path} has no 'episodes' list; re-collect the dataset")
    manifest.setdefault("format", "rlkd-episodes-v1")
    return manifest


class SequenceDataset:
    """Endless iterator of random fixed-length sequence batches from a dataset folder or a folder of
    video files (:mod:`rlkd.world_model.videos`).

    Episodes are validated when the dataset is opened (so a bad file fails before training
    starts), then sampled uniformly over all valid start positions. Valid episodes shorter than
    ``seq_len`` are skipped (counted in ``skipped``); a dataset with none long enough fails.

    Args:
        directory: Dataset folder with ``manifest.json``.
        seq_len: Length T of every sequence.
        batch_size: Sequences B per batch.
        seed: Seed of the sampling generator.
        image_size: Required image side (None: any).
        shard: ``(rank, ranks)`` of a distributed job: this rank reads episodes ``rank, rank +
            ranks, ...`` of the manifest and samples only those (PyTorch's ``DistributedSampler``
            split, by episode file).
        video_episode_length: A folder of videos: frames per episode cut from each file (0: one
            episode per file).
        official_sampler: Draw an episode uniformly, then a start inside it, as the official code
            (``tools.sample_episodes``); False: uniformly over all starts.

    Yields:
        dict of numpy arrays: ``image`` uint8 (B, T, H, H, 3), ``action`` float32 (B, T, A),
        ``reward`` float32 (B, T), ``is_first``/``is_terminal`` bool (B, T). ``is_first`` is
        forced True at each sequence's first step (the RSSM starts from a zero state there).
    """

    def __init__(
        self,
        directory: str | Path,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        image_size: int | None = None,
        shard: tuple[int, int] = (0, 1),
        video_episode_length: int = 0,
        official_sampler: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        self.seq_len, self.batch_size = seq_len, batch_size
        self.rng = np.random.default_rng(seed)
        self.skipped = 0
        """Episodes shorter than ``seq_len`` (valid, but too short to sample a sequence from)."""
        if not (self.directory / MANIFEST).is_file():  # a folder of video files
            self.episodes = self._read_videos(shard, image_size or 64, video_episode_length)
        else:
            self.episodes = self._read_npz(shard, image_size)
        dims = {ep["action"].shape[1] for ep in self.episodes}
        sizes = {ep["image"].shape[1] for ep in self.episodes}
        if len(dims) > 1 or len(sizes) > 1:
            raise UserError(f"dataset {self.directory} mixes action sizes {dims} or image sizes {sizes}")
        self.image_size = sizes.pop()
        lengths = np.array([len(ep["reward"]) for ep in self.episodes])
        self.starts = lengths - seq_len + 1
        if official_sampler:
            # tools.sample_episodes: an episode uniformly, skipped unless total - length >= 1.
            keep = lengths > seq_len
            if not keep.any():
                raise UserError(f"dataset {self.directory}: the official sampler needs an episode longer "
                                f"than the sequence length {seq_len}; lower --batch-length")
            self.probs = keep / keep.sum()
        else:
            self.probs = self.starts / self.starts.sum()

    def _shard(self, entries: list[Any], shard: tuple[int, int], what: str) -> list[Any]:
        """This rank's share of ``entries`` (PyTorch's ``DistributedSampler`` split, by file)."""
        rank, ranks = shard
        if len(entries) < ranks:
            raise UserError(
                f"dataset {self.directory} has {len(entries)} {what} for {ranks} processes; each needs "
                "at least one: add more or use fewer processes"
            )
        return entries[rank::ranks]

    def _read_npz(self, shard: tuple[int, int], image_size: int | None) -> list[dict[str, np.ndarray]]:
        """The manifest's episodes of this rank, validated; too short ones skipped (counted)."""
        episodes, shortest = [], None
        for entry in self._shard(self.manifest["episodes"], shard, "episodes"):
            name = entry["file"] if isinstance(entry, dict) else str(entry)
            path = self.directory / name
            if not path.is_file():
                raise UserError(f"dataset {self.directory}: manifest lists {name} but the file is missing")
            ep = load_episode(path, 1, image_size)
            if len(ep["reward"]) < self.seq_len:
                # Short episodes are normal (e.g. an AGV colliding after a few random steps): skip them,
                # fail only if nothing is left.
                self.skipped += 1
                shortest = shortest or (name, len(ep["reward"]))
                continue
            episodes.append(ep)
        if not episodes:
            if shortest is not None:
                raise UserError(
                    f"dataset {self.directory}: every episode has fewer steps than the sequence length "
                    f"{self.seq_len} (e.g. {shortest[0]}: {shortest[1]} steps); collect longer episodes or "
                    "lower --batch-length"
                )
            raise UserError(f"dataset {self.directory} has no episodes")
        return episodes

    def _read_videos(self, shard: tuple[int, int], size: int, length: int) -> list[dict[str, np.ndarray]]:
        """This rank's video files, decoded and cut into episodes of ``length`` frames."""
        files = self._shard(self.manifest["episodes"], shard, "video files")
        cut = [video_episodes(self.directory / name, size, length, self.seq_len) for name in files]
        return [ep for episodes in cut for ep in episodes]

    def sample(self) -> dict[str, np.ndarray]:
        """One batch (see class docstring)."""
        idx = self.rng.choice(len(self.episodes), size=self.batch_size, p=self.probs)
        out: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
        for i in idx:
            start = int(self.rng.integers(self.starts[i]))
            for k in KEYS:
                out[k].append(self.episodes[i][k][start : start + self.seq_len])
        batch = {k: np.stack(v) for k, v in out.items()}
        batch["is_first"][:, 0] = True
        return batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.sample()


class EpisodeRecorder:
    """Turns vector-env steps into finished per-env episodes (handles SAME_STEP autoreset)."""

    def __init__(self, num_envs: int, action_dim: int) -> None:
        self.action_dim = action_dim
        self.bufs: list[dict[str, list[Any]]] = [self._new() for _ in range(num_envs)]

    @staticmethod
    def _new() -> dict[str, list[Any]]:
        return {k: [] for k in KEYS}

    def start(self, i: int, obs: np.ndarray) -> None:
        """Begin env ``i``'s episode with its reset observation."""
        self.bufs[i] = self._new()
        self._add(i, obs, np.zeros(self.action_dim, np.float32), 0.0, True, False)

    def _add(self, i: int, obs: np.ndarray, act: np.ndarray, rew: float, first: bool, term: bool) -> None:
        b = self.bufs[i]
        b["image"].append(obs)
        b["action"].append(np.asarray(act, np.float32).reshape(self.action_dim))
        b["reward"].append(np.float32(rew))
        b["is_first"].append(first)
        b["is_terminal"].append(term)

    def step(
        self,
        obs: np.ndarray,
        act: np.ndarray,
        rew: np.ndarray,
        term: np.ndarray,
        trunc: np.ndarray,
        info: dict,
    ) -> list[dict[str, np.ndarray]]:
        """Record one vector step; return the episodes that finished (and start the new ones)."""
        done_eps = []
        real_next = final_observations(info, obs)
        for i in range(len(self.bufs)):
            if term[i] or trunc[i]:
                self._add(i, real_next[i], act[i], float(rew[i]), False, bool(term[i]))
                b = self.bufs[i]
                done_eps.append(
                    {
                        "image": np.stack(b["image"]).astype(np.uint8),
                        "action": np.stack(b["action"]).astype(np.float32),
                        "reward": np.asarray(b["reward"], np.float32),
                        "is_first": np.asarray(b["is_first"], bool),
                        "is_terminal": np.asarray(b["is_terminal"], bool),
                    }
                )
                self.start(i, obs[i])
            else:
                self._add(i, obs[i], act[i], float(rew[i]), False, False)
        return done_eps


def _load_policy(policy: str, device: str = "cpu") -> Any:
    """Resolve ``policy`` ("random" or a run folder) to an object with ``act`` (or None = random)."""
    if policy == "random":
        return None
    from rlkd.analysis.evaluate import load_run_policy

    return load_run_policy(Path(policy), "latest", device)[3]


def collect(
    env_id: str, episodes: int, out: Path, policy: str = "random", seed: int = 0, fmt: str = "npz",
    **env_kwargs: Any,
) -> Path:
    """Roll out ``episodes`` episodes and write them (plus ``manifest.json``) to ``out``.

    Args:
        env_id: Pixel environment id (observations uint8 (64, 64, 3)).
        episodes: Number of complete episodes to write.
        out: Dataset folder (created; existing episode files are refused).
        policy: "random" or a run folder whose agent's ``load_policy`` acts.
        seed: Environment and random-policy seed.
        fmt: ``npz`` (episodes with actions and rewards, plus the manifest) or ``mp4`` (one video
            file per episode, frames only: what ``rlkd pretrain --data`` reads as a video folder).
        **env_kwargs: Passed to :func:`rlkd.envs.make_vec` (e.g. ``color_set="train"``).

    Returns:
        The dataset folder.
    """
    from rlkd import envs as rlkd_envs

    if episodes <= 0:
        raise UserError(f"--episodes must be positive, got {episodes}")
    if fmt not in ("npz", "mp4"):
        raise UserError(f"--format must be npz or mp4, got {fmt!r}")
    out = make_dir(Path(out), "--out")
    if (out / MANIFEST).exists() or any(out.glob("episode_*.mp4")):
        raise UserError(f"{out} already holds a dataset; choose an empty --out folder")
    actor = _load_policy(policy)
    env = rlkd_envs.make_vec(env_id, 1, seed, **env_kwargs)
    obs_space = env.single_observation_space
    if getattr(obs_space, "dtype", None) != np.uint8 or len(obs_space.shape) != 3:
        env.close()
        raise UserError(
            f"{env_id} has observations {describe_space(obs_space)}; "
            "collect needs uint8 (H, W, 3) pixel observations"
        )
    act_space = env.single_action_space
    action_dim = int(np.prod(act_space.shape))
    env.action_space.seed(seed)
    recorder = EpisodeRecorder(1, action_dim)
    obs, _ = env.reset(seed=seed)
    recorder.start(0, obs[0])
    first = np.ones(1, bool)
    entries = []
    try:
        while len(entries) < episodes:
            if actor is None:
                act = env.action_space.sample()
            else:
                act = np.asarray(actor.act(obs, first, deterministic=False), dtype=act_space.dtype)
            next_obs, rew, term, trunc, info = env.step(act)
            for ep in recorder.step(
                next_obs, np.asarray(act, np.float32).reshape(1, -1), rew, term, trunc, info
            ):
                name = f"episode_{len(entries):06d}.{fmt}"
                if fmt == "mp4":
                    write_video(out / name, ep["image"])
                else:
                    write_episode(out / name, ep)
                entries.append(
                    {"file": name, "length": len(ep["reward"]), "return": float(ep["reward"].sum())}
                )
            first = np.logical_or(term, trunc)
            obs = next_obs
    finally:
        env.close()
    if fmt == "mp4":  # a folder of videos: no manifest, as any videos a user brings
        return out
    manifest = {
        "format": "rlkd-episodes-v1",
        "env_id": env_id,
        "color_set": env_kwargs.get("color_set", "default"),
        "policy": policy,
        "seed": seed,
        "env_kwargs": {k: v for k, v in env_kwargs.items() if isinstance(v, str | int | float | bool)},
        "image_shape": list(obs_space.shape),
        "action_dim": action_dim,
        "episodes": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def replay_episodes(replay: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """The finished episodes held in a saved :class:`~rlkd.world_model.replay.Replay` state.

    Each env's ring is read oldest step first and cut where ``is_first`` is set. The episode still
    running when the checkpoint was written, and one whose first steps the ring has overwritten,
    are left out: the official ``train_eps`` holds finished episodes only.
    """
    data = {k: v.numpy() for k, v in replay["data"].items()}
    episodes = []
    for i, (ptr, filled) in enumerate(zip(replay["ptr"], replay["filled"], strict=True)):
        cap = data["reward"].shape[1]
        base = 0 if filled < cap else ptr
        order = (base + np.arange(filled)) % cap  # ring order, oldest first
        firsts = np.flatnonzero(data["is_first"][i, order])
        for a, b in itertools.pairwise(firsts):  # the last first opens the running episode
            rows = order[a:b]
            ep = {k: data[k2][i, rows] for k, k2 in zip(KEYS, ("obs", *KEYS[1:]), strict=True)}
            episodes.append(ep)
    return episodes


def collect_from_run(run_dir: Path, out: Path) -> Path:
    """Write the episodes a Dreamer/DisWM run has kept in its replay (newest checkpoint) to ``out``.

    This is the official teacher data (``train_eps``: every episode of a DreamerV2 run in the
    source domain, from the random prefill to competent ones), when the run's replay holds all of
    them (``replay_capacity`` >= the run's steps).
    """
    from rlkd.core.run import Run

    run = Run.open(run_dir)
    payload = run.load_checkpoint("latest")
    replay = payload["state"].get("replay") if isinstance(payload.get("state"), dict) else None
    if payload.get("agent") not in ("dreamer", "diswm") or replay is None:
        raise UserError(
            f"{run_dir} keeps no replay in its checkpoints: --from-run needs a run of `rlkd train "
            "--agent dreamer|diswm` with checkpoint_replay on (the default)"
        )
    episodes = replay_episodes(replay)
    if not episodes or episodes[0]["image"].dtype != np.uint8 or episodes[0]["image"].ndim != 4:
        raise UserError(f"{run_dir}'s replay holds no finished pixel episode; train it longer or on pixels")
    out = make_dir(Path(out), "--out")
    if (out / MANIFEST).exists():
        raise UserError(f"{out} already holds a dataset ({MANIFEST}); choose an empty --out folder")
    entries = []
    for n, ep in enumerate(episodes):
        name = f"episode_{n:06d}.npz"
        write_episode(out / name, validate_episode(name, ep, 1))
        entries.append({"file": name, "length": len(ep["reward"]), "return": float(ep["reward"].sum())})
    config = payload.get("config", {})
    manifest = {
        "format": "rlkd-episodes-v1", "env_id": config.get("env_id", ""),
        "color_set": (config.get("env_kwargs") or {}).get("color_set", "default"),
        "policy": f"replay of {run_dir} at step {payload.get('step')}", "seed": config.get("seed"),
        "image_shape": list(episodes[0]["image"].shape[1:]),
        "action_dim": int(episodes[0]["action"].shape[1]),
        "episodes": entries,
    }  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out
