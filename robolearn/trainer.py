"""On-policy training: collect -> update -> log -> checkpoint, by the :class:`Trainer`.

The trainer owns the env, the policy, the algorithm and the rollout storage, the run directory
(:mod:`robolearn.run_dir`), the progress display and the signals: Ctrl-C or SIGTERM (what SLURM,
Kubernetes and systemd send) finishes the current iteration, saves a checkpoint and returns; a
second one stops at once. A non-finite loss, parameter or observation stops training with
:class:`TrainingDiverged`, leaving the last good checkpoint as it was.

Threads (CPU): rollouts run the policy on ``trainer.rollout_threads`` torch threads (1: its batch
is small, and a second intra-op thread only spin-waits on the core the physics threads need), the
update on ``trainer.update_threads`` (0: half of this process's CPUs). torch's OpenMP threads wait
for each other at every operation's end, so when another process takes a core, a thread that is
descheduled stalls the rest: leaving cores free keeps training going on a busy machine
(``bench/contention.py``).

A checkpoint holds what the next iteration needs (:mod:`robolearn.checkpoint`), every env's simulation and episode
in progress and the next rollout's observation included: a run split by ``--resume`` continues bit for bit (on CPU).

Distributed (``torchrun``, :mod:`robolearn.distributed`): every rank runs this loop on its own envs
(seed ``seed + rank``); the algorithm averages gradients over the ranks, and once per iteration the
ranks exchange their finished episodes, elapsed time and stop requests (so budget and stop
decisions are the same everywhere) and the randomizer its ADR results. Only rank 0 writes the run
directory, logs and checkpoints (which hold every rank's run state); ``env_steps`` and steps/s
count all ranks.
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.algorithms import ALGORITHMS
from robolearn.checkpoint import (CHECKPOINT_DIR, LATEST, CheckpointError, check_resumable, checkpoint_config,
                                  load_checkpoint, load_policy_state, obs_shapes, rng_state, run_layout, save_checkpoint,
                                  seed_everything, set_rng_state, to_numpy)
from robolearn.config import Config
from robolearn.constraints import MIN_EPISODES, ConstraintMultipliers
from robolearn.distributed import (Distributed, cpu_count, merge_episode_lists, resolve_device, resolve_threads,
                                  torch_threads)
from robolearn.envs import make_env
from robolearn.envs.core import finished_episodes
from robolearn.logger import MetricsLogger, ProgressDisplay, QuietStream
from robolearn.models import PolicyAverage, build_policy
from robolearn.rollout import TorchEnv, collect_rollout
from robolearn.run_dir import claim_run_dir, reopen_run_dir
from robolearn.storage import RolloutStorage

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class TrainingDiverged(RuntimeError):
    """Training produced non-finite numbers; the message names the last good checkpoint."""


class Trainer:
    """Trains one policy on one batched env with PPO or A2C (``algorithm.name``); with a
    :class:`~robolearn.distributed.Distributed` context of several ranks, this process is one rank
    of a data-parallel job.

    A fresh run claims ``run_dir`` (refusing one that holds a run; ``unique_run_dir``: take the
    next free ``-2``, ``-3``, ... name instead). ``resume`` (a loaded checkpoint) continues that run
    after checking that the config trains the same task, observations, actions and policy."""

    def __init__(self, config: Config, run_dir: str | Path, resume: dict[str, Any] | None = None,
                 progress: ProgressDisplay | None = None, dist: Distributed | None = None,
                 unique_run_dir: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = dist if dist is not None else Distributed.single(resolve_device(config.device))
        self.device = self.dist.device
        self.seed = config.seed + self.dist.rank  # each rank its own envs and action noise
        seed_everything(self.seed)
        self.env = self._build_env()
        self.torch_env = TorchEnv(self.env, self.device)
        self.obs_dims = {group: layout.size for group, layout in self.env.obs_layout.items()}
        self.obs_shapes = obs_shapes(self.env.obs_layout)
        self.action_dim = self.env.single_action_space.shape[0]
        self.policy = build_policy(config.policy, self.obs_dims, self.action_dim, self.obs_shapes).to(self.device)
        self.algorithm = ALGORITHMS[config.algorithm.name](self.policy, device=self.device, distributed=self.dist,
                                                           **config.algorithm.algorithm_kwargs())
        #: envs over all ranks: the samples of an iteration are num_steps * total_envs
        self.total_envs = self.dist.sum_int(self.env.num_envs)
        self.num_steps = config.trainer.num_steps
        state_shape = self.policy.initial_state(self.env.num_envs).shape
        self.storage = RolloutStorage(self.num_steps, self.env.num_envs, self.obs_dims, self.action_dim,
                                      state_shape, self.device)
        if not self.dist.is_main:
            progress = ProgressDisplay(config.trainer.log_interval, stream=QuietStream())
        self.progress = progress or ProgressDisplay(config.trainer.log_interval)
        self.layout = run_layout(config.env.task, self.env.obs_layout, self.env.action_names, config.policy.class_)

        self.iteration = 0
        self.env_steps = 0
        self.wall_s = 0.0
        window = max(100, self.total_envs)
        self.episodes: dict[str, collections.deque] = {key: collections.deque(maxlen=window)
                                                        for key in self.env.episode_metrics}
        self.constraints = ConstraintMultipliers(config, self.env.reward_weights, tuple(self.env.episode_metrics))
        #: the observation and policy state the next rollout starts from (None: reset the envs)
        self.obs: dict[str, torch.Tensor] | None = None
        self.policy_state: torch.Tensor | None = None
        self.last_checkpoint: Path | None = None
        self.resumed_from: Path | None = None
        if resume is not None:
            check_resumable(resume, config, self.layout)
            self._restore(resume)
        # every rank starts from rank 0's parameters, normaliser statistics and ADR ranges
        self.dist.broadcast_module(self.policy)
        self.average = PolicyAverage.for_run(self.policy, config.trainer.policy_average, resume)  # eval's and export's
        if self.env.randomizer is not None:
            self.env.randomizer.synchronize(self.dist)
        if self.dist.broadcast_object(self._needs_new_run_dir() if self.dist.is_main else None):
            self.resumed_from = None  # a fresh run, or a resumed one continued in another directory
            self.run_dir = self._claim(unique_run_dir)
        self.logger: MetricsLogger | None = None
        self._stop_signal: int | None = None  # this process was asked to stop
        self._stop_agreed = False  # some rank was asked to stop (known to all ranks after an iteration)
        self._signal_at = 0.0

    def _build_env(self):
        """The batched env, and the thread counts: with several ranks on one CPU node each gets its
        share of the cores (torch and physics threads)."""
        env_config = self.config.env
        share = self.dist.configure_threads()
        if share is not None and env_config.nthread == 0:
            env_config = env_config.model_copy(update={"nthread": share})
        settings = self.config.trainer
        self.rollout_threads = resolve_threads(settings.rollout_threads, share or cpu_count())
        self.update_threads = resolve_threads(settings.update_threads, share or cpu_count())
        return make_env(env_config, seed=self.seed, randomization=self.config.randomization)

    # ------------------------------------------------------------------ budget
    def _fraction_done(self) -> float:
        r = self.config.trainer
        fractions = [0.0]
        if r.max_iterations:
            fractions.append(self.iteration / r.max_iterations)
        if r.max_env_steps:
            fractions.append(self.env_steps / r.max_env_steps)
        if r.max_seconds:
            fractions.append(self.wall_s / r.max_seconds)
        return min(max(fractions), 1.0)

    def _budget_reached(self) -> bool:
        r = self.config.trainer
        return bool((r.max_iterations and self.iteration >= r.max_iterations)
                    or (r.max_env_steps and self.env_steps >= r.max_env_steps)
                    or (r.max_seconds and self.wall_s >= r.max_seconds))

    # ------------------------------------------------------------------ main loop
    def learn(self) -> Path | None:
        """Train until a budget key is reached (or a stop signal); returns the final checkpoint."""
        if self._budget_reached():
            self.progress.message(f"nothing to do: the budget is reached at iteration {self.iteration} (raise "
                                  f"trainer.max_iterations, max_env_steps or max_seconds to train on)")
            return self.last_checkpoint
        self._open_logs()
        if self.obs is None:
            self.obs = self.torch_env.reset()
            self.policy_state = self.policy.initial_state(self.env.num_envs)
        if self.iteration == 0:
            self.algorithm.update_normalizers(self.obs)  # a first scale for the observations (all ranks')
        previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNAL_NAMES}
        ranks = (f" x {self.dist.world_size} ranks ({self.dist.backend}, {self.total_envs} envs in all)"
                 if self.dist.enabled else "")
        self.progress.message(f"training {self.config.env.task} on {self.device} with {self.env.num_envs} envs"
                              f"{ranks} -> {self.run_dir}")
        try:
            while not self._budget_reached() and not self._should_stop():
                self._iterate()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.logger is not None:
                self.logger.close()
        if self._should_stop():
            self.progress.message("stopping on request: saving a checkpoint")
        path = self.save()
        self.progress.message(f"done: {self.iteration} iterations, {self.env_steps:,} env steps in "
                              f"{self.wall_s:.0f} s; checkpoint {path}")
        return path

    def _iterate(self) -> None:
        """One iteration: rollout, update, exchange with the other ranks, log, maybe checkpoint."""
        r = self.config.trainer
        start = time.perf_counter()
        with torch_threads(self.rollout_threads):
            episodes = self._collect()
        collect_s = time.perf_counter() - start
        try:
            with torch_threads(self.update_threads):
                stats = self.algorithm.update(self.storage)
        except FloatingPointError as err:
            raise TrainingDiverged(self._diverged_message(str(err))) from None
        if self.average is not None:
            self.average.update(self.policy)
        self.iteration += 1
        steps = self.num_steps * self.total_envs
        self.env_steps += steps
        episodes, elapsed, collect_s = self._synchronize(episodes, time.perf_counter() - start, collect_s)
        if self.env.randomizer is not None:
            self.env.randomizer.synchronize(self.dist)
        for key, values in episodes.items():  # every rank: the same merged episodes, windows and weights
            self.episodes[key].extend(values)
        self.constraints.update(self.episodes)
        self._advance_stages()
        self.wall_s += elapsed
        if self.dist.is_main:
            row = self._log_row(stats, episodes, steps / elapsed, collect_s / elapsed)
            adr = f"ADR entropy {row['adr/entropy']:.2f}" if "adr/entropy" in row else ""
            self.progress.update(row, self._fraction_done(), adr)
        if r.sync_check_interval and self.iteration % r.sync_check_interval == 0:
            self.dist.check_identical(self.policy, self.iteration, self.algorithm.lr_tensor)
        if self.iteration % r.checkpoint_interval == 0:
            self.save()

    def _should_stop(self) -> bool:
        """A stop signal stops every rank after the same iteration: the ranks agree at each iteration's end."""
        return self._stop_agreed if self.dist.enabled else self._stop_signal is not None

    def _on_signal(self, signum, frame) -> None:
        now = time.monotonic()
        if self._stop_signal is not None:
            if self.dist.enabled and now - self._signal_at < 2.0:
                return  # a launcher (torchrun, a scheduler) may pass one signal on more than once
            raise KeyboardInterrupt
        self._stop_signal, self._signal_at = signum, now
        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        self.progress.message(f"{name}: finishing this iteration, then saving (again to abort)")

    def _synchronize(self, episodes: dict[str, list], elapsed: float,
                     collect_s: float) -> tuple[dict[str, list], float, float]:
        """Once per iteration: gather every rank's finished episodes (for rank 0's log), elapsed
        time (the slowest rank's counts) and stop requests. A single process returns its own."""
        if not self.dist.enabled:
            return episodes, elapsed, collect_s
        mine = {"episodes": episodes, "stop": self._stop_signal is not None, "elapsed": elapsed,
                "collect_s": collect_s}
        parts = self.dist.all_gather_object(mine)
        self._stop_agreed = any(part["stop"] for part in parts)
        slowest = max(parts, key=lambda part: part["elapsed"])
        return merge_episode_lists(part["episodes"] for part in parts), slowest["elapsed"], slowest["collect_s"]

    def _collect(self) -> dict[str, list]:
        """One rollout into the storage; returns the finished episodes' metrics."""
        self.obs, self.policy_state, infos = collect_rollout(self.policy, self.torch_env, self.storage, self.obs,
                                                             self.policy_state)
        finished: dict[str, list] = collections.defaultdict(list)
        for info in infos:
            _, metrics = finished_episodes(info)
            for key, values in metrics.items():
                finished[key].extend(values.tolist())
        storage = self.storage
        finite = bool(torch.stack([torch.isfinite(b).all() for b in (*storage.obs.values(), storage.rewards)]).all())
        bad = [rank for rank, ok in enumerate(self.dist.all_gather_object(finite)) if not ok]
        if bad:
            where = f" on rank {', '.join(map(str, bad))}" if self.dist.enabled else ""
            raise TrainingDiverged(self._diverged_message(f"the env returned a non-finite observation or reward{where}"))
        return finished

    def _advance_stages(self) -> None:
        """Staged randomization ranges (``randomization.params.<name>.stage``) and ``algorithm.entropy_stage``
        switch once the training success rate over the log window (at least ``MIN_EPISODES`` episodes,
        as the constraints' ``start_success``) first reaches their ``success``."""
        success = self.episodes["success"]
        if len(success) < MIN_EPISODES:
            return
        rate = float(np.mean(success))
        if self.algorithm.advance_stage(rate):
            max_std = self.algorithm.entropy_stage.get("max_std")
            cap = f", action std at most {max_std:g}" if max_std is not None else ""
            self.progress.message(f"algorithm.entropy_stage: training success {rate:.0%}, entropy_coef "
                                  f"{self.algorithm.entropy_coef:g}{cap} from now on")
        if self.env.randomizer is None:
            return
        for name in self.env.randomizer.advance_stages(rate):
            range_ = self.config.randomization.params[name].stage.range
            self.progress.message(f"randomization.params.{name}: training success {rate:.0%}, sampled from "
                                  f"[{range_.lo:g}, {range_.hi:g}] from now on (stage)")

    def _log_row(self, stats: dict[str, float], finished: dict[str, list], steps_per_s: float,
                 collect_share: float) -> dict[str, Any]:
        mean = lambda key: float(np.mean(self.episodes[key])) if self.episodes.get(key) else float("nan")  # noqa: E731
        row: dict[str, Any] = {
            "iteration": self.iteration, "env_steps": self.env_steps, "wall_s": round(self.wall_s, 3),
            "steps_per_s": steps_per_s, "return_mean": mean("return"), "success_rate": mean("success"),
            "episode_len": mean("length"), **stats,
        }
        for key in self.env.episode_metrics:
            if key not in ("return", "length", "success"):
                row[key] = mean(key)
        row["episodes"] = len(finished.get("return", []))
        row["collect_share"] = collect_share
        if self.env.randomizer is not None:
            row.update(self.env.randomizer.adr.metrics())
        row.update(self.constraints.metrics())
        self.logger.log(row)
        return row

    # ------------------------------------------------------------------ run directory
    def _needs_new_run_dir(self) -> bool:
        """A fresh run, or a resumed one written to another directory than its checkpoint's run."""
        return self.resumed_from is None or self.run_dir.resolve() != self.resumed_from.parent.parent.resolve()

    def _claim(self, unique: bool) -> Path:
        """Rank 0 claims the run directory; every rank learns its path (or rank 0's error)."""
        claimed: Any = None
        if self.dist.is_main:
            try:
                claimed = claim_run_dir(self.run_dir, self.config.to_yaml(), unique)
            except RuntimeError as err:
                claimed = err
        claimed = self.dist.broadcast_object(claimed)
        if isinstance(claimed, Exception):
            raise claimed
        return Path(claimed)

    def _open_logs(self) -> None:
        if not self.dist.is_main:
            return
        if self.resumed_from is not None:
            reopen_run_dir(self.run_dir, self.iteration, self.config.to_yaml())
        self.logger = MetricsLogger(self.run_dir)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything but the per-rank run state (see :meth:`save`)."""
        return {
            "model": self.policy.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_s": self.wall_s,
            "config": self.config.to_dict(),
            "layout": self.layout,
            "obs_dims": self.obs_dims,
            "obs_shapes": self.obs_shapes,
            "action_dim": self.action_dim,
            "world_size": self.dist.world_size,
            "episodes": {key: list(values) for key, values in self.episodes.items()},
            "constraints": self.constraints.state_dict(),
            "policy_average": None if self.average is None else self.average.state_dict(self.policy),
        }

    def _rank_state(self) -> dict[str, Any]:
        """This rank's run: its random streams, envs, and the next rollout's observation and state."""
        rng = rng_state()
        obs = None if self.obs is None else {group: value.cpu() for group, value in self.obs.items()}
        state = None if self.policy_state is None else self.policy_state.cpu()
        return {"rng": rng, "env": self.env.state_dict(), "obs": obs, "policy_state": state}

    def save(self) -> Path | None:
        """Write ``checkpoints/model_<iteration>.pt`` and ``checkpoints/last.pt`` atomically. With
        several ranks every rank must call it (their run states are gathered into the checkpoint);
        rank 0 writes, and every rank returns (and remembers) the path, or raises its error."""
        mine = self._rank_state()
        ranks = self.dist.all_gather_object(mine) if self.dist.enabled else [mine]
        directory = self.run_dir / CHECKPOINT_DIR
        error: str | None = None
        if self.dist.is_main:
            state = {**self.state(), "ranks": ranks}
            for path in (directory / f"model_{self.iteration:06d}.pt", directory / LATEST):
                try:
                    save_checkpoint(state, path)
                except OSError as err:
                    kept = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
                        "no checkpoint was written"
                    error = f"cannot write checkpoint {path}: {err.strerror or err}; {kept}"
                    break
        error = self.dist.broadcast_object(error)
        if error is not None:
            raise CheckpointError(error)
        self.last_checkpoint = directory / LATEST
        return self.last_checkpoint

    def _restore(self, state: dict[str, Any]) -> None:
        """Every rank loads the same checkpoint: policy, optimiser, lr, counters, the log window;
        and its own run state (``ranks[rank]``): envs, observation, policy state, random streams.
        A rank the checkpoint has no state for starts fresh episodes from fresh streams."""
        load_policy_state(self.policy, state)
        self.algorithm.load_state_dict(state["algorithm"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state.get("env_steps", 0))
        self.wall_s = float(state.get("wall_s", 0.0))
        for key, values in (state.get("episodes") or {}).items():
            if key in self.episodes:
                self.episodes[key].extend(values)
        self.constraints.load_state_dict(state.get("constraints") or {})
        ranks = state.get("ranks") or []
        mine = ranks[self.dist.rank] if self.dist.rank < len(ranks) else None
        if mine is None:  # fresh streams, distinct per rank and per resume point
            fresh = self.seed + 1_000_003 * self.iteration
            seed_everything(fresh)
            self.env.np_random = np.random.default_rng(fresh)
            if self.env.randomizer is not None:
                self.env.randomizer.seed(fresh)
        else:
            try:
                self.env.load_state_dict(to_numpy(mine["env"]))
            except ValueError as err:
                raise CheckpointError(f"{state['path']}: {err}") from None
            self.obs = {group: value.to(self.device) for group, value in mine["obs"].items()}
            self.policy_state = mine["policy_state"].to(self.device)
            set_rng_state(mine["rng"])
        self.last_checkpoint = Path(state["path"])
        self.resumed_from = self.last_checkpoint

    def _diverged_message(self, what: str) -> str:
        where = f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint was written yet"
        return f"training stopped at iteration {self.iteration + 1}: {what}; {where}"

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: Config | None = None, run_dir: str | Path | None = None,
                        progress: ProgressDisplay | None = None, dist: Distributed | None = None) -> "Trainer":
        """Resume: with the checkpoint's config (or ``config``, checked against it), into its run
        directory unless given. With several ranks, rank 0 reads the checkpoint and broadcasts it
        (no shared file system needed)."""
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
        config = config or checkpoint_config(state)
        run_dir = Path(run_dir) if run_dir else Path(state["path"]).parent.parent
        return cls(config, run_dir, resume=state, progress=progress, dist=dist)
