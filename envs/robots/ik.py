"""Inverse kinematics of an arm by damped least squares (DLS): the project's one solver.

:func:`dls` solves ``dq = J^T (J J^T + damping^2 I)^-1 e`` over any leading batch axes. Two uses:

* :func:`ik` drives one arm to a world point by iterating DLS steps on a scratch ``MjData`` (the
  task regions' reach check, ``robolearn robot check``, scripted grasps);
* :func:`ee_delta_joint_step` is one DLS step for N envs at once: how ``env.action_space: ee_delta``
  turns a commanded end-effector displacement into joint-target changes. The position task comes
  first; in its null space the gripper's approach axis is steered toward pointing down and its
  rotation about that axis follows the commanded yaw rate (zero when the task does not command
  yaw). A joint whose target would leave its range is locked and the step solved again without
  it, so the other joints make up the motion; the caller clips the targets to the ranges.

Damping (:data:`POSITION_DAMPING`, metres) bounds the step near singular poses: along a direction
of singular value ``sigma`` the joints move ``sigma / (sigma^2 + damping^2)`` per metre asked, at
most ``1 / (2 * damping)`` (0.33 rad for a 2 cm delta); away from singularities the end effector
moves ``sigma^2 / (sigma^2 + damping^2)`` of the delta (above 97% from sigma = 0.2 m; arm5's are
0.27-0.56 m about its home pose), and the ee_delta goal has the next steps make up the rest.
:func:`chain_jacobians` builds the Jacobians from the joints' world axes and anchors.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robolearn.envs.robots.handles import ArmHandles

#: DLS damping of the end-effector position task, metres
POSITION_DAMPING = 0.03
#: DLS damping of the orientation task solved in the position task's null space, rad
ORIENTATION_DAMPING = 0.1
#: share of the approach axis' tilt away from pointing down corrected per control step
TILT_GAIN = 0.2
#: the most the tilt correction turns the gripper per control step, rad
MAX_TILT_STEP = 0.05
#: the largest joint-target change per control step (rad, or m for a slide joint)
MAX_JOINT_STEP = 0.25


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a x b`` over the last axis (length 3), broadcasting; cheaper than ``np.cross`` on small batches."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def chain_jacobians(axis: np.ndarray, anchor: np.ndarray, point: np.ndarray, slide: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """World Jacobians (N, 3, k) of a point carried by a chain of k hinge and slide joints, from the
    joints' world axes and anchors (N, k, 3), MuJoCo's ``xaxis`` and ``xanchor`` after kinematics,
    and the point (N, 3): a hinge's columns are ``axis x (point - anchor)`` and ``axis``, a slide's
    (``slide`` (k,) true) ``axis`` and 0. Equal to ``mj_jac`` for joints that all carry the point;
    no kinematics is recomputed (``Batch.jac`` reruns ``mj_kinematics`` per simulation)."""
    hinge = ~slide[:, None]
    pos = np.where(hinge, cross(axis, point[:, None, :] - anchor), axis)
    return np.swapaxes(pos, 1, 2), np.swapaxes(axis * hinge, 1, 2)


def dls(jac: np.ndarray, err: np.ndarray, damping: float) -> np.ndarray:
    """Damped least-squares solution ``dq`` (..., k) of ``jac @ dq = err`` for Jacobians (..., m, k)
    and task errors (..., m)."""
    jjt = jac @ np.swapaxes(jac, -1, -2)
    jjt += damping ** 2 * np.eye(jac.shape[-2])
    return np.einsum("...mk,...m->...k", jac, np.linalg.solve(jjt, err[..., None])[..., 0])


def _damped_pinv(jac: np.ndarray, damping: float) -> np.ndarray:
    """``J^T (J J^T + damping^2 I)^-1`` (..., k, m)."""
    jjt = jac @ np.swapaxes(jac, -1, -2)
    jjt += damping ** 2 * np.eye(jac.shape[-2])
    return np.swapaxes(np.linalg.solve(jjt, jac), -1, -2)


def _prioritised_step(jac_pos: np.ndarray, jac_rot: np.ndarray, delta: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Joint changes (N, k): the end-effector displacement ``delta`` (N, 3) first, the angular
    motion ``omega`` (N, 3) as far as the position task's null space allows. A step larger than
    :data:`MAX_JOINT_STEP` gives up the orientation part first, then scales the position part."""
    dq = dls(jac_pos, delta, POSITION_DAMPING)
    # projector onto the position task's null space (near-undamped: a damped one leaks the
    # orientation motion into the position by damping^2 / sigma^2)
    null = np.eye(jac_pos.shape[-1]) - _damped_pinv(jac_pos, 1e-4) @ jac_pos
    left = omega - np.einsum("nmk,nk->nm", jac_rot, dq)
    dq_rot = dls(jac_rot @ null, left, ORIENTATION_DAMPING)
    largest, largest_rot = np.abs(dq).max(-1, keepdims=True), np.abs(dq_rot).max(-1, keepdims=True)
    dq_rot *= np.clip((MAX_JOINT_STEP - largest) / np.maximum(largest_rot, 1e-12), 0.0, 1.0)
    return dq * np.minimum(1.0, MAX_JOINT_STEP / np.maximum(largest, 1e-12)) + dq_rot


def ee_delta_joint_step(jac_pos: np.ndarray, jac_rot: np.ndarray, delta: np.ndarray, approach: np.ndarray,
                        down: np.ndarray, yaw_rate: np.ndarray, target: np.ndarray, lo: np.ndarray,
                        hi: np.ndarray) -> np.ndarray:
    """Joint-target changes (N, k) that move the end effector by ``delta`` (N, 3, world frame).

    ``jac_pos``, ``jac_rot`` (N, 3, k): the end effector's world Jacobians over the arm's joints;
    ``approach`` (N, 3): the gripper's approach axis in the world, steered toward ``down`` (N, 3)
    in the null space of the position task, with ``yaw_rate`` (N,) rad of rotation about it;
    ``target`` (N, k): the joint targets the step starts from, inside ``[lo, hi]`` (k,). Joints
    whose target the step would push out of range are locked and the step solved again."""
    tilt = TILT_GAIN * cross(approach, down)
    tilt *= np.minimum(1.0, MAX_TILT_STEP / np.maximum(np.linalg.norm(tilt, axis=-1, keepdims=True), 1e-12))
    omega = tilt + yaw_rate[:, None] * approach
    step = _prioritised_step(jac_pos, jac_rot, delta, omega)
    blocked = ((target + step > hi) & (step > 0)) | ((target + step < lo) & (step < 0))
    rows = np.flatnonzero(blocked.any(axis=-1))
    if rows.size:  # solve again, for those envs only, without the blocked joints
        free = (~blocked[rows])[:, None, :]
        step[rows] = _prioritised_step(jac_pos[rows] * free, jac_rot[rows] * free, delta[rows], omega[rows])
    return step


# ---------------------------------------------------------------------------------------------
# iterative IK of one arm to a goal


def ik(model: mujoco.MjModel, data: mujoco.MjData, arm: ArmHandles, goal: np.ndarray, q0: np.ndarray,
       point_down: bool = True, iters: int = 60, restarts: int = 0) -> tuple[np.ndarray, float]:
    """Arm joint positions putting the end effector at world point ``goal`` (with its approach
    axis, the spec's ``arm.ee_axis``, pointing down when ``point_down``), from ``q0``, and the
    position error left (metres).
    Damped least squares on a scratch copy of ``data``; joint limits respected. ``restarts``
    more starts from seeded random joint positions keep the best solution (local minima)."""
    best = _ik_from(model, data, arm, goal, q0, point_down, iters)
    rng = np.random.default_rng(0)
    for _ in range(restarts):
        if best[1] < 1e-3:
            break
        found = _ik_from(model, data, arm, goal, rng.uniform(arm.ctrl_lo, arm.ctrl_hi), point_down, iters)
        best = found if found[1] < best[1] else best
    return best


def _ik_from(model, data, arm, goal, q0, point_down, iters):
    scratch = mujoco.MjData(model)
    scratch.qpos[:] = data.qpos
    scratch.mocap_pos[:] = data.mocap_pos
    scratch.mocap_quat[:] = data.mocap_quat
    q = np.clip(np.array(q0, float), arm.ctrl_lo, arm.ctrl_hi)
    jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    for _ in range(iters):
        scratch.qpos[arm.qpos] = q
        mujoco.mj_kinematics(model, scratch)
        mujoco.mj_comPos(model, scratch)
        mujoco.mj_jacSite(model, scratch, jp, jr, arm.ee_site)
        err = goal - scratch.site_xpos[arm.ee_site]
        jac = jp[:, arm.dof]
        if point_down:
            approach = scratch.site_xmat[arm.ee_site].reshape(3, 3) @ arm.ee_axis
            err = np.concatenate([err, np.cross(approach, [0.0, 0.0, -1.0])[:2]])
            jac = np.vstack([jac, jr[:2, arm.dof]])
        q = np.clip(q + np.clip(dls(jac, err, 0.01), -0.3, 0.3), arm.ctrl_lo, arm.ctrl_hi)
    scratch.qpos[arm.qpos] = q
    mujoco.mj_kinematics(model, scratch)
    return q, float(np.linalg.norm(goal - scratch.site_xpos[arm.ee_site]))
