"""MobilePick's settings (``env`` section of ``robolearn/MobilePick-v0``): the layout's limits, the
reward weights (:class:`MobilePickRewards`) and :class:`MobilePickConfig`."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from robolearn.config import Range, StrictModel
from robolearn.envs.arm.config import ArmTaskConfig
from robolearn.envs.robots import RobotSpec, robot_field

#: the largest base footprint radius the layout makes room for, metres
ROBOT_RADIUS = 0.3
TABLE_HALF = 0.25
# metres from the table centre: the closest start (clear of the table within ~25 deg of a side's
# normal), and the farthest start or zone a layout asks for (farther ones rarely fit the arena)
CLOSEST_START = TABLE_HALF + ROBOT_RADIUS + 0.05
MAX_LAYOUT_DISTANCE = 3.0


def closest_zone(zone_radius: float) -> float:
    """Metres from the table centre to the nearest zone centre that keeps the zone off the table."""
    return TABLE_HALF * np.sqrt(2) + zone_radius + 0.01


class MobilePickRewards(StrictModel):
    # navigation and carrying weighted so that holding the cube does not drown them: with lift 8 per
    # step and nav_progress 1 per metre the base never learned to reach the table (configs/mobile_pick.yaml)
    nav_progress: float = 10.0
    nav_velocity: float = 1.0
    reach: float = 1.0
    grasp: float = 0.5  # small next to lift: with grasp 1 / lift 4 a policy learned to hold the cube
    lift: float = 2.0   # pressed to the table and never lifted it (3.6 M steps)
    centred_grip: float = 0.0  # per step a lifted cube is held with its centre between the pads' middles
    square_pads: float = 0.0  # per step the pads stand square to the cube's sides, times reach, until the grasp
    carry_progress: float = 20.0
    carry: float = 2.0
    carry_height: float = -10.0  # per metre above carry_height_limit, per step
    carry_speed: float = 0.0  # per m/s a held cube moves faster than carry_speed_limit, per step
    object_push: float = 0.0  # per m/s a free cube slides on the table top, per step
    drop: float = -20.0  # the step a lifted cube leaves the gripper outside the zone
    object_lost: float = 0.0  # the step the episode becomes ``thrown_or_dropped`` (at rest off the zone, knocked off)
    success: float = 10.0
    action_rate: float = -0.005
    joint_limit: float = -0.1
    collision: float = -1.0
    bump: float = -1.0  # per step the chassis touches the table or a wall
    bump_onset: float = 0.0  # per bump the ``bumps`` metric counts (the step a touch after a clear spell starts)


class MobilePickConfig(ArmTaskConfig):
    task: str = "robolearn/MobilePick-v0"
    base: RobotSpec = robot_field("diffdrive_large", "the differential-drive base carrying the arm (env.robot, "
                                  "mounted at the site its mount names): a name, a spec .yaml or the spec")
    episode_seconds: float = Field(15.0, gt=0.0)
    arena_size: float = Field(4.0, gt=2.0)
    table_distance: Range = Field(default_factory=lambda: Range(lo=0.8, hi=1.5),
                                  description="metres, robot start to table centre")
    zone_distance: Range = Field(default_factory=lambda: Range(lo=0.8, hi=1.5),
                                 description="metres, table centre to drop-zone centre")
    zone_radius: float = Field(0.3, gt=0.0)
    hold_steps: int = Field(3, ge=1)
    cube_offset: float = Field(0.1, ge=0.0, le=TABLE_HALF - 0.05,
                               description="metres, max offset of the cube from the table centre")
    max_wheel_speed: float = Field(10.0, gt=0.0, description="rad/s at action 1 (wheel radius 0.06 m)")
    collision_force: float = Field(1e-3, ge=0.0)
    reach_std: float = Field(0.1, gt=0.0)
    carry_std: float = Field(0.5, gt=0.0)
    centred_grip_std: float = Field(0.02, gt=0.0, description="metres from the pads' middle at which the "
                                    "centred_grip term has fallen to 0.24 of its best")
    reach_standoff: float = Field(0.5, ge=0.0, description="metres from the arm mount to the cube (floor plane) "
                                  "within which the arm reaches it: the navigation terms stop rewarding driving "
                                  "closer (into the table)")
    carry_height_limit: float = Field(0.25, gt=0.0, description="metres above the cube's resting height (on the "
                                      "table) beyond which the carry_height term penalises a held cube")
    carry_speed_limit: float = Field(0.75, gt=0.0, description="m/s of a held cube beyond which the carry_speed "
                                     "term penalises it (the base drives at up to 0.6 m/s)")
    zone_observed: Literal["always", "when_grasped"] = Field(
        "always", description="when the policy's target term (the drop zone relative to the cube) reads the zone: "
        "always, or only while the cube is grasped (zeros before), so that the drive and pick do not depend on "
        "where the zone lies")
    route_point: float | None = Field(
        None, gt=0.0, description="metres ahead of the cube along its carry route (around the table) of the point "
        "the policy reads as the route_point term, relative to the base (a carrot to steer by); None: no such term")
    rewards: MobilePickRewards = Field(default_factory=MobilePickRewards)

    @model_validator(mode="after")
    def _layout_fits(self) -> MobilePickConfig:
        self.base.require("base", key="env.base")
        if self.table_distance.lo < CLOSEST_START:
            raise ValueError(f"table_distance.lo={self.table_distance.lo} m: the base starts at least "
                             f"{CLOSEST_START} m from the table centre (table half side + robot radius + 5 cm)")
        if self.zone_distance.lo < closest_zone(self.zone_radius):
            raise ValueError(f"zone_distance.lo={self.zone_distance.lo} m: a zone of radius {self.zone_radius} m "
                             f"that close would overlap the table; it lies at least "
                             f"{closest_zone(self.zone_radius):.3f} m from the table centre")
        for key in ("table_distance", "zone_distance"):
            r = getattr(self, key)
            if r.lo <= 0 or r.lo > r.hi or r.hi > MAX_LAYOUT_DISTANCE:
                raise ValueError(f"{key}=[{r.lo}, {r.hi}] must satisfy 0 < lo <= hi <= {MAX_LAYOUT_DISTANCE} m")
        return self
