"""``robolearn/PickPlace-v0``: grasp the cube, lift it and place it at a target.

The target is in the air above the table (``target_region``, z above the cube's resting height)
or, with probability ``table_target_prob``, on the table ``table_target_distance`` from the cube.
Success: the cube's centre within ``success_radius`` (3 cm) of the target for ``hold_steps``
consecutive control steps (the episode runs on to its time limit; a cube knocked off the table ends
it as a failure).
Reward terms (``PickPlaceRewards``): reach (shaped gripper-cube distance), grasp indicator
(finger-pad force sum above ``grasp_force`` with the cube between the fingers), lift gated by the
grasp, place (shaped cube-target distance, coarse and fine, gated by the grasp), success bonus,
action-rate and joint-limit penalties.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from robolearn.config import Range, StrictModel
from robolearn.envs.arm.base import ArmTaskConfig, ArmTaskEnv, Region
from robolearn.envs.arm.push import check_table_target_distance, sample_table_target
from robolearn.envs.rewards import reward_grasp, reward_lift, reward_place, reward_reach, reward_success

__all__ = ["PickPlaceConfig", "PickPlaceEnv"]


class PickPlaceRewards(StrictModel):
    reach: float = 1.0
    grasp: float = 1.0
    lift: float = 4.0
    place: float = 4.0
    place_fine: float = 4.0
    success: float = 4.0
    action_rate: float = -0.01
    joint_limit: float = -0.1


class PickPlaceConfig(ArmTaskConfig):
    task: str = "robolearn/PickPlace-v0"
    episode_seconds: float = Field(8.0, gt=0.0)
    success_radius: float = Field(0.03, gt=0.0)
    hold_steps: int = Field(5, ge=1)
    object_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.35, hi=0.5), y=Range(lo=-0.15, hi=0.15)))
    target_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.35, hi=0.55), y=Range(lo=-0.2, hi=0.2),
                                                                 z=Range(lo=0.05, hi=0.25)))
    table_target_prob: float = Field(0.25, ge=0.0, le=1.0)
    table_target_distance: Range = Field(default_factory=lambda: Range(lo=0.1, hi=0.2))
    reach_std: float = Field(0.1, gt=0.0)
    place_std: float = Field(0.1, gt=0.0)
    place_fine_std: float = Field(0.02, gt=0.0)
    rewards: PickPlaceRewards = Field(default_factory=PickPlaceRewards)

    @model_validator(mode="after")
    def _table_target_fits(self) -> "PickPlaceConfig":
        if self.table_target_prob > 0:
            check_table_target_distance(self.object_region, self.target_region, self.table_target_distance,
                                        "table_target_distance")
        return self


class PickPlaceEnv(ArmTaskEnv):
    """Batched ``robolearn/PickPlace-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = PickPlaceConfig

    def _sample_target(self, ids: np.ndarray) -> np.ndarray:
        air = super()._sample_target(ids)
        air[:, 2] += self.object_half[ids]
        on_table = self.np_random.random(ids.size) < self.cfg.table_target_prob
        if on_table.any():
            air[on_table] = sample_table_target(self, ids[on_table], self.cfg.table_target_distance,
                                                 "table_target_distance")
        return air

    def _reward_and_termination(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        state = self._update_grasp()
        cfg, grasped = self.cfg, state["grasped"]
        distance = np.linalg.norm(self.target - self.object_pos, axis=-1)
        success = self._held_success(distance < cfg.success_radius)
        terms = {
            "reach": reward_reach(state["ee_obj"], cfg.reach_std),
            "grasp": reward_grasp(grasped),
            "lift": reward_lift(state["lift"], grasped, cfg.lift_height),
            "place": reward_place(distance, cfg.place_std, grasped),
            "place_fine": reward_place(distance, cfg.place_fine_std, grasped),
            "success": reward_success(success),
            **self._penalty_terms(actions),
        }
        return terms, self._terminated(success)
