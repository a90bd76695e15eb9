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
met. Config (``constraints:`` in the experiment; a constraint's name is its metric unless it names
one with ``metric``)::

    constraints:
      bumps: {term: bump, limit: 0.8, lr: 0.005, max_weight: 5.0}
      bump_onsets: {metric: bumps, term: bump_onset, limit: 0.3, lr: 0.15, max_weight: 120.0, start_success: 0.65}

A constraint with ``start_success`` leaves its term at the configured weight until the training
success rate over the same window first reaches that value, and adapts it from then on: a limit
tightened once the task is learned, where the same pressure from the start slows learning it.

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
        self.metric: dict[str, str] = {}
        self.lam: dict[str, float] = {}
        self.floor: dict[str, float] = {}
        self.started: dict[str, bool] = {}
        for name, c in self.settings.items():
            key = f"constraints.{name}"
            metric = self.metric[name] = c.metric or name
            if metric not in episode_metrics:
                where = key + ".metric" if c.metric else key
                raise ConfigError(f"{config.origin(where)}: {where}: {config.env.task} has no episode metric {metric!r} "
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
            other = next((n for n in self.floor if self.settings[n].term == c.term), None)
            if other is not None:
                raise ConfigError(f"{config.origin(key + '.term')}: {key}.term: constraints.{other} already adapts "
                                  f"env.rewards.{c.term}; one constraint per term")
            if c.start_success is not None and "success" not in episode_metrics:
                raise ConfigError(f"{config.origin(key + '.start_success')}: {key}.start_success: {config.env.task} "
                                  f"reports no success to start from")
            self.floor[name] = self.lam[name] = -weight
            self.started[name] = c.start_success is None

    def update(self, windows: Mapping[str, Sequence[float]]) -> None:
        """One step of every multiplier from the recent finished episodes' metrics (``windows``:
        metric -> values, the trainer's log window, with ``success`` among them); sets the weights."""
        for name, c in self.settings.items():
            values = windows[self.metric[name]]
            if len(values) < MIN_EPISODES:
                continue
            if not self.started[name]:
                if float(np.mean(windows["success"])) < c.start_success:
                    continue
                self.started[name] = True  # and adapts from now on, whatever success does later
            excess = float(np.mean(values)) - c.limit
            self.lam[name] = float(np.clip(self.lam[name] + c.lr * excess, self.floor[name], c.max_weight))
            self.reward_weights.set_weight(c.term, -self.lam[name])

    def metrics(self) -> dict[str, float]:
        """``constraint/<name>``: the adapted weight of its term (for the log)."""
        return {f"constraint/{name}": -lam for name, lam in self.lam.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": dict(self.lam), "started": dict(self.started)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        started = state.get("started", {})
        for name, lam in state.get("lam", {}).items():
            if name in self.settings:
                self.lam[name] = float(lam)
                self.started[name] = bool(started.get(name, True))
                self.reward_weights.set_weight(self.settings[name].term, -self.lam[name])
