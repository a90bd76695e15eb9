"""``robolearn/Push-v0``: push the cube to a target on the table.

The cube starts on the table; the target is on the table ``target_distance`` away from it (inside
the target region), at the cube's resting height. Success: the cube's centre within
``success_radius`` (3 cm) of the target for ``hold_steps`` steps (distances are 3-D, so a cube
carried over the target does not count: it has to be on the table); the episode runs on to its
time limit. A cube knocked off the table ends the episode as a failure. The fingers stay closed (a
pusher, as in Fetch Push): the policy has the five arm actions only, and ``fixed_commands`` holds
the gripper command at 0 m finger travel (closed).
Reward terms (``PushRewards``): reach (shaped gripper-cube distance), place (shaped cube-target
distance, a coarse and a fine scale), progress (decrease of the cube-target distance), success
bonus, action-rate and joint-limit penalties.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from robolearn.config import Range, StrictModel
from robolearn.envs.arm.base import ArmTaskConfig, ArmTaskEnv, Region
from robolearn.envs.rewards import reward_place, reward_progress, reward_reach, reward_success
from robolearn.envs.sampling import rejection_sample


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

    @model_validator(mode="after")
    def _target_fits(self) -> "PushConfig":
        check_table_target_distance(self.object_region, self.target_region, self.target_distance, "target_distance")
        return self


def check_table_target_distance(object_region: Region, target_region: Region, distance: Range, key: str) -> None:
    """ValueError if no point of ``target_region`` lies ``distance`` from any point of
    ``object_region`` (in the table plane): a table target could never be sampled."""
    def axes(region: Region):
        return np.array([region.x.lo, region.y.lo]), np.array([region.x.hi, region.y.hi])

    (olo, ohi), (tlo, thi) = axes(object_region), axes(target_region)
    nearest = float(np.linalg.norm(np.maximum(0.0, np.maximum(olo - thi, tlo - ohi))))
    farthest = float(np.linalg.norm(np.maximum(np.abs(thi - olo), np.abs(ohi - tlo))))
    if distance.lo > farthest or distance.hi < nearest:
        raise ValueError(f"{key}=[{distance.lo}, {distance.hi}] m: no point of target_region lies that far from "
                         f"object_region (their points are {nearest:.2f}-{farthest:.2f} m apart)")


def sample_table_target(env: ArmTaskEnv, ids: np.ndarray, distance: Range, distance_key: str) -> np.ndarray:
    """Targets on the table (world, at the cube's resting height) ``distance`` from the cube,
    inside the target region: 32 candidates per env and round, more rounds for envs without a
    valid one (bounded; ``distance_key`` names the distance's config key in the error)."""
    rng, k = env.np_random, ids.size
    region = env.cfg.target_region
    obj = env.object_pos[ids, :2]
    base = env.base_frame()[0][ids, :2]

    def draw(rows: np.ndarray):
        d = rng.uniform(distance.lo, distance.hi, (rows.size, 32))
        angle = rng.uniform(-np.pi, np.pi, (rows.size, 32))
        cand = obj[rows, None] + np.stack([d * np.cos(angle), d * np.sin(angle)], axis=-1)
        local = cand - base[rows, None]  # table-top scene: the arm base is not rotated
        ok = ((local[..., 0] >= region.x.lo) & (local[..., 0] <= region.x.hi)
              & (local[..., 1] >= region.y.lo) & (local[..., 1] <= region.y.hi))
        return (cand,), ok

    def failure(row: int, tries: int) -> str:
        cube = np.round(obj[row] - base[row], 3).tolist()
        return (f"no target {distance.lo:g}-{distance.hi:g} m from the cube at {cube} "
                f"lies in the target region after {tries} tries (env.{distance_key}, env.target_region, "
                f"env.object_region, layout parameter workspace)")

    (xy,) = rejection_sample(k, [(2,)], draw, failure)
    target = np.empty((k, 3))
    target[:, :2] = xy
    target[:, 2] = env.object_rest_z[ids]
    return target


class PushEnv(ArmTaskEnv):
    """Batched ``robolearn/Push-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = PushConfig
    gripper_action = False
    task_metrics = ("time_to_grasp", "max_lift", "drops", "thrown_or_dropped", "knocked_off")  # nothing is carried

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.place_distance = np.zeros(self.num_envs)

    def _sample_target(self, ids: np.ndarray) -> np.ndarray:
        return sample_table_target(self, ids, self.cfg.target_distance, "target_distance")

    def _reset_task_state(self, ids: np.ndarray) -> None:
        super()._reset_task_state(ids)
        self.place_distance[ids] = np.linalg.norm(self.target[ids] - self.object_pos[ids], axis=-1)

    def _reward_and_termination(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        state = self._update_grasp()
        cfg = self.cfg
        distance = np.linalg.norm(self.target - self.object_pos, axis=-1)
        success = self._held_success(distance < cfg.success_radius)
        terms = {
            "reach": reward_reach(state["ee_obj"], cfg.reach_std),
            "place": reward_place(distance, cfg.place_std),
            "place_fine": reward_place(distance, cfg.place_fine_std),
            "progress": reward_progress(self.place_distance, distance),
            "success": reward_success(success),
            **self._penalty_terms(actions),
        }
        self.place_distance = distance
        return terms, self._terminated(success)
