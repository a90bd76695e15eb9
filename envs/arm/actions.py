"""The arm's action spaces (``env.action_space``): how the policy's arm actions become joint targets.

Both keep a per-env joint position target (``env.joint_target``) that the arm's position actuators
track, clipped to each actuator's control range within its joint's range (``ArmHandles.target_lo``,
``target_hi``: no joint is ever commanded outside its range); the gripper command follows either way.

``joint_delta`` (default): one action per arm joint, ``delta_scale`` rad (m for a slide joint) of
target change per control step at 1; names ``<joint>_delta_rad``.

``ee_delta``: the end effector's displacement in the arm-base frame (the spec's ``arm.base_body``),
``ee_delta_scale`` metres per control step at 1 (``ee_dx_m``, ``ee_dy_m``, ``ee_dz_m``), and with
``ee_yaw`` its rotation about the gripper's approach axis (the spec's ``arm.ee_axis``),
``ee_yaw_scale`` rad per step (``ee_dyaw_rad``). The displacement moves a per-env end-effector
goal (``env.ee_goal``, arm-base frame, set where the end effector is at reset); each control step
one damped least-squares step (:func:`robolearn.envs.robots.ik.ee_delta_joint_step`: position
first; in its null space the approach axis is steered toward pointing down and the yaw follows
the command, held without ``ee_yaw``) moves the joint targets toward the goal, from where the
targets put the end effector (first order from the measured pose). So zero actions hold the end
effector where it was sent, and what one step leaves undone (curvature, damping) the next steps
finish. The goal never runs more than two full steps ahead of the targets (no wind-up against a
joint limit or a contact), and a joint target never more than ``MAX_TARGET_LEAD`` ahead of its
joint. The Jacobians come from the joints' world axes and anchors that the physics step already
computed (:func:`robolearn.envs.robots.ik.chain_jacobians`, equal to ``mj_jac``), with numpy
over all envs at once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from robolearn.envs.robots import ArmHandles, RobotSpecError
from robolearn.envs.robots.ik import chain_jacobians, cross, ee_delta_joint_step

#: the values of ``env.action_space``
ArmActionSpace = Literal["joint_delta", "ee_delta"]
#: ee_delta: the most a joint target leads the joint's measured position, rad (m for a slide joint)
MAX_TARGET_LEAD = 0.3


class JointDeltaActions:
    """``joint_delta``: the joint targets move by ``action * delta_scale``."""

    name = "joint_delta"

    def __init__(self, arm: ArmHandles, delta_scale: float):
        self.arm, self.delta_scale = arm, delta_scale
        #: number of arm actions
        self.size = len(arm.names)

    def names_and_scale(self) -> tuple[list[str], list[float]]:
        """Action names with their units and the scale of each (robot command = action * scale)."""
        names = [f"{j}_delta_{unit}" for j, unit in zip(self.arm.names, self.arm.units)]
        return names, [self.delta_scale] * len(names)

    def space_info(self, model) -> dict[str, str]:
        """What the exported contract says about the space (``action.space``)."""
        return {"name": self.name}

    def reset(self, env, ids: np.ndarray) -> None:
        """Nothing to reset: the joint targets are the state."""

    def targets(self, env, actions: np.ndarray) -> np.ndarray:
        """New joint targets (N, k) from the arm actions (N, k) in [-1, 1]."""
        return np.clip(env.joint_target + actions * self.delta_scale, self.arm.target_lo, self.arm.target_hi)


class EndEffectorDeltaActions:
    """``ee_delta``: end-effector displacement (and yaw) in the arm-base frame, through DLS IK."""

    name = "ee_delta"

    def __init__(self, arm: ArmHandles, model, ee_delta_scale: float, ee_yaw: bool, ee_yaw_scale: float):
        self.arm = arm
        carriers, body = set(), int(model.site_bodyid[arm.ee_site])
        while body > 0:
            carriers.add(body)
            body = int(model.body_parentid[body])
        for name, joint in zip(arm.names, arm.joints):
            if model.jnt_bodyid[joint] not in carriers:
                raise RobotSpecError(f"robot.arm.joints: {name!r} does not carry the end effector; action_space "
                                     "ee_delta needs the arm's joints to be the chain from its base to its end "
                                     "effector")
        #: which arm joints slide (the others are hinges)
        self.slide = np.array([unit == "m" for unit in arm.units])
        self.ee_delta_scale, self.ee_yaw, self.ee_yaw_scale = ee_delta_scale, ee_yaw, ee_yaw_scale
        self.size = 4 if ee_yaw else 3
        #: the farthest the goal runs ahead of where the joint targets put the end effector (two
        #: full steps): a goal the arm cannot follow (joint limits, contact) does not wind up
        self.max_lead = 2 * np.sqrt(3) * ee_delta_scale

    def names_and_scale(self) -> tuple[list[str], list[float]]:
        names, scale = ["ee_dx_m", "ee_dy_m", "ee_dz_m"], [self.ee_delta_scale] * 3
        if self.ee_yaw:
            names.append("ee_dyaw_rad")
            scale.append(self.ee_yaw_scale)
        return names, scale

    def space_info(self, model) -> dict[str, str]:
        """The space and the frame its displacements are in: the arm-base body's name."""
        return {"name": self.name, "frame": model.body(self.arm.base_body).name}

    def reset(self, env, ids: np.ndarray) -> None:
        """The end-effector goal of envs ``ids`` where the end effector is (after a reset)."""
        base_pos, base_rot = env.base_frame()
        env.ee_goal[ids] = np.einsum("nji,nj->ni", base_rot[ids], env.ee_pos[ids] - base_pos[ids])

    def targets(self, env, actions: np.ndarray) -> np.ndarray:
        arm = self.arm
        base_pos, base_rot = env.base_frame()
        jac_pos, jac_rot = chain_jacobians(env.joint_axis[:, arm.joints], env.joint_anchor[:, arm.joints], env.ee_pos,
                                           self.slide)
        # where the end effector will be, and where the gripper will point, once the joints reach
        # their targets (first order): the step continues from there, so a lagging arm winds nothing up
        lag = env.joint_target - env.qpos[:, arm.qpos]
        at_target = env.ee_pos + np.einsum("nmk,nk->nm", jac_pos, lag)
        approach = env.site_xmat[:, arm.ee_site].reshape(-1, 3, 3) @ arm.ee_axis
        approach = approach + cross(np.einsum("nmk,nk->nm", jac_rot, lag), approach)
        goal = base_pos + np.einsum("nij,nj->ni", base_rot, env.ee_goal + actions[:, :3] * self.ee_delta_scale)
        lead = goal - at_target
        lead *= np.minimum(1.0, self.max_lead / np.maximum(np.linalg.norm(lead, axis=-1, keepdims=True), 1e-12))
        env.ee_goal = np.einsum("nji,nj->ni", base_rot, at_target + lead - base_pos)
        yaw_rate = actions[:, 3] * self.ee_yaw_scale if self.ee_yaw else np.zeros(len(actions))
        step = ee_delta_joint_step(jac_pos, jac_rot, lead, approach, -base_rot[:, :, 2], yaw_rate, env.joint_target,
                                   arm.target_lo, arm.target_hi)
        # targets no farther than MAX_TARGET_LEAD ahead of the joints (a slow joint, Fetch's wrist
        # roll at its force limit, would otherwise be sent far ahead of where the step was linearised)
        q = env.qpos[:, arm.qpos]
        target = np.clip(env.joint_target + step, q - MAX_TARGET_LEAD, q + MAX_TARGET_LEAD)
        return np.clip(target, arm.target_lo, arm.target_hi)


def arm_actions(cfg, arm: ArmHandles, model) -> JointDeltaActions | EndEffectorDeltaActions:
    """The action space ``cfg.action_space`` names, from the task config's keys."""
    if cfg.action_space == "ee_delta":
        return EndEffectorDeltaActions(arm, model, cfg.ee_delta_scale, cfg.ee_yaw, cfg.ee_yaw_scale)
    return JointDeltaActions(arm, cfg.delta_scale)
