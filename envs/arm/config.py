"""The settings every arm task shares (``env`` section; each task's config extends :class:`ArmTaskConfig`).

Regions of positions (object, target) are boxes in the arm-base frame with z above the table top.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from robolearn.config import EnvConfig, Range, StrictModel
from robolearn.envs.arm.actions import ArmActionSpace
from robolearn.envs.robots import RobotSpec, robot_field


class Region(StrictModel):
    """An axis-aligned box of positions in the arm-base frame, metres (z above the table top)."""

    x: Range
    y: Range
    z: Range = Field(default_factory=lambda: Range(lo=0.0, hi=0.0))


class ArmTaskConfig(EnvConfig):
    """Settings every arm task shares (each task extends it with its rewards and regions)."""

    robot: RobotSpec = robot_field("arm5", "the arm + gripper: a bundled robot's name, a robot spec .yaml or "
                                   "the spec itself")
    control_hz: float = Field(25.0, gt=0.0)
    episode_seconds: float = Field(6.0, gt=0.0)
    action_space: ArmActionSpace = Field("joint_delta", description="joint_delta: a target change per arm joint; "
                                         "ee_delta: the end effector's displacement in the arm-base frame (IK)")
    delta_scale: float = Field(0.06, gt=0.0, description="joint_delta: rad of joint target change per control step "
                               "at action 1")
    ee_delta_scale: float = Field(0.02, gt=0.0, description="ee_delta: metres of end-effector motion per control "
                                  "step at action 1")
    ee_yaw: bool = Field(False, description="ee_delta: also command the rotation about the gripper's approach axis")
    ee_yaw_scale: float = Field(0.1, gt=0.0, description="ee_delta with ee_yaw: rad per control step at action 1")
    object_size: Range = Field(default_factory=lambda: Range(lo=0.02, hi=0.025),
                               description="cube half side, metres (4-5 cm cubes)")
    object_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.35, hi=0.55), y=Range(lo=-0.15, hi=0.15)))
    target_region: Region = Field(default_factory=lambda: Region(x=Range(lo=0.35, hi=0.55), y=Range(lo=-0.15, hi=0.15),
                                                                 z=Range(lo=0.05, hi=0.25)))
    home_noise: float = Field(0.1, ge=0.0, description="rad, uniform noise on the home joint pose at reset")
    success_radius: float = Field(0.03, gt=0.0)
    hold_steps: int = Field(1, ge=1, description="consecutive steps within the success radius that count as success")
    terminate_on_success: bool = Field(False, description="end the episode at success; by default it runs to the time "
                                       "limit (the dense terms keep paying for staying at the goal, so a policy is "
                                       "never tempted to hover short of it to collect them)")
    grasp_force: float = Field(1.0, ge=0.0, description="finger-pad force sum (N) above which the object counts as grasped")
    lift_height: float = Field(0.1, gt=0.0, description="metres of lift at which the lift term saturates")
    grasp_timeconst: float | None = Field(None, gt=0.0, description=(
        "s, the contact time constant (MuJoCo solref[0]) of the gripper's grasp geoms (unset: the robot file's; "
        "MuJoCo's default is 0.02 s, lower is stiffer, two physics timesteps the least): on stiffer pads fewer "
        "carried cubes slip out of the closed gripper (README, MobilePick)"))

    @model_validator(mode="after")
    def _sizes(self) -> ArmTaskConfig:
        self.robot.require("arm", "gripper")
        if self.ee_yaw and self.action_space != "ee_delta":
            raise ValueError("ee_yaw: true needs action_space: ee_delta (joint_delta commands the joints)")
        widest = self.robot.gripper.opening / 2
        if self.object_size.lo <= 0 or self.object_size.hi > widest:
            raise ValueError(f"object_size must lie in (0, {widest:g}] (half side; robot {self.robot.name!r} opens "
                             f"{self.robot.gripper.opening:g} m), got [{self.object_size.lo}, {self.object_size.hi}]")
        return self
