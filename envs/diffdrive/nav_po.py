"""``robolearn/NavPO-v0``: partially observable PointGoal navigation, where memory matters.

Nav-v0 with five things taken from the policy:

* no velocity sensing: the ``velocity`` term is left out of the ``policy`` group;
* a slow lidar: a fresh scan only every ``lidar_period``-th step of an episode (steps 0, k, 2k,
  ...), the last scan held in between;
* an intermittent goal sensor: the goal (distance, cos and sin of the bearing) is read only every
  ``goal_period``-th step; the readings in between are dropped and read as zeros (never a real
  reading: the bearing is a unit vector), so between readings the policy must remember where the
  goal was and account for its own motion since;
* no action feedback (``observe_last_action: false``): Nav's ``last_action`` term is left out,
  because a memoryless policy can latch a steering command through it (it reads its own previous
  output) and drive a constant-curvature arc to a goal it saw once, which needs no memory;
* a per-episode action latency: each episode draws a whole number of control steps in
  ``action_latency``; the wheels receive the action commanded that many steps earlier (zero before
  the episode's first action). ``last_action`` (critic group, and the policy group when
  ``observe_last_action`` is on) reports what the policy commanded.

The ``critic`` group keeps the privileged state: velocity, the fresh scan (``lidar_now``) and goal
reading (``goal_now``), the episode's latency, pose and goal position, for an asymmetric critic.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from robolearn.config import IntRange
from robolearn.envs.diffdrive.nav import NavConfig, NavEnv


class NavPOConfig(NavConfig):
    """``robolearn/NavPO-v0`` settings: Nav-v0's plus the partial observability."""

    task: str = "robolearn/NavPO-v0"
    lidar_period: int = Field(4, ge=1, description="a fresh lidar scan every k-th control step, held in between")
    observe_last_action: bool = Field(False, description="whether the policy sees its previous action")
    goal_period: int = Field(10, ge=1, description="a goal reading every k-th control step, zeros in between")
    action_latency: IntRange = Field(default_factory=lambda: IntRange(lo=0, hi=3),
                                     description="control steps an action is delayed, drawn per episode")

    @model_validator(mode="after")
    def _latency(self) -> "NavPOConfig":
        if self.action_latency.lo < 0:
            raise ValueError(f"action_latency must be >= 0, got [{self.action_latency.lo}, {self.action_latency.hi}]")
        return self


class NavPOEnv(NavEnv):
    """Batched ``robolearn/NavPO-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = NavPOConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        n, nray = self.num_envs, self.cfg.lidar.rays
        self.held_lidar = np.zeros((n, nray))
        self.latency = np.zeros(n, np.int64)
        # commanded actions, newest first: slot j holds the action of j steps ago
        self.action_history = np.zeros((n, self.cfg.action_latency.hi + 1, self.single_action_space.shape[0]))

    def _obs_terms(self) -> dict[str, dict[str, int]]:
        nray = self.cfg.lidar.rays
        nav = super()._obs_terms()["critic"]
        policy_terms = {"goal": 3, "lidar": nray}
        if self.cfg.observe_last_action:
            policy_terms["last_action"] = 2
        critic_terms = {**nav, "lidar_now": nray, "goal_now": 3, "action_latency": 1}
        return {"policy": policy_terms, "critic": critic_terms}

    def _reset_envs(self, ids: np.ndarray) -> None:
        super()._reset_envs(ids)
        latency = self.cfg.action_latency
        self.latency[ids] = self.np_random.integers(latency.lo, latency.hi + 1, ids.size)
        self.action_history[ids] = 0.0

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.action_history[:, 1:] = self.action_history[:, :-1]
        self.action_history[:, 0] = actions
        delayed = self.action_history[np.arange(self.num_envs), self.latency]
        super()._apply_actions(delayed)

    @property
    def obs_term_info(self) -> dict[str, dict]:
        info = super().obs_term_info
        cfg = self.cfg
        info["lidar"] = {**info["lidar"], "meaning": info["lidar"]["meaning"] + (
            f"; a fresh scan every {cfg.lidar_period} control steps (from an episode's first), the last scan held "
            "in between")}
        info["goal"] = {**info["goal"], "meaning": info["goal"]["meaning"] + (
            f"; read every {cfg.goal_period} control steps (from an episode's first), zeros in between")}
        return info

    def _observe(self) -> dict[str, np.ndarray]:
        terms = super()._observe()
        fresh = self.episode_step % self.cfg.lidar_period == 0
        self.held_lidar[fresh] = terms["lidar"][fresh]
        terms["lidar_now"] = terms["lidar"]
        terms["lidar"] = self.held_lidar
        terms["goal_now"] = terms["goal"]
        terms["goal"] = terms["goal"] * (self.episode_step % self.cfg.goal_period == 0)[:, None]
        terms["action_latency"] = self.latency
        return terms
