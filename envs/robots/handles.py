"""Indices of a robot's parts in a compiled, composed model: what a task reads and writes.

A task builds these once from its model and the robot spec; from then on it works with arrays of
qpos / dof / actuator / sensor addresses and never with names.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robolearn.envs.robots.compose import base_geometry, robot_mjspec
from robolearn.envs.robots.spec import RobotSpec


def joint_unit(model: mujoco.MjModel, joint: int) -> str:
    """``rad`` for a hinge, ``m`` for a slide joint."""
    return "m" if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_SLIDE else "rad"


class ArmHandles:
    """An arm's joints, actuators, limits, home pose, end-effector site and base body."""

    def __init__(self, model: mujoco.MjModel, robot: RobotSpec):
        arm, p = robot.arm, robot.prefix
        self.names = list(arm.joints)
        self.joints = np.array([model.joint(p + j).id for j in arm.joints])
        self.qpos = model.jnt_qposadr[self.joints].copy()
        self.dof = model.jnt_dofadr[self.joints].copy()
        self.units = [joint_unit(model, j) for j in self.joints]
        acts = arm.actuators if arm.actuators is not None else arm.joints
        self.actuators = np.array([model.actuator(p + a).id for a in acts])
        self.ctrl_lo = model.actuator_ctrlrange[self.actuators, 0].copy()
        self.ctrl_hi = model.actuator_ctrlrange[self.actuators, 1].copy()
        limited = model.jnt_limited[self.joints].astype(bool)
        self.limited = limited
        self.jnt_lo = np.where(limited, model.jnt_range[self.joints, 0], -np.inf)
        self.jnt_hi = np.where(limited, model.jnt_range[self.joints, 1], np.inf)
        #: the range the tasks keep joint targets in: the actuator's control range within the joint's range
        self.target_lo = np.maximum(self.ctrl_lo, self.jnt_lo)
        self.target_hi = np.minimum(self.ctrl_hi, self.jnt_hi)
        self.home = np.clip(np.array(arm.home, float), self.ctrl_lo, self.ctrl_hi)
        self.ee_site = model.site(p + (arm.ee_site if arm.ee_site is not None else f"{arm.ee_body}_ee")).id
        #: the gripper's approach direction in the end-effector site's frame (unit)
        self.ee_axis = np.array(arm.ee_axis, float) / np.linalg.norm(arm.ee_axis)
        if arm.base_body is not None:
            self.base_body = model.body(p + arm.base_body).id
        else:
            self.base_body = int(model.body_parentid[model.jnt_bodyid[self.joints[0]]])


class GripperHandles:
    """A gripper's joints and actuators behind one open (1) - closed (0) command, and the touch
    sensors of its grasp geoms."""

    def __init__(self, model: mujoco.MjModel, robot: RobotSpec):
        gripper, p = robot.gripper, robot.prefix
        self.names = list(gripper.joints)
        joints = np.array([model.joint(p + j).id for j in gripper.joints])
        self.qpos = model.jnt_qposadr[joints].copy()
        self.dof = model.jnt_dofadr[joints].copy()
        acts = gripper.actuators if gripper.actuators is not None else gripper.joints
        self.actuators = np.array([model.actuator(p + a).id for a in acts])
        #: which joint (index into ``joints``) each actuator drives
        self.actuator_joint = np.array([list(joints).index(model.actuator_trnid[a, 0]) for a in self.actuators])
        self.open = np.array(gripper.open, float)
        self.closed = np.array(gripper.closed_pos, float)
        self.opening = gripper.opening
        self.touch = np.array([model.sensor_adr[model.sensor(f"{p}{g}_grasp").id] for g in gripper.grasp_geoms])
        #: the grasp geoms (finger pads); their centres' mean is where a held object's centre belongs
        self.geoms = np.array([model.geom(p + g).id for g in gripper.grasp_geoms])

    def targets(self, fraction: np.ndarray) -> np.ndarray:
        """Joint targets (N, joints) for open fractions (N,): 0 closed, 1 open."""
        return self.closed + fraction[:, None] * (self.open - self.closed)

    def ctrl(self, fraction: np.ndarray) -> np.ndarray:
        """Actuator commands (N, actuators) for open fractions (N,)."""
        return self.targets(fraction)[:, self.actuator_joint]

    def fraction(self, qpos: np.ndarray) -> np.ndarray:
        """Mean open fraction (N,) of the joints' positions."""
        span = np.where(self.open != self.closed, self.open - self.closed, 1.0)
        return ((qpos[:, self.qpos] - self.closed) / span).mean(axis=-1)

    def fraction_rate(self, qvel: np.ndarray) -> np.ndarray:
        span = np.where(self.open != self.closed, self.open - self.closed, 1.0)
        return (qvel[:, self.dof] / span).mean(axis=-1)


class BaseHandles:
    """A differential-drive base: its free joint, wheels, bumper sensor, sensor mount, footprint."""

    def __init__(self, model: mujoco.MjModel, robot: RobotSpec):
        base, p = robot.base, robot.prefix
        self.body = model.body(p + base.body).id
        free = [j for j in range(model.njnt) if model.jnt_bodyid[j] == self.body
                and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        self.qpos = int(model.jnt_qposadr[free[0]])
        self.dof = int(model.jnt_dofadr[free[0]])
        wheels = np.array([model.joint(p + w).id for w in base.wheels])
        self.wheel_qpos = model.jnt_qposadr[wheels].copy()
        self.wheel_dof = model.jnt_dofadr[wheels].copy()
        acts = base.actuators if base.actuators is not None else base.wheels
        self.wheel_actuators = np.array([model.actuator(p + a).id for a in acts])
        bumper = base.bumper_site if base.bumper_site is not None else "bumper"
        self.bumper = int(model.sensor_adr[model.sensor(f"{p}{bumper}_touch").id])
        self.sensor_offset = np.array(base.sensor_pos, float)
        self.wheel_radius, self.track_width = base.wheel_radius, base.track_width
        # every joint of the robot below the free joint (wheels, casters, an arm): zeroed at reset
        subtree = {self.body}
        for b in range(self.body + 1, model.nbody):
            if model.body_parentid[b] in subtree:
                subtree.add(b)
        joints = [j for j in range(model.njnt) if model.jnt_bodyid[j] in subtree and j != free[0]]
        self.joint_qpos = np.array([model.jnt_qposadr[j] for j in joints if model.jnt_type[j] in
                                    (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)], np.int64)
        alone = robot_mjspec(robot).compile()  # the base's own geometry, without what it carries
        low, _, radius = base_geometry(alone, alone.body(base.body).id)
        #: height of the base frame above the floor when the lowest colliding geom touches it
        self.rest_height = -low
        #: largest horizontal radius of the chassis' colliding geoms, metres
        self.footprint = radius


def robot_summary(robot: RobotSpec) -> str:
    parts = [name for name in ("arm", "gripper", "base") if getattr(robot, name) is not None]
    return f"{robot.name} ({' + '.join(parts) or 'no parts'})"
