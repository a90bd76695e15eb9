"""Automatic Domain Randomization (OpenAI et al. 2019, "Solving Rubik's Cube with a Robot Hand",
Algorithms 1 and 2) as a pure-numpy state machine: no MuJoCo, no torch.

Every parameter i has a current range [lo_i, hi_i] that starts at ``init_range`` and may grow up to
``limits``. At each env reset, with probability ``boundary_prob`` the env becomes a *boundary
evaluator*: one parameter and one of its two bounds are drawn uniformly, that parameter is pinned at
the bound and the others are sampled from their ranges. The episode's performance goes into that
bound's queue; once the queue holds ``queue_length`` results its mean decides:

    mean >= t_high  ->  the bound moves outward by delta (never past ``limits``)
    mean <= t_low   ->  the bound moves inward by delta (never inside ``init_range``)

and the queue is cleared; a parameter with delta 0 never moves. A result is tagged with the bound
value it was evaluated at; a result whose bound has moved since is stale and dropped. Boundary
episodes also train the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

LOW, HIGH = 0, 1
ENTROPY_EPS = 1e-6


@dataclass(frozen=True)
class AdrParam:
    """One randomized dimension: ranges in the parameter's own units."""

    name: str
    init_range: tuple[float, float]
    limits: tuple[float, float]
    delta: float
    delta_style: str = "additive"  # or "multiplicative"
    integer: bool = False

    def __post_init__(self):
        (ilo, ihi), (llo, lhi) = self.init_range, self.limits
        if not llo <= ilo <= ihi <= lhi:
            raise ValueError(f"{self.name}: limits {list(self.limits)} must contain init_range {list(self.init_range)}")
        if self.delta_style not in ("additive", "multiplicative"):
            raise ValueError(f"{self.name}: delta_style must be additive or multiplicative, got {self.delta_style!r}")
        if self.delta_style == "multiplicative" and (ilo <= 0 or llo <= 0):
            raise ValueError(f"{self.name}: multiplicative delta needs positive ranges")


class AdrState:
    """Ranges, per-bound queues and the boundary-sampling RNG of a set of :class:`AdrParam`."""

    def __init__(self, params: Sequence[AdrParam], boundary_prob: float = 0.5, queue_length: int = 240,
                 t_low: float = 0.4, t_high: float = 0.8, update: bool = True, seed: int | None = None):
        if not 0.0 <= boundary_prob <= 1.0:
            raise ValueError(f"boundary_prob must be in [0, 1], got {boundary_prob}")
        if not t_low < t_high:
            raise ValueError(f"t_low ({t_low}) must be below t_high ({t_high})")
        self.params = list(params)
        self.names = [p.name for p in self.params]
        self.boundary_prob = boundary_prob
        self.queue_length = queue_length
        self.t_low, self.t_high = t_low, t_high
        self.update = update
        self.rng = np.random.default_rng(seed)
        self.ranges = np.array([p.init_range for p in self.params], np.float64).reshape(-1, 2)
        self.queues: list[list[list[float]]] = [[[], []] for _ in self.params]
        self.moves = 0

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Values (n, P) for n resetting envs and their boundary tags (n, 3): (param, side, bound
        value), param -1 for envs that are not boundary evaluators.

        Uniform within the current ranges (integers uniform over the whole numbers in range);
        boundary evaluators are pinned at their bound. ``rng`` draws the values, the ADR RNG the
        boundary choices.
        """
        lo, hi = self.ranges[:, LOW], self.ranges[:, HIGH]
        values = lo + (hi - lo) * rng.random((n, len(self.params)))
        integer = np.array([p.integer for p in self.params], bool)
        if integer.any():
            values[:, integer] = np.floor(lo[integer] + (hi[integer] - lo[integer] + 1) * rng.random((n, integer.sum())))
            values[:, integer] = np.minimum(values[:, integer], hi[integer])
        tags = np.full((n, 3), -1.0)
        if self.update and self.params and self.boundary_prob > 0:
            boundary = self.rng.random(n) < self.boundary_prob
            k = int(boundary.sum())
            which = self.rng.integers(0, len(self.params), k)
            side = self.rng.integers(0, 2, k)
            bound = self.ranges[which, side]
            rows = np.flatnonzero(boundary)
            values[rows, which] = bound
            tags[rows] = np.stack([which, side, bound], axis=1)
        return values, tags

    # ------------------------------------------------------------------ updates
    def record(self, tags: np.ndarray, performance: np.ndarray) -> None:
        """Append the performance of finished boundary episodes to their bounds' queues; move
        bounds whose queue is full. Results evaluated at a bound value that has moved are dropped."""
        if not self.update:
            return
        for (which, side, bound), perf in zip(np.asarray(tags), np.asarray(performance, np.float64)):
            if which < 0:
                continue
            which, side = int(which), int(side)
            if bound != self.ranges[which, side]:
                continue  # stale: evaluated at a bound that has since moved
            queue = self.queues[which][side]
            queue.append(float(perf))
            if len(queue) >= self.queue_length:
                mean = float(np.mean(queue))
                queue.clear()
                if mean >= self.t_high:
                    self._move(which, side, outward=True)
                elif mean <= self.t_low:
                    self._move(which, side, outward=False)

    def _move(self, which: int, side: int, outward: bool) -> None:
        p = self.params[which]
        if p.delta <= 0:
            return  # a fixed range (a staged one may lie inside init_range's clamp: never pull it back)
        current = self.ranges[which, side]
        grow = outward == (side == HIGH)  # the value increases
        if p.delta_style == "additive":
            value = current + p.delta if grow else current - p.delta
        else:
            value = current * (1.0 + p.delta) if grow else current / (1.0 + p.delta)
        if outward:
            value = min(value, p.limits[HIGH]) if side == HIGH else max(value, p.limits[LOW])
        else:
            value = max(value, p.init_range[HIGH]) if side == HIGH else min(value, p.init_range[LOW])
        if value != current:
            self.ranges[which, side] = value
            self.moves += 1

    # ------------------------------------------------------------------ observability
    def entropy(self) -> float:
        """Mean over parameters of log(max(hi - lo, eps)), nats per dimension."""
        if not self.params:
            return 0.0
        return float(np.mean(np.log(np.maximum(self.ranges[:, HIGH] - self.ranges[:, LOW], ENTROPY_EPS))))

    def metrics(self) -> dict[str, float]:
        out = {"adr/entropy": self.entropy()}
        for name, (lo, hi) in zip(self.names, self.ranges):
            out[f"adr/{name}/lo"] = float(lo)
            out[f"adr/{name}/hi"] = float(hi)
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "ranges": self.ranges.tolist(),
                "queues": [[list(q) for q in pair] for pair in self.queues],
                "rng": self.rng.bit_generator.state, "moves": self.moves}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["names"]) != self.names:
            raise ValueError(f"ADR state has parameters {state['names']}, this config has {self.names}")
        self.ranges = np.array(state["ranges"], np.float64).reshape(-1, 2)
        self.queues = [[list(q) for q in pair] for pair in state["queues"]]
        self.rng.bit_generator.state = state["rng"]
        self.moves = int(state.get("moves", 0))
