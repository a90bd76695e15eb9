"""``robolearn/Reach-v0``: move the gripper to a random target above the table.

Success: the gripper (the ``ee`` site between the finger pads) within ``success_radius`` (2 cm) of
the target for ``hold_steps`` consecutive steps (the episode runs on to its time limit). The cube is not used (it rests on the floor behind the arm);
the ``target`` observation term is the target relative to the gripper.
Reward: reach (shaped gripper-target distance, a coarse and a fine scale), success bonus,
action-rate and joint-limit penalties.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from robolearn.envs.arm.base import (
    ArmTaskConfig,
    ArmTaskEnv,
    Region,
    reward_reach,
    reward_success,
)

from robolearn.config import Range, StrictModel


class ReachRewards(StrictModel):
    reach: float = 1.0
    reach_fine: float = 1.0
    success: float = 2.0
    action_rate: float = -0.01
    joint_limit: float = -0.1


class ReachConfig(ArmTaskConfig):
    task: str = "robolearn/Reach-v0"
    episode_seconds: float = Field(4.0, gt=0.0)
    success_radius: float = Field(0.02, gt=0.0)
    hold_steps: int = Field(3, ge=1)
    target_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.3, hi=0.6), y=Range(lo=-0.25, hi=0.25),
                                                                 z=Range(lo=0.05, hi=0.35)))
    reach_std: float = Field(0.1, gt=0.0, description="metres, coarse reach shaping scale")
    reach_fine_std: float = Field(0.02, gt=0.0, description="metres, fine reach shaping scale")
    rewards: ReachRewards = Field(default_factory=ReachRewards)


def default_config() -> ReachConfig:
    return ReachConfig()


class ReachEnv(ArmTaskEnv):
    """Batched ``robolearn/Reach-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = ReachConfig
    uses_object = False

    def _task_target_rel(self) -> np.ndarray:
        return self.target - self.ee_pos

    def _evaluate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        state = self._update_grasp()
        rate, limit = self._common_penalties(actions)
        distance = np.linalg.norm(self.target - self.ee_pos, axis=-1)
        success = self._held_success(distance < self.cfg.success_radius)
        w, cfg = self.cfg.rewards, self.cfg
        reward = (w.reach * reward_reach(distance, cfg.reach_std)
                  + w.reach_fine * reward_reach(distance, cfg.reach_fine_std)
                  + w.success * reward_success(success)
                  + w.action_rate * rate + w.joint_limit * limit)
        del state
        return reward, self._terminated(success)
