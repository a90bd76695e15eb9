"""``robolearn/Push-v0``: push the cube to a target on the table.

The cube starts on the table; the target is on the table ``target_distance`` away from it (inside
the target region), at the cube's resting height. Success: the cube's centre within
``success_radius`` (3 cm) of the target for ``hold_steps`` steps (distances are 3-D, so a cube
carried over the target does not count: it has to be on the table) (the episode runs on to its time limit). A cube knocked off
the table ends the episode as a failure. The fingers stay closed (a pusher, as in Fetch Push): the
gripper action is ignored (its scale is 0).
Reward: reach (shaped gripper-cube distance), place (shaped cube-target distance, a coarse and a
fine scale), progress (decrease of the cube-target distance), success bonus, action-rate and
joint-limit penalties.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from robolearn.envs.arm.base import (
    ArmTaskConfig,
    ArmTaskEnv,
    Region,
    reward_place,
    reward_reach,
    reward_success,
)

from robolearn.config import Range, StrictModel


class PushRewards(StrictModel):
    reach: float = 0.5
    place: float = 1.0
    place_fine: float = 1.0
    progress: float = 5.0
    success: float = 2.0
    action_rate: float = -0.01
    joint_limit: float = -0.1


class PushConfig(ArmTaskConfig):
    task: str = "robolearn/Push-v0"
    episode_seconds: float = Field(6.0, gt=0.0)
    success_radius: float = Field(0.03, gt=0.0)
    hold_steps: int = Field(3, ge=1)
    object_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.35, hi=0.5), y=Range(lo=-0.15, hi=0.15)))
    target_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.3, hi=0.6), y=Range(lo=-0.25, hi=0.25)))
    target_distance: Range = Field(default_factory=lambda: Range(lo=0.08, hi=0.2),
                                   description="metres, cube to target at reset")
    reach_std: float = Field(0.1, gt=0.0)
    place_std: float = Field(0.1, gt=0.0)
    place_fine_std: float = Field(0.02, gt=0.0)
    rewards: PushRewards = Field(default_factory=PushRewards)


def default_config() -> PushConfig:
    return PushConfig()


def sample_table_target(env: ArmTaskEnv, ids: np.ndarray, distance: Range) -> np.ndarray:
    """Targets on the table (world, at the cube's resting height) ``distance`` from the cube,
    kept inside the target region (32 candidate directions per env)."""
    rng, k = env.np_random, ids.size
    region = env.cfg.target_region
    obj = env.object_pos[ids]
    d = rng.uniform(distance.lo, distance.hi, (k, 32))
    angle = rng.uniform(-np.pi, np.pi, (k, 32))
    cand = obj[:, None, :2] + np.stack([d * np.cos(angle), d * np.sin(angle)], axis=-1)
    base = env.base_frame()[0][ids, None, :2]
    local = cand - base  # table-top scene: the arm base is not rotated
    ok = ((local[..., 0] >= region.x.lo) & (local[..., 0] <= region.x.hi)
          & (local[..., 1] >= region.y.lo) & (local[..., 1] <= region.y.hi))
    idx = np.where(ok.any(axis=1), ok.argmax(axis=1), 0)
    target = np.empty((k, 3))
    target[:, :2] = cand[np.arange(k), idx]
    target[:, 2] = env.object_rest_z[ids]
    return target


class PushEnv(ArmTaskEnv):
    """Batched ``robolearn/Push-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = PushConfig
    gripper_locked = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.place_distance = np.zeros(self.num_envs)

    def _sample_target(self, ids: np.ndarray) -> np.ndarray:
        return sample_table_target(self, ids, self.cfg.target_distance)

    def _reset_task_state(self, ids: np.ndarray) -> None:
        super()._reset_task_state(ids)
        self.place_distance[ids] = np.linalg.norm(self.target[ids] - self.object_pos[ids], axis=-1)

    def _evaluate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        state = self._update_grasp()
        rate, limit = self._common_penalties(actions)
        distance = np.linalg.norm(self.target - self.object_pos, axis=-1)
        progress = self.place_distance - distance
        self.place_distance = distance
        success = self._held_success(distance < self.cfg.success_radius)
        w, cfg = self.cfg.rewards, self.cfg
        reward = (w.reach * reward_reach(state["ee_obj"], cfg.reach_std)
                  + w.place * reward_place(distance, cfg.place_std)
                  + w.place_fine * reward_place(distance, cfg.place_fine_std)
                  + w.progress * progress
                  + w.success * reward_success(success)
                  + w.action_rate * rate + w.joint_limit * limit)
        return reward, self._terminated(success)
