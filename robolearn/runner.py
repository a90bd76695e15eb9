"""On-policy training loop: collect -> update -> log -> checkpoint.

The runner owns the env, the model, the algorithm and the rollout storage, the run directory
(``config.yaml``, ``metrics.csv``, ``tb/``, ``checkpoints/``), the progress display and the
signals: Ctrl-C finishes the current iteration, saves a checkpoint and returns; a second Ctrl-C
stops at once. A non-finite loss, parameter or observation stops training with
:class:`TrainingDiverged`, leaving the last good checkpoint as it was.
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
from robolearn.logger import MetricsLogger, ProgressDisplay
from robolearn.models import ActorCritic, RecurrentActorCritic
from robolearn.rollout import TorchEnv, collect_rollout
from robolearn.storage import RolloutStorage


class TrainingDiverged(RuntimeError):
    """Training produced non-finite numbers; the message names the last good checkpoint."""


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but torch.cuda.is_available() is False (use device=auto or cpu)")
    return torch.device(device)


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


class OnPolicyRunner:
    """Trains one policy on one batched env with PPO or A2C (``algorithm.name``)."""

    def __init__(self, config: Config, run_dir: str | Path, resume: dict[str, Any] | None = None,
                 progress: ProgressDisplay | None = None):
        from robolearn.envs import make_env  # the core looks tasks up by name

        self.config = config
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        self.env = make_env(config.env, seed=config.seed, randomization=config.randomization)
        self.torch_env = TorchEnv(self.env, self.device)
        self.obs_dims = {group: layout.size for group, layout in self.env.obs_layout.items()}
        self.action_dim = self.env.single_action_space.shape[0]
        self.model = build_model(config, self.obs_dims, self.action_dim).to(self.device)
        self.algorithm = ALGORITHMS[config.algorithm.name](self.model, device=self.device,
                                                           **config.algorithm.algorithm_kwargs())
        self.num_steps = config.algorithm.num_steps
        state_shape = self.model.state_shape if self.model.is_recurrent else None
        self.storage = RolloutStorage(self.num_steps, self.env.num_envs, self.obs_dims, self.action_dim, self.device,
                                      state_shape=state_shape)
        self.policy_state: torch.Tensor | None = None  # a recurrent policy's hidden state, carried across rollouts
        self.progress = progress or ProgressDisplay(config.runner.log_interval)

        self.iteration = 0
        self.env_steps = 0
        self.wall_s = 0.0
        window = max(100, self.env.num_envs)
        self.episodes: dict[str, collections.deque] = {key: collections.deque(maxlen=window)
                                                        for key in self.env.episode_metrics}
        self.last_checkpoint: Path | None = None
        if resume is not None:
            self._restore(resume)

        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(config, self.run_dir / "config.yaml")
        self.logger = MetricsLogger(self.run_dir)
        self._stop_requested = False

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
            self.model.update_normalizers(obs)  # a first scale for the observations
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        self.progress.message(f"training {self.config.env.task} on {self.device} with {self.env.num_envs} envs "
                              f"-> {self.run_dir}")
        try:
            while not self._budget_reached() and not self._stop_requested:
                start = time.perf_counter()
                obs, episodes = self._collect(obs)
                collect_s = time.perf_counter() - start
                try:
                    stats = self.algorithm.update(self.storage)
                except FloatingPointError as err:
                    raise TrainingDiverged(self._diverged_message(str(err))) from None
                self.iteration += 1
                steps = self.num_steps * self.env.num_envs
                self.env_steps += steps
                elapsed = time.perf_counter() - start
                self.wall_s += elapsed
                row = self._log_row(stats, episodes, steps / elapsed, collect_s / elapsed)
                adr = f"ADR entropy {row['adr/entropy']:.2f}" if "adr/entropy" in row else ""
                self.progress.update(row, self._fraction_done(), adr)
                if self.iteration % r.checkpoint_interval == 0:
                    self.save()
        finally:
            signal.signal(signal.SIGINT, previous)
            self.logger.close()
        if self._stop_requested:
            self.progress.message("interrupted: saving a checkpoint")
        path = self.save()
        self.progress.message(f"done: {self.iteration} iterations, {self.env_steps:,} env steps in "
                              f"{self.wall_s:.0f} s; checkpoint {path}")
        return path

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        self.progress.message("Ctrl-C: finishing this iteration, then saving (Ctrl-C again to abort)")

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
        if not all(torch.isfinite(buffer).all() for buffer in (*storage.obs.values(), storage.rewards)):
            raise TrainingDiverged(self._diverged_message("the env returned a non-finite observation or reward"))
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
            "randomization": self.env.randomizer.state_dict() if self.env.randomizer is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "env": self.env.np_random.bit_generator.state,
            },
        }

    def save(self) -> Path:
        """Write ``checkpoints/model_<iteration>.pt`` and ``checkpoints/last.pt`` atomically."""
        state = self.state()
        directory = self.run_dir / CHECKPOINT_DIR
        save_checkpoint(state, directory / f"model_{self.iteration:06d}.pt")
        self.last_checkpoint = save_checkpoint(state, directory / LATEST)
        return self.last_checkpoint

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state.get("env_steps", 0))
        self.wall_s = float(state.get("wall_s", 0.0))
        rng = state.get("rng", {})
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
        if state.get("randomization") is not None and self.env.randomizer is not None:
            try:
                self.env.randomizer.load_state_dict(state["randomization"])
            except ValueError as err:
                raise CheckpointError(f"{state.get('path', 'checkpoint')}: {err}") from None
        self.last_checkpoint = Path(state["path"]) if "path" in state else None

    def _diverged_message(self, what: str) -> str:
        where = f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint was written yet"
        return f"training stopped at iteration {self.iteration + 1}: {what}; {where}"

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: Config | None = None, run_dir: str | Path | None = None,
                        progress: ProgressDisplay | None = None) -> "OnPolicyRunner":
        """Resume: the checkpoint's config (or ``config``), its run directory unless given."""
        from robolearn.config import validate_config

        state = load_checkpoint(path)
        ckpt_path = Path(state["path"])
        config = config or validate_config(state["config"], source=str(ckpt_path))
        run_dir = Path(run_dir) if run_dir else ckpt_path.parent.parent
        return cls(config, run_dir, resume=state, progress=progress)

