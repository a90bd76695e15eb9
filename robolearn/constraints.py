"""Limits on episode metrics kept by adapting penalty weights (Lagrangian reward shaping).

A robot must show some behaviour *less than* a limit (the chassis bumping the table less than
once an episode, a cube dropped in under 5% of them) more than it must show it as little as
possible. A fixed penalty weight either is too small to matter or, large from the start, makes
the policy timid before it has learned the task. ``constraints`` turns a penalty into a Lagrange
multiplier (PPO-Lagrangian, Ray et al. 2019, "Benchmarking Safe Exploration"): after every
iteration, with c̄ the metric's mean over the trainer's window of finished episodes (the last
max(100, N), as logged) and d the limit,

    λ ← clip(λ + lr · (c̄ − d), λ₀, λ_max),        the term's weight = −λ

where λ₀ = |the configured weight| (the penalty never falls below what the config asks) and
λ_max = ``max_weight``. The weight grows while the limit is exceeded and relaxes back once it is
met. Config (``constraints:`` in the experiment)::

    constraints:
      bumps: {term: bump, limit: 0.8, lr: 0.005, max_weight: 5.0}

The multipliers are trainer state: checkpoints keep them (and the trainer its windows), so a resumed run
goes on with the weights it had; every rank updates them from the same merged episodes. Evaluation
(``robolearn eval``) reports the metrics, not the training reward, and uses the configured weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robolearn.config import Config, ConfigError
from robolearn.envs.rewards import RewardWeights

#: finished episodes a multiplier waits for before its first update (a mean of a few is noise)
MIN_EPISODES = 100


class ConstraintMultipliers:
    """The multipliers of an experiment's ``constraints``, bound to an env's reward weights."""

    def __init__(self, config: Config, reward_weights: RewardWeights, episode_metrics: tuple[str, ...]):
        self.settings = config.constraints
        self.reward_weights = reward_weights
        self.lam: dict[str, float] = {}
        self.floor: dict[str, float] = {}
        for metric, c in self.settings.items():
            key = f"constraints.{metric}"
            if metric not in episode_metrics:
                raise ConfigError(f"{config.origin(key)}: {key}: {config.env.task} has no episode metric {metric!r} "
                                  f"(metrics: {', '.join(episode_metrics)})")
            if c.term not in reward_weights.weights:
                raise ConfigError(f"{config.origin(key + '.term')}: {key}.term: {config.env.task} has no reward term "
                                  f"{c.term!r} (terms: {', '.join(reward_weights.names)})")
            weight = reward_weights.weights[c.term]
            if weight > 0:
                raise ConfigError(f"{config.origin(key + '.term')}: {key}.term: env.rewards.{c.term} is {weight:g}, "
                                  f"a reward; a constraint adapts a penalty (a weight <= 0)")
            if c.max_weight < -weight:
                raise ConfigError(f"{config.origin(key + '.max_weight')}: {key}.max_weight {c.max_weight:g} is below "
                                  f"the configured penalty |env.rewards.{c.term}| = {-weight:g}")
            other = next((m for m in self.floor if self.settings[m].term == c.term), None)
            if other is not None:
                raise ConfigError(f"{config.origin(key + '.term')}: {key}.term: constraints.{other} already adapts "
                                  f"env.rewards.{c.term}; one constraint per term")
            self.floor[metric] = self.lam[metric] = -weight

    def update(self, windows: Mapping[str, Sequence[float]]) -> None:
        """One step of every multiplier from the recent finished episodes' metrics (``windows``:
        metric -> values, the trainer's log window); sets the weights."""
        for metric, c in self.settings.items():
            values = windows[metric]
            if len(values) < MIN_EPISODES:
                continue
            excess = float(np.mean(values)) - c.limit
            self.lam[metric] = float(np.clip(self.lam[metric] + c.lr * excess, self.floor[metric], c.max_weight))
            self.reward_weights.set_weight(c.term, -self.lam[metric])

    def metrics(self) -> dict[str, float]:
        """``constraint/<metric>``: the adapted weight of its term (for the log)."""
        return {f"constraint/{metric}": -lam for metric, lam in self.lam.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": dict(self.lam)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for metric, lam in state.get("lam", {}).items():
            if metric in self.settings:
                self.lam[metric] = float(lam)
                self.reward_weights.set_weight(self.settings[metric].term, -self.lam[metric])
