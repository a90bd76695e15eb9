"""``robolearn/Reach-v0``: move the gripper to a random target above the table.

Success: the gripper (the ``ee`` site between the finger pads) within ``success_radius`` (2 cm) of
the target for ``hold_steps`` consecutive steps (the episode runs on to its time limit). The cube
is not used (it rests on the floor behind the arm); the ``target`` observation term is the target
relative to the gripper.
Reward terms (``ReachRewards``): reach (shaped gripper-target distance, a coarse and a fine
scale), success bonus, action-rate and joint-limit penalties.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from robolearn.config import Range, StrictModel
from robolearn.envs.arm.base import ArmTaskConfig, ArmTaskEnv, Region
from robolearn.envs.rewards import reward_reach, reward_success


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


class ReachEnv(ArmTaskEnv):
    """Batched ``robolearn/Reach-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = ReachConfig
    uses_object = False
    task_metrics = ("time_to_grasp", "max_lift", "drops")  # the cube is parked: nothing is carried or dropped

    def _task_target_rel(self) -> np.ndarray:
        return self.target - self.ee_pos

    def _reward_and_termination(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self._update_grasp()  # grasp bookkeeping and the gripper velocity the observations use
        cfg = self.cfg
        distance = np.linalg.norm(self.target - self.ee_pos, axis=-1)
        success = self._held_success(distance < cfg.success_radius)
        terms = {
            "reach": reward_reach(distance, cfg.reach_std),
            "reach_fine": reward_reach(distance, cfg.reach_fine_std),
            "success": reward_success(success),
            **self._penalty_terms(actions),
        }
        return terms, self._terminated(success)
