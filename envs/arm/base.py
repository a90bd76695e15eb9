"""Shared core of the arm tasks (Reach, Push, PickPlace, and MobilePick on top).

:class:`ArmTaskEnv` owns what the tasks share: the arm + gripper of the robot spec ``env.robot``
(:mod:`robolearn.envs.robots`; default the bundled ``arm5``) mounted in a scene, position control
through the action space ``env.action_space``, the observation terms, the object (size per env
through a layout parameter), grasp detection from the grasp geoms' touch sensors and the episode
metrics. A task module fills in its target sampling, its reward terms (named functions of
:mod:`robolearn.envs.rewards`, weighted by the core from ``env.rewards``) and its success condition.

Actions (normalised to [-1, 1]): the arm actions of ``env.action_space``
(:mod:`robolearn.envs.arm.actions`: ``joint_delta``, one joint-target change per arm joint,
``delta_scale`` rad per step at 1; or ``ee_delta``, the end effector's displacement in the
arm-base frame, ``ee_delta_scale`` m per step at 1, through IK) and one gripper command (-1 fully
open, +1 closed; the robot command is the open fraction, 1 open, 0 closed); a task without the
gripper action (Push) holds the gripper closed and lists the command in ``fixed_commands``.
Observations (``policy``), all in the arm-base frame (the spec's
``arm.base_body``): joint positions and velocities (one per arm joint), gripper open fraction and
its rate, end-effector pose (position + two rotation columns),
object position, orientation and velocity relative to the gripper, target relative to the object
(Reach: to the gripper), previous action. ``critic`` adds the grasp geoms' contact forces, the grasp
indicator, the object's size and position and the target's position (randomization parameters are
appended by the core).

A cube knocked off the table (its centre 5 cm below the table top, not in the gripper) ends the
episode as a failure: it cannot be picked up from the floor.

Episode metrics: return, length, success, the reward terms' sums and what the episode did with the
object (:mod:`robolearn.envs.arm.object_metrics`; Reach has no object to report on beyond the
first three, Push no grasp to carry with):

=====================  =======================================================================
``time_to_grasp``      seconds to the first grasp (the episode's duration when it never grasped)
``max_lift``           metres the object rose above its resting height, held or not (max)
``max_carry_height``   metres the object was held above the table top (max; 0 if never grasped)
``drops``              events: the object lost from a grasp while lifted (> 2 cm), or knocked
                       off the table, even if caught again
``thrown_or_dropped``  1 if the object left the gripper while lifted and came to rest (or the
                       episode ended) outside the target zone, or was knocked off the table
                       without having been carried; 0 otherwise (placing it in the zone is 0)
``knocked_off``        1 if the object was knocked off the table (swept or pushed, not let go in
                       the air): the part of ``thrown_or_dropped`` that no grasp was lost in
=====================  =======================================================================
"""

from __future__ import annotations

import json

import mujoco
import numpy as np

from robolearn.config import ConfigError
from robolearn.envs.arm.actions import arm_actions
from robolearn.envs.arm.config import ArmTaskConfig, Region
from robolearn.envs.arm.object_metrics import OBJECT_METRICS, ObjectMetrics
from robolearn.envs.arm.obs_info import arm_obs_term_info
from robolearn.envs.core import BatchedMujocoEnv
from robolearn.envs.rewards import reward_action_rate, reward_joint_limit
from robolearn.envs.robots import (
    ArmHandles,
    GripperHandles,
    RobotSpec,
    RobotSpecError,
    add_look_at_camera,
    compose,
    scene_mjspec,
)
from robolearn.envs.robots.check import unreachable_points

#: task regions already checked for reach: key -> {region name: (first unreachable point, error)}
_REACH_CHECKED: dict[str, dict[str, tuple[np.ndarray, float]]] = {}
TABLE_Z = 0.4  # table top height in the table-top scene, metres
_PARK = np.array([-1.0, 0.0])  # where a task without an object leaves it (on the floor behind the arm)
#: the gripper's robot command: open fraction (0 closed, 1 fully open)
GRIPPER_COMMAND = "gripper_open_fraction"


# ---------------------------------------------------------------------------------------------
# grasp detection


def grasp_indicator(pad_forces: np.ndarray, near_object: np.ndarray, threshold: float) -> np.ndarray:
    """1 where the grasp geoms' contact forces (N, k) sum above ``threshold`` with every grasp geom
    touching and the object between the fingers (``near_object``), else 0."""
    touching = (pad_forces.sum(axis=-1) > threshold) & (pad_forces.min(axis=-1) > 0.0)
    return (touching & near_object).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# helpers


def to_frame(vec: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """World vectors (N, 3) into frames with rotation matrices (N, 3, 3): ``R^T v``."""
    return np.einsum("nji,nj->ni", rot, vec)


class ArmTaskEnv(ObjectMetrics, BatchedMujocoEnv):
    """Batched arm task on the shared core; subclasses set the scene and fill in the task hooks."""

    #: the object metrics the task reports (robolearn.envs.arm.object_metrics)
    task_metrics = OBJECT_METRICS
    video_camera = "three_quarter"
    config_cls: type[ArmTaskConfig] = ArmTaskConfig
    scene = ("robolearn.envs.arm", "tabletop.xml")
    #: whether the task uses the object (Reach leaves it on the floor, out of the way)
    uses_object = True
    #: whether the policy commands the gripper; Push holds the fingers closed (a pusher)
    gripper_action = True
    table_z = TABLE_Z

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        n, m, cfg = self.num_envs, self.model, self.cfg
        obj_joint = m.joint("object").id
        self._obj_qpos = m.jnt_qposadr[obj_joint]
        self._obj_dof = m.jnt_dofadr[obj_joint]
        self._obj_geom = m.geom("object").id
        self._obj_body = m.body("object").id
        self._target_mocap = m.body_mocapid[m.body("target").id]
        self.site_xpos = self.batch.bind("site_xpos")
        self.site_xmat = self.batch.bind("site_xmat")
        self.xpos = self.batch.bind("xpos")
        self.xmat = self.batch.bind("xmat")
        self.geom_xpos = self.batch.bind("geom_xpos")
        self.joint_axis = self.batch.bind("xaxis")  # world joint axes and anchors (ee_delta's Jacobians)
        self.joint_anchor = self.batch.bind("xanchor")
        self._geom_size = self.model_field("geom_size")
        self._geom_rbound = self.model_field("geom_rbound")
        self._geom_aabb = self.model_field("geom_aabb")

        # per-env task state
        self.joint_target = np.zeros((n, len(self.arm.names)))
        self.ee_goal = np.zeros((n, 3))  # ee_delta: where the end effector is sent (arm-base frame)
        self.target = np.zeros((n, 3))  # world frame
        self.object_half = np.full(n, cfg.object_size.hi)
        self.object_rest_z = np.zeros(n)  # world z of the object's centre resting on the table
        self.prev_action = np.zeros((n, self.single_action_space.shape[0]))
        self.prev_ee = np.zeros((n, 3))
        self.ee_vel = np.zeros((n, 3))
        self.grasped = np.zeros(n, bool)
        self.hold = np.zeros(n, np.int64)
        self._init_object_metrics()
        self._check_reach()

    # ------------------------------------------------------------------ spec
    def robot_specs(self) -> list[RobotSpec]:
        """The robot specs composed into the scene, in attachment order."""
        return [self.cfg.robot]

    def _build_model(self) -> mujoco.MjModel:
        model = compose(scene_mjspec(*self.scene), self.robot_specs(), self.scene[1], edit=self._edit_spec)
        timeconst = self.cfg.grasp_timeconst
        if timeconst is not None and timeconst < 2 * model.opt.timestep:
            raise ConfigError(f"env.grasp_timeconst: {timeconst:g} s is under two physics timesteps "
                              f"({2 * model.opt.timestep:g} s), where MuJoCo clamps it")
        #: the arm's and gripper's indices in the model (robolearn.envs.robots.handles)
        self.arm = ArmHandles(model, self.cfg.robot)
        self.gripper = GripperHandles(model, self.cfg.robot)
        #: how arm actions become joint targets (env.action_space, robolearn.envs.arm.actions)
        self.arm_actions = arm_actions(self.cfg, self.arm, model)
        #: the action space an exported contract names (``action.space``)
        self.action_space_info = self.arm_actions.space_info(model)
        return model

    @property
    def obs_term_info(self) -> dict[str, dict]:
        """What the export contract tells the robot side about each policy observation term."""
        to_gripper = type(self)._task_target_rel is not ArmTaskEnv._task_target_rel
        return arm_obs_term_info(self.cfg.robot, self.arm, "the gripper" if to_gripper else "the object")

    def _edit_spec(self, spec: mujoco.MjSpec) -> None:
        """The task's scene additions (:meth:`_edit_scene`), then the settings every arm task
        applies to the composed robot: the grasp geoms' contact time constant."""
        self._edit_scene(spec)
        timeconst, robot = self.cfg.grasp_timeconst, self.cfg.robot
        if timeconst is None:
            return
        for name in robot.gripper.grasp_geoms:
            geom = spec.geom(robot.prefix + name)
            geom.solref = [timeconst, geom.solref[1]]

    def _edit_scene(self, spec: mujoco.MjSpec) -> None:
        """Additions to the composed scene before it compiles: the video camera, a three-quarter
        view of the table from the front right (arm5 and a robot standing behind the table)."""
        add_look_at_camera(spec.worldbody, self.video_camera, [1.1, -0.8, 1.0], [0.35, 0.0, 0.5])

    def _action_spec(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Names, scale and offset of the actions (robot command = action * scale + offset): the
        arm actions of ``action_space`` (joint deltas named after the robot's joints, rad or m; or
        the end-effector deltas, m and rad), then (unless ``gripper_action`` is off) the gripper's
        open fraction, -1 open, +1 closed."""
        names, scale = self.arm_actions.names_and_scale()
        offset = [0.0] * len(names)
        if self.gripper_action:
            names.append(GRIPPER_COMMAND)
            scale.append(-0.5)
            offset.append(0.5)
        return names, np.array(scale), np.array(offset)

    def _fixed_commands(self) -> dict[str, float]:
        """Without the gripper action the fingers are held closed."""
        return {} if self.gripper_action else {GRIPPER_COMMAND: 0.0}

    def _layout_nominal(self) -> dict[str, float]:
        """Layout parameters randomization may set per env: ``object_size`` scales the cube,
        ``workspace`` scales the object and target regions about their centres."""
        return {"object_size": 1.0, "workspace": 1.0}

    def _obs_terms(self) -> dict[str, dict[str, int]]:
        nj, na = len(self.arm.names), len(self._action_spec()[0])
        policy = {"joint_pos": nj, "joint_vel": nj, "gripper": 2, "ee_pose": 9, "object_pos": 3,
                  "object_rot": 6, "object_vel": 3, "target": 3, "last_action": na}
        critic = {**policy, "contact_forces": len(self.gripper.touch), "grasped": 1, "object_size": 1,
                  "object_position": 3, "target_position": 3}
        return {"policy": policy, "critic": critic}

    # ------------------------------------------------------------------ reach
    def task_regions(self) -> dict[str, tuple[Region, bool]]:
        """The regions the end effector must reach (config key -> region in the arm-base frame,
        whether with the gripper pointing down): where the cube lies (pointing down to grasp it)
        and where the target is (any orientation)."""
        regions = {"target_region": (self.cfg.target_region, False)}
        if self.uses_object:
            regions = {"object_region": (self.cfg.object_region, self.gripper_action), **regions}
        return regions

    def _check_reach(self) -> None:
        """RobotSpecError when a corner or the centre of a task region is out of the arm's reach
        (checked once per robot, scene and regions; the IK is :func:`robolearn.envs.robots.check.ik`)."""
        regions = self.task_regions()
        key = json.dumps([self.cfg.robot.model_dump(mode="json"), self.scene,
                          {k: [r.model_dump(mode="json"), down] for k, (r, down) in regions.items()}], sort_keys=True)
        if key not in _REACH_CHECKED:
            _REACH_CHECKED[key] = unreachable_points(self, regions)
        for name, (point, error) in _REACH_CHECKED[key].items():
            raise RobotSpecError(f"env.{name}: the point {np.round(point, 3).tolist()} (arm-base frame, z above the "
                                 f"table) is out of reach of robot {self.cfg.robot.name!r} ({error * 100:.1f} cm short"
                                 f"{' with the gripper pointing down' if regions[name][1] else ''}); move the region "
                                 f"or the robot's mount (robolearn robot check shows its workspace)")

    # ------------------------------------------------------------------ frames
    def base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Arm-base position (N, 3) and rotation (N, 3, 3) in the world."""
        base = self.arm.base_body
        return self.xpos[:, base], self.xmat[:, base].reshape(-1, 3, 3)

    @property
    def ee_pos(self) -> np.ndarray:
        return self.site_xpos[:, self.arm.ee_site]

    @property
    def grasp_point(self) -> np.ndarray:
        """The middle of the gripper's grasp geoms (N, 3): where a firmly held object's centre sits,
        the pinch passing through it (the end-effector site may sit elsewhere, e.g. at the fingertips)."""
        return self.geom_xpos[:, self.gripper.geoms].mean(axis=1)

    @property
    def object_pos(self) -> np.ndarray:
        return self.qpos[:, self._obj_qpos:self._obj_qpos + 3]

    def pad_forces(self) -> np.ndarray:
        """Contact forces (N, k) on the gripper's grasp geoms (their touch sensors)."""
        return self.sensordata[:, self.gripper.touch]

    def world_of(self, local: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Arm-base-frame points (k, 3) (z above the table top) to world points, for envs ``ids``."""
        pos, rot = self.base_frame()
        out = np.einsum("nij,nj->ni", rot[ids], local) + pos[ids]
        out[:, 2] = local[:, 2] + self.table_z
        return out

    # ------------------------------------------------------------------ reset
    def _sample_region(self, region: Region, ids: np.ndarray) -> np.ndarray:
        """Points (k, 3) uniform in ``region`` shrunk/grown about its centre by the workspace
        layout parameter (arm-base frame, z above the table top)."""
        k, rng = ids.size, self.np_random
        spread = self.layout_params["workspace"][ids, None]
        lo = np.array([region.x.lo, region.y.lo, region.z.lo])
        hi = np.array([region.x.hi, region.y.hi, region.z.hi])
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        return mid + rng.uniform(-1.0, 1.0, (k, 3)) * half * spread

    def _reset_arm(self, ids: np.ndarray) -> None:
        k, rng, arm, gripper = ids.size, self.np_random, self.arm, self.gripper
        q = arm.home + rng.uniform(-1.0, 1.0, (k, len(arm.names))) * self.cfg.home_noise
        q = np.clip(q, arm.ctrl_lo, arm.ctrl_hi)
        qpos = self.qpos[ids]
        qpos[:, arm.qpos] = q
        grip = np.full(k, 1.0 if self.gripper_action else self.fixed_commands[GRIPPER_COMMAND])
        qpos[:, gripper.qpos] = gripper.targets(grip)
        self.qpos[ids] = qpos
        self.joint_target[ids] = q
        ctrl = self.ctrl[ids]
        ctrl[:, arm.actuators] = q
        ctrl[:, gripper.actuators] = gripper.ctrl(grip)
        self.ctrl[ids] = ctrl

    def _resize_object(self, ids: np.ndarray) -> np.ndarray:
        """Draw each env's cube half side (``object_size`` times the layout parameter), write it to
        the per-env geom fields and return it."""
        cfg = self.cfg
        half = self.np_random.uniform(cfg.object_size.lo, cfg.object_size.hi, ids.size) \
            * self.layout_params["object_size"][ids]
        geom = self._obj_geom
        self._geom_size[ids, geom] = half[:, None]
        self._geom_rbound[ids, geom] = half * np.sqrt(3.0)
        self._geom_aabb[ids, geom, :3] = 0.0
        self._geom_aabb[ids, geom, 3:] = half[:, None]
        self.object_half[ids] = half
        return half

    def _reset_object(self, ids: np.ndarray) -> None:
        """Cube size (per-env geom fields), resting pose on the table (or parked) and yaw."""
        k, rng, cfg = ids.size, self.np_random, self.cfg
        half = self._resize_object(ids)
        if self.uses_object:
            pos = self.world_of(self._sample_region(cfg.object_region, ids), ids)
            pos[:, 2] = self.table_z + half
        else:
            pos = np.zeros((k, 3))
            pos[:, :2] = _PARK
            pos[:, 2] = half
        yaw = rng.uniform(-np.pi / 4, np.pi / 4, k)
        base_yaw = self._base_yaw(ids)
        qpos = self.qpos[ids]
        a = self._obj_qpos
        qpos[:, a:a + 3] = pos
        qpos[:, a + 3] = np.cos((yaw + base_yaw) / 2)
        qpos[:, a + 4:a + 6] = 0.0
        qpos[:, a + 6] = np.sin((yaw + base_yaw) / 2)
        self.qpos[ids] = qpos
        self.object_rest_z[ids] = self.table_z + half

    def _base_yaw(self, ids: np.ndarray) -> np.ndarray:
        rot = self.base_frame()[1][ids]
        return np.arctan2(rot[:, 1, 0], rot[:, 0, 0])

    def _sample_target(self, ids: np.ndarray) -> np.ndarray:
        """World target positions (k, 3) for envs ``ids`` (tasks override)."""
        return self.world_of(self._sample_region(self.cfg.target_region, ids), ids)

    def _reset_task_state(self, ids: np.ndarray) -> None:
        self.prev_action[ids] = 0.0
        self.grasped[ids] = False
        self.hold[ids] = 0
        self._reset_object_metrics(ids)

    def _reset_envs(self, ids: np.ndarray) -> None:
        self.qvel[ids] = 0.0
        self._reset_robot(ids)
        # kinematics of the robot's new pose (base frame, gripper) before placing object and target
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_POS)
        self._reset_object(ids)
        target = self._sample_target(ids)
        self.target[ids] = target
        self.mocap_pos[ids, self._target_mocap] = target
        self._reset_task_state(ids)
        self.prev_ee[ids] = self.ee_pos[ids]
        self.ee_vel[ids] = 0.0
        self.arm_actions.reset(self, ids)

    def _reset_robot(self, ids: np.ndarray) -> None:
        """Robot pose at reset (MobilePick also places its base)."""
        self._reset_arm(ids)

    # ------------------------------------------------------------------ step
    def _apply_arm_actions(self, actions: np.ndarray) -> None:
        """Arm actions (the first of ``actions``) to joint targets, then the gripper command."""
        na = self.arm_actions.size
        self.joint_target = self.arm_actions.targets(self, actions[:, :na])
        self.ctrl[:, self.arm.actuators] = self.joint_target
        if self.gripper_action:
            fraction = actions[:, na] * self.action_scale[-1] + self.action_offset[-1]
        else:
            fraction = np.full(self.num_envs, self.fixed_commands[GRIPPER_COMMAND])
        self.ctrl[:, self.gripper.actuators] = self.gripper.ctrl(fraction)

    def _apply_actions(self, actions: np.ndarray) -> None:
        self._apply_arm_actions(actions)

    def _update_grasp(self) -> dict[str, np.ndarray]:
        """Per-step quantities every task uses; updates grasp bookkeeping and the metrics."""
        ee, obj = self.ee_pos, self.object_pos
        self.ee_vel = (ee - self.prev_ee) / self.control_dt
        self.prev_ee = ee.copy()
        forces = self.pad_forces()
        ee_obj = np.linalg.norm(obj - ee, axis=-1)
        near = ee_obj < self.object_half + 0.02
        grasped = grasp_indicator(forces, near, self.cfg.grasp_force) > 0
        lift = obj[:, 2] - self.object_rest_z
        self._track_object(grasped, lift, forces)
        self.grasped = grasped
        return {"ee_obj": ee_obj, "lift": lift, "grasped": grasped.astype(np.float64), "forces": forces}

    def _penalty_terms(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """The ``action_rate`` and ``joint_limit`` terms every arm task has (updates the previous action)."""
        rate = reward_action_rate(actions, self.prev_action)
        self.prev_action = actions.astype(np.float64).copy()
        limit = reward_joint_limit(self.qpos[:, self.arm.qpos], self.arm.jnt_lo, self.arm.jnt_hi, 0.1)
        return {"action_rate": rate, "joint_limit": limit}

    def _held_success(self, within: np.ndarray) -> np.ndarray:
        """Success after ``hold_steps`` consecutive steps ``within`` the success radius (marks the
        episode a success)."""
        self.hold = np.where(within, self.hold + 1, 0)
        success = self.hold >= self.cfg.hold_steps
        self.episode_success |= success
        return success

    def _terminated(self, success: np.ndarray) -> np.ndarray:
        """Episode ends: success if ``terminate_on_success``, a cube knocked off the table (below
        the table top and not in the gripper) always."""
        return (success & self.cfg.terminate_on_success) | self.off_table

    def _task_metrics(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return self._object_metrics(ids)

    # ------------------------------------------------------------------ observations
    def _task_target_rel(self) -> np.ndarray:
        """World vector the ``target`` term reports (default: object to target)."""
        return self.target - self.object_pos

    def _observe(self) -> dict[str, np.ndarray]:
        base_pos, rot = self.base_frame()
        ee = self.ee_pos
        ee_rot = np.einsum("nji,njk->nik", rot, self.site_xmat[:, self.arm.ee_site].reshape(-1, 3, 3))
        obj = self.object_pos
        obj_rot = np.einsum("nji,njk->nik", rot, self.xmat[:, self._obj_body].reshape(-1, 3, 3))
        obj_vel = self.qvel[:, self._obj_dof:self._obj_dof + 3]
        forces = self.pad_forces()
        return {
            "joint_pos": self.qpos[:, self.arm.qpos],
            "joint_vel": self.qvel[:, self.arm.dof],
            "gripper": np.stack([self.gripper.fraction(self.qpos), self.gripper.fraction_rate(self.qvel)], axis=-1),
            "ee_pose": np.concatenate([to_frame(ee - base_pos, rot),
                                       ee_rot[:, :, 0], ee_rot[:, :, 2]], axis=-1),
            "object_pos": to_frame(obj - ee, rot),
            "object_rot": np.concatenate([obj_rot[:, :, 0], obj_rot[:, :, 2]], axis=-1),
            "object_vel": to_frame(obj_vel - self.ee_vel, rot),
            "target": to_frame(self._task_target_rel(), rot),
            "last_action": self.last_action,
            "contact_forces": np.minimum(forces, 50.0) / 10.0,
            "grasped": self.grasped,
            "object_size": self.object_half,
            "object_position": to_frame(obj - base_pos, rot),
            "target_position": to_frame(self.target - base_pos, rot),
        }

