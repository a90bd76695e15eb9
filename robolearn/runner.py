"""On-policy training loop: collect -> update -> log -> checkpoint.

The runner owns the env, the model, the algorithm and the rollout storage, the run directory
(``config.yaml``, ``metrics.csv``, ``tb/``, ``checkpoints/``), the progress display and the
signals: Ctrl-C finishes the current iteration, saves a checkpoint and returns; a second Ctrl-C
stops at once. A non-finite loss, parameter or observation stops training with
:class:`TrainingDiverged`, leaving the last good checkpoint as it was.

Distributed (``torchrun``, :mod:`robolearn.distributed`): every rank runs this loop on its own envs
(seed ``seed + rank``); the algorithm averages gradients over the ranks, and once per iteration the
ranks exchange their finished episodes, ADR boundary results, elapsed time and stop requests, so
budget and stop decisions are the same everywhere. Only rank 0 writes the run directory, logs and
checkpoints (which hold every rank's RNG streams); ``env_steps`` and steps/s count all ranks.
"""

from __future__ import annotations

import collections
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.algorithms import ALGORITHMS
from robolearn.checkpoint import CHECKPOINT_DIR, LATEST, CheckpointError, load_checkpoint, save_checkpoint
from robolearn.config import RECURRENT_KEYS, Config, dump_config
from robolearn.distributed import Distributed, merge_episode_lists
from robolearn.distributed import resolve_device as _resolve_device
from robolearn.logger import MetricsLogger, ProgressDisplay
from robolearn.models import ActorCritic, RecurrentActorCritic
from robolearn.rollout import TorchEnv, collect_rollout
from robolearn.storage import RolloutStorage


class TrainingDiverged(RuntimeError):
    """Training produced non-finite numbers; the message names the last good checkpoint."""


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    return _resolve_device(device)


def build_model(config: Config, obs_dims: dict[str, int], action_dim: int) -> ActorCritic | RecurrentActorCritic:
    """The actor-critic a config describes (``policy`` keys equal constructor arguments; ``class``
    picks the model: mlp, or lstm | gru as the recurrent model's ``cell``)."""
    kwargs = config.policy.model_dump()
    model_class = kwargs.pop("class")
    if model_class == "mlp":
        return ActorCritic(obs_dims, action_dim, **{k: v for k, v in kwargs.items() if k not in RECURRENT_KEYS})
    return RecurrentActorCritic(obs_dims, action_dim, cell=model_class, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Quiet:
    """The progress stream of ranks other than 0."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class OnPolicyRunner:
    """Trains one policy on one batched env with PPO or A2C (``algorithm.name``); with a
    :class:`~robolearn.distributed.Distributed` context of several ranks, this process is one rank
    of a data-parallel job."""

    def __init__(self, config: Config, run_dir: str | Path, resume: dict[str, Any] | None = None,
                 progress: ProgressDisplay | None = None, dist: Distributed | None = None):
        from robolearn.envs import make_env  # the core looks tasks up by name

        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = dist if dist is not None else Distributed.single(resolve_device(config.device))
        self.device = self.dist.device
        self.seed = config.seed + self.dist.rank  # each rank its own envs and action noise
        seed_everything(self.seed)
        env_config = config.env
        share = self.dist.configure_threads()  # several ranks on one CPU node: split the cores
        if share is not None and env_config.nthread == 0:
            env_config = env_config.model_copy(update={"nthread": share})
        self.env = make_env(env_config, seed=self.seed, randomization=config.randomization)
        self.randomizer = self.env.randomizer
        if self.dist.enabled and self.randomizer is not None:
            self.randomizer.defer_results = True  # rank 0 records every rank's ADR results
        self.torch_env = TorchEnv(self.env, self.device)
        self.obs_dims = {group: layout.size for group, layout in self.env.obs_layout.items()}
        self.action_dim = self.env.single_action_space.shape[0]
        self.model = build_model(config, self.obs_dims, self.action_dim).to(self.device)
        self.algorithm = ALGORITHMS[config.algorithm.name](self.model, device=self.device, distributed=self.dist,
                                                           **config.algorithm.algorithm_kwargs())
        #: envs over all ranks: the samples of an iteration are num_steps * total_envs
        self.total_envs = self.dist.sum_int(self.env.num_envs)
        self.num_steps = config.algorithm.num_steps
        state_shape = self.model.state_shape if self.model.is_recurrent else None
        self.storage = RolloutStorage(self.num_steps, self.env.num_envs, self.obs_dims, self.action_dim, self.device,
                                      state_shape=state_shape)
        self.policy_state: torch.Tensor | None = None  # a recurrent policy's hidden state, carried across rollouts
        if not self.dist.is_main:
            progress = ProgressDisplay(config.runner.log_interval, stream=_Quiet())
        self.progress = progress or ProgressDisplay(config.runner.log_interval)

        self.iteration = 0
        self.env_steps = 0
        self.wall_s = 0.0
        window = max(100, self.total_envs)
        self.episodes: dict[str, collections.deque] = {key: collections.deque(maxlen=window)
                                                        for key in self.env.episode_metrics}
        self.last_checkpoint: Path | None = None
        if resume is not None:
            self._restore(resume)
        # every rank starts from rank 0's parameters, normaliser statistics and ADR ranges
        self.dist.broadcast_module(self.model)
        self._broadcast_adr_ranges()

        self.logger: MetricsLogger | None = None
        if self.dist.is_main:  # the other ranks write nothing
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_config(config, self.run_dir / "config.yaml")
            self.logger = MetricsLogger(self.run_dir)
        self._stop_requested = False  # this process got Ctrl-C
        self._stop_agreed = False  # some rank got Ctrl-C (known to all ranks after an iteration)
        self._sigint_at = 0.0

    # ------------------------------------------------------------------ budget
    def _fraction_done(self) -> float:
        r = self.config.runner
        fractions = [0.0]
        if r.max_iterations:
            fractions.append(self.iteration / r.max_iterations)
        if r.max_env_steps:
            fractions.append(self.env_steps / r.max_env_steps)
        if r.max_seconds:
            fractions.append(self.wall_s / r.max_seconds)
        return min(max(fractions), 1.0)

    def _budget_reached(self) -> bool:
        r = self.config.runner
        return bool((r.max_iterations and self.iteration >= r.max_iterations)
                    or (r.max_env_steps and self.env_steps >= r.max_env_steps)
                    or (r.max_seconds and self.wall_s >= r.max_seconds))

    # ------------------------------------------------------------------ main loop
    def learn(self) -> Path | None:
        """Train until a budget key is reached (or Ctrl-C); returns the final checkpoint's path."""
        r = self.config.runner
        if not (r.max_iterations or r.max_env_steps or r.max_seconds):
            raise ValueError("no training budget: set runner.max_iterations, runner.max_env_steps or runner.max_seconds")
        obs = self.torch_env.reset()
        if self.model.is_recurrent:
            self.policy_state = self.model.initial_state(self.env.num_envs)
        if self.iteration == 0:
            self.algorithm.update_normalizers(obs)  # a first scale for the observations (all ranks')
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        ranks = (f" x {self.dist.world_size} ranks ({self.dist.backend}, {self.total_envs} envs in all)"
                 if self.dist.enabled else "")
        self.progress.message(f"training {self.config.env.task} on {self.device} with {self.env.num_envs} envs"
                              f"{ranks} -> {self.run_dir}")
        try:
            while not self._budget_reached() and not self._should_stop():
                start = time.perf_counter()
                obs, episodes = self._collect(obs)
                collect_s = time.perf_counter() - start
                try:
                    stats = self.algorithm.update(self.storage)
                except FloatingPointError as err:
                    raise TrainingDiverged(self._diverged_message(str(err))) from None
                self.iteration += 1
                steps = self.num_steps * self.total_envs
                self.env_steps += steps
                episodes, elapsed, collect_s = self._synchronize(episodes, time.perf_counter() - start, collect_s)
                self.wall_s += elapsed
                if self.dist.is_main:
                    row = self._log_row(stats, episodes, steps / elapsed, collect_s / elapsed)
                    adr = f"ADR entropy {row['adr/entropy']:.2f}" if "adr/entropy" in row else ""
                    self.progress.update(row, self._fraction_done(), adr)
                if r.sync_check_interval and self.iteration % r.sync_check_interval == 0:
                    self.dist.check_identical(self.model, self.iteration, self.algorithm.lr_tensor)
                if self.iteration % r.checkpoint_interval == 0:
                    self.save()
        finally:
            signal.signal(signal.SIGINT, previous)
            if self.logger is not None:
                self.logger.close()
        if self._should_stop():
            self.progress.message("interrupted: saving a checkpoint")
        path = self.save()
        self.progress.message(f"done: {self.iteration} iterations, {self.env_steps:,} env steps in "
                              f"{self.wall_s:.0f} s; checkpoint {path}")
        return path

    def _should_stop(self) -> bool:
        """A Ctrl-C stops every rank after the same iteration: the ranks agree at each iteration's end."""
        return self._stop_agreed if self.dist.enabled else self._stop_requested

    def _on_sigint(self, signum, frame) -> None:
        now = time.monotonic()
        if self._stop_requested:
            if self.dist.enabled and now - self._sigint_at < 2.0:
                return  # a launcher (torchrun, a scheduler) may pass one Ctrl-C on more than once
            raise KeyboardInterrupt
        self._stop_requested, self._sigint_at = True, now
        self.progress.message("Ctrl-C: finishing this iteration, then saving (Ctrl-C again to abort)")

    def _synchronize(self, episodes: dict[str, list], elapsed: float,
                     collect_s: float) -> tuple[dict[str, list], float, float]:
        """Once per iteration: gather every rank's finished episodes (for rank 0's log), ADR
        boundary results (rank 0 records them in rank order and broadcasts the ranges), elapsed
        time (the slowest rank's counts) and stop requests. A single process returns its own."""
        if not self.dist.enabled:
            return episodes, elapsed, collect_s
        deferred = self.randomizer is not None and self.randomizer.defer_results and self.randomizer.adr.update
        mine = {"episodes": episodes, "adr": self.randomizer.take_results() if deferred else None,
                "stop": self._stop_requested, "elapsed": elapsed, "collect_s": collect_s}
        parts = self.dist.all_gather_object(mine)
        self._stop_agreed = any(part["stop"] for part in parts)
        if deferred:
            if self.dist.is_main:
                for part in parts:
                    self.randomizer.adr.record(*part["adr"])
            self._broadcast_adr_ranges()
        slowest = max(parts, key=lambda part: part["elapsed"])
        return merge_episode_lists(part["episodes"] for part in parts), slowest["elapsed"], slowest["collect_s"]

    def _broadcast_adr_ranges(self) -> None:
        """Rank 0 owns the ADR ranges: every rank samples from rank 0's."""
        if not self.dist.enabled or self.randomizer is None:
            return
        adr = self.randomizer.adr
        ranges, moves = self.dist.broadcast_object((adr.ranges, adr.moves) if self.dist.is_main else None)
        if not self.dist.is_main:
            adr.ranges = np.array(ranges, np.float64).reshape(-1, 2)
            adr.moves = moves

    def _collect(self, obs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
        """One rollout into the storage; returns the next observation and the finished episodes."""
        obs, self.policy_state, infos = collect_rollout(self.model, self.torch_env, self.storage, obs,
                                                        self.policy_state)
        finished: dict[str, list] = collections.defaultdict(list)
        for info in infos:
            if "episode" in info:
                mask = info["_episode"]
                for key, values in info["episode"].items():
                    finished[key].extend(values[mask].tolist())
        storage = self.storage
        finite = bool(torch.stack([torch.isfinite(b).all() for b in (*storage.obs.values(), storage.rewards)]).all())
        bad = [rank for rank, ok in enumerate(self.dist.all_gather_object(finite)) if not ok]
        if bad:
            where = f" on rank {', '.join(map(str, bad))}" if self.dist.enabled else ""
            raise TrainingDiverged(self._diverged_message(f"the env returned a non-finite observation or reward{where}"))
        return obs, finished

    def _log_row(self, stats: dict[str, float], finished: dict[str, list], steps_per_s: float,
                 collect_share: float) -> dict[str, Any]:
        for key, values in finished.items():
            self.episodes[key].extend(values)
        mean = lambda key: float(np.mean(self.episodes[key])) if self.episodes.get(key) else float("nan")  # noqa: E731
        row: dict[str, Any] = {
            "iteration": self.iteration, "env_steps": self.env_steps, "wall_s": round(self.wall_s, 3),
            "steps_per_s": steps_per_s, "return_mean": mean("return"), "success_rate": mean("success"),
            "episode_len": mean("length"), **stats,
        }
        for key in self.env.episode_metrics:
            if key not in ("return", "length", "success"):
                row[key] = mean(key)
        row["episodes"] = sum(len(v) for k, v in finished.items() if k == "return")
        row["collect_share"] = collect_share
        if self.env.randomizer is not None:
            row.update(self.env.randomizer.adr.metrics())
        self.logger.log(row)
        return row

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_s": self.wall_s,
            "config": self.config.to_dict(),
            "obs_dims": self.obs_dims,
            "action_dim": self.action_dim,
            "world_size": self.dist.world_size,
            "randomization": self.randomizer.state_dict() if self.randomizer is not None else None,
            "rng": self._rng_state(),
        }

    def _rng_state(self) -> dict[str, Any]:
        """This process's random streams (the env's, and the randomizer's sampling and ADR streams)."""
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "env": self.env.np_random.bit_generator.state,
        }
        if self.randomizer is not None:
            rng["randomizer"] = self.randomizer.rng.bit_generator.state
            rng["adr"] = self.randomizer.adr.rng.bit_generator.state
        return rng

    def save(self) -> Path | None:
        """Write ``checkpoints/model_<iteration>.pt`` and ``checkpoints/last.pt`` atomically. With
        several ranks every rank must call it (their RNG streams are gathered into the checkpoint);
        rank 0 writes, and every rank returns (and remembers) the path."""
        rng_ranks = self.dist.all_gather_object(self._rng_state()) if self.dist.enabled else None
        directory = self.run_dir / CHECKPOINT_DIR
        if self.dist.is_main:
            state = self.state()
            if rng_ranks is not None:
                state["rng_ranks"] = rng_ranks
            save_checkpoint(state, directory / f"model_{self.iteration:06d}.pt")
            save_checkpoint(state, directory / LATEST)
        self.last_checkpoint = directory / LATEST
        return self.last_checkpoint

    def _restore(self, state: dict[str, Any]) -> None:
        """Every rank loads the same checkpoint: model, optimiser, lr, counters, ADR state; the
        random streams are this rank's (``rng_ranks[rank]`` of a distributed checkpoint, else the
        checkpoint's own for rank 0, else fresh ones from ``seed + rank`` and the iteration)."""
        self.model.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state.get("env_steps", 0))
        self.wall_s = float(state.get("wall_s", 0.0))
        if state.get("randomization") is not None and self.randomizer is not None:
            try:
                self.randomizer.load_state_dict(state["randomization"])
            except ValueError as err:
                raise CheckpointError(f"{state.get('path', 'checkpoint')}: {err}") from None
            if not self.dist.is_main:  # rank 0 keeps the ADR queues
                self.randomizer.adr.queues = [[[], []] for _ in self.randomizer.adr.params]
        rank, ranks = self.dist.rank, state.get("rng_ranks") or []
        rng = ranks[rank] if rank < len(ranks) else state.get("rng", {}) if rank == 0 else None
        if rng is None:  # a rank this checkpoint has no streams for
            fresh = self.seed + 1_000_003 * self.iteration
            seed_everything(fresh)
            self.env.np_random = np.random.default_rng(fresh)
            if self.randomizer is not None:
                self.randomizer.seed(fresh)
        else:
            self._set_rng_state(rng)
        self.last_checkpoint = Path(state["path"]) if "path" in state else None

    def _set_rng_state(self, rng: dict[str, Any]) -> None:
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if "numpy" in rng:
            np.random.set_state(rng["numpy"])
        if "python" in rng:
            random.setstate(rng["python"])
        if "env" in rng:
            self.env.np_random.bit_generator.state = rng["env"]
        if self.randomizer is not None:
            if "randomizer" in rng:
                self.randomizer.rng.bit_generator.state = rng["randomizer"]
            if "adr" in rng:
                self.randomizer.adr.rng.bit_generator.state = rng["adr"]

    def _diverged_message(self, what: str) -> str:
        where = f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint was written yet"
        return f"training stopped at iteration {self.iteration + 1}: {what}; {where}"

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: Config | None = None, run_dir: str | Path | None = None,
                        progress: ProgressDisplay | None = None, dist: Distributed | None = None) -> "OnPolicyRunner":
        """Resume: the checkpoint's config (or ``config``), its run directory unless given. With
        several ranks, rank 0 reads the checkpoint and broadcasts it (no shared file system needed)."""
        from robolearn.config import validate_config

        if dist is not None and dist.enabled:
            payload: Any = None
            if dist.is_main:
                try:
                    payload = load_checkpoint(path)
                except CheckpointError as err:
                    payload = err
            payload = dist.broadcast_object(payload)
            if isinstance(payload, Exception):
                raise payload
            state = payload
        else:
            state = load_checkpoint(path)
        ckpt_path = Path(state["path"])
        config = config or validate_config(state["config"], source=str(ckpt_path))
        run_dir = Path(run_dir) if run_dir else ckpt_path.parent.parent
        return cls(config, run_dir, resume=state, progress=progress, dist=dist)
