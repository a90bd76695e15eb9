"""``robolearn robot check``: what a roboticist checks on a robot before training with it.

For a composed task env (any robot spec in any task it fits): the joints with their ranges,
actuator gains and force limits, the masses, the end effector's reachable workspace (sampled) and
whether the task's regions lie inside it, a scripted grasp-and-lift of the task's cube, and whether
full-scale random actions keep the simulation stable at the control rate. :func:`ik`
(:mod:`robolearn.envs.robots.ik`: damped least squares on the arm's Jacobian) is what the region
check and the scripted grasp drive the arm with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from robolearn.envs.robots.handles import ArmHandles, joint_unit
from robolearn.envs.robots.ik import ik

_JOINT_TYPES = {int(mujoco.mjtJoint.mjJNT_HINGE): "hinge", int(mujoco.mjtJoint.mjJNT_SLIDE): "slide",
                int(mujoco.mjtJoint.mjJNT_BALL): "ball", int(mujoco.mjtJoint.mjJNT_FREE): "free"}


@dataclass
class CheckReport:
    """Everything ``robot check`` found; ``problems`` lists what would stop a training run."""

    robot: str
    task: str
    joints: list[dict[str, Any]] = field(default_factory=list)
    masses: dict[str, float] = field(default_factory=dict)
    workspace: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    grasp: dict[str, Any] = field(default_factory=dict)
    stability: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("robot", "task", "joints", "masses", "workspace", "base", "grasp",
                                              "stability", "problems")}

    def format(self) -> str:
        width = max([len(j["name"]) for j in self.joints] + [5]) + 2
        lines = [f"robot {self.robot} in {self.task}", "",
                 f"{'joint':<{width}}{'type':<7}{'range':<20}{'force limit':<13}{'damping':<9}{'armature':<10}actuator"]
        for j in self.joints:
            rng = "unlimited" if j["range"] is None else f"[{j['range'][0]:.3g}, {j['range'][1]:.3g}] {j['unit']}"
            force = "-" if j["force_limit"] is None else f"{j['force_limit']:.3g}"
            lines.append(f"{j['name']:<{width}}{j['type']:<7}{rng:<20}{force:<13}{j['damping']:<9.3g}"
                         f"{j['armature']:<10.3g}{j['actuator'] or '-'}")
        lines.append("")
        lines.append("masses (kg): " + ", ".join(f"{k} {v:.3g}" for k, v in self.masses.items()))
        if self.workspace:
            w = self.workspace
            lines.append(f"end-effector workspace (arm-base frame, {w['samples']} joint samples): "
                         f"x [{w['lo'][0]:.2f}, {w['hi'][0]:.2f}] y [{w['lo'][1]:.2f}, {w['hi'][1]:.2f}] "
                         f"z [{w['lo'][2]:.2f}, {w['hi'][2]:.2f}] m, reach {w['reach']:.2f} m")
            for name, r in w.get("regions", {}).items():
                how = "gripper pointing down, " if r["pointing_down"] else ""
                lines.append(f"  {name}: {r['reachable']:.0%} of {r['points']} points reachable "
                             f"({how}worst error {r['worst_error_m'] * 100:.1f} cm)")
        if self.base:
            b = self.base
            lines.append(f"base: wheel radius {b['wheel_radius']:g} m, track {b['track_width']:g} m, footprint radius "
                         f"{b['footprint_radius']:.3f} m, top speed {b['top_speed']:.2f} m/s at "
                         f"{b['max_wheel_speed']:g} rad/s")
        if self.grasp:
            g = self.grasp
            lines.append(f"scripted grasp: {'ok' if g['ok'] else 'FAILED'} (grasp force {g['force']:.1f} N, "
                         f"lift {g['lift'] * 100:.1f} cm, held {g['held']})")
        if self.stability:
            s = self.stability
            lines.append(f"full-scale random actions ({s['envs']} envs x {s['steps']} steps at "
                         f"{s['control_hz']:g} Hz): "
                         f"{'stable' if s['ok'] else 'UNSTABLE'} (max joint speed {s['max_joint_speed']:.3g}, "
                         f"max body speed {s['max_body_speed']:.3g} m/s)")
        lines.append("")
        lines.extend([f"problem: {p}" for p in self.problems] or ["no problems found"])
        return "\n".join(lines)


def describe_joints(model: mujoco.MjModel, joints: list[int]) -> list[dict[str, Any]]:
    out = []
    for j in joints:
        acts = [a for a in range(model.nu) if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT
                and model.actuator_trnid[a, 0] == j]
        act_desc, force = None, None
        if acts:
            a = acts[0]
            gain, bias = model.actuator_gainprm[a, 0], model.actuator_biasprm[a]
            if bias[1] != 0:  # a position servo: force = kp (ctrl - q) - kv qdot
                act_desc = f"{model.actuator(a).name}: position kp {gain:.3g} kv {abs(bias[2]):.3g}"
            elif bias[2] != 0:  # a velocity servo: force = kv (ctrl - qdot)
                act_desc = f"{model.actuator(a).name}: velocity kv {gain:.3g}"
            else:
                act_desc = f"{model.actuator(a).name}: gain {gain:.3g}"
            if model.actuator_forcelimited[a]:
                force = float(model.actuator_forcerange[a, 1])
        out.append({"name": model.joint(j).name, "type": _JOINT_TYPES.get(int(model.jnt_type[j]), "?"),
                    "range": model.jnt_range[j].tolist() if model.jnt_limited[j] else None,
                    "unit": joint_unit(model, j), "actuator": act_desc, "force_limit": force,
                    "damping": float(model.dof_damping[model.jnt_dofadr[j]]),
                    "armature": float(model.dof_armature[model.jnt_dofadr[j]])})
    return out


def sample_workspace(model: mujoco.MjModel, arm: ArmHandles, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """End-effector positions over uniformly sampled joint positions (within the actuator
    ranges), in the arm-base frame: bounding box and the farthest reach."""
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    points = np.zeros((samples, 3))
    for i in range(samples):
        data.qpos[arm.qpos] = rng.uniform(arm.ctrl_lo, arm.ctrl_hi)
        mujoco.mj_kinematics(model, data)
        rot = data.xmat[arm.base_body].reshape(3, 3)
        points[i] = rot.T @ (data.site_xpos[arm.ee_site] - data.xpos[arm.base_body])
    return {"samples": samples, "lo": points.min(0).tolist(), "hi": points.max(0).tolist(),
            "reach": float(np.linalg.norm(points, axis=-1).max())}


def region_reachability(env, points_per_axis: int = 3, tolerance: float = 0.01) -> dict[str, dict[str, Any]]:
    """For each of the task's regions (``env.task_regions()``): the share of a grid of its points
    the end effector reaches (IK error below ``tolerance``) and the worst error."""
    model, arm = env.model, env.arm
    env.batch.forward(np.array([0]), stage=mujoco.mjtStage.mjSTAGE_POS)
    data = env.batch.get_data(0)
    out = {}
    for name, (region, down) in env.task_regions().items():
        grid = region_points(region, points_per_axis)
        grid[:, 2] = np.maximum(grid[:, 2], env.cfg.object_size.lo)
        world = env.world_of(grid, np.zeros(len(grid), np.int64))
        errors = np.array([ik(model, data, arm, p, arm.home, point_down=down, restarts=6)[1] for p in world])
        out[name] = {"points": int(len(grid)), "reachable": float((errors < tolerance).mean()),
                     "worst_error_m": float(errors.max()), "pointing_down": down}
    return out


def region_points(region, points_per_axis: int) -> np.ndarray:
    """A grid of points (k, 3) spanning a region (a single value on a flat axis)."""
    axes = [np.linspace(r.lo, r.hi, points_per_axis) if r.hi > r.lo else np.array([r.lo])
            for r in (region.x, region.y, region.z)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def unreachable_points(env, regions: dict[str, tuple[Any, bool]], tolerance: float = 0.01
                       ) -> dict[str, tuple[np.ndarray, float]]:
    """For each region (arm-base frame, z above the table; whether pointing down) whose corners
    or centre the end effector cannot reach within ``tolerance``: the worst point and its error."""
    model, arm = env.model, env.arm
    env.batch.forward(np.array([0]), stage=mujoco.mjtStage.mjSTAGE_POS)  # the arm base's frame (world_of)
    data = env.batch.get_data(0)
    data.qpos[arm.qpos] = arm.home
    out = {}
    for name, (region, down) in regions.items():
        grid = region_points(region, 2)
        grid = np.vstack([grid, grid.mean(0)])
        grid[:, 2] = np.maximum(grid[:, 2], env.cfg.object_size.lo)  # the gripper holds the cube at its centre
        world = env.world_of(grid, np.zeros(len(grid), np.int64))
        errors = np.array([ik(model, data, arm, p, arm.home, point_down=down, restarts=6)[1] for p in world])
        if errors.max() > tolerance:
            out[name] = (grid[errors.argmax()], float(errors.max()))
    return out


def scripted_grasp(env_cls, config, seconds_per_move: float = 0.8) -> dict[str, Any]:
    """Drive a one-env arm task's arm with IK to its cube (gripper pointing down, open), close,
    lift 10 cm: whether every grasp geom touches the cube with more than the grasp force, and
    how far the cube rose with the gripper."""
    env = env_cls(config=config, num_envs=1, nthread=1, seed=0)
    env.reset(seed=0)
    model, arm, gripper = env.model, env.arm, env.gripper
    data = env.batch.get_data(0)
    cube = env.object_pos[0].copy()
    rest_z = cube[2]

    def move(goal, fraction, seconds):
        q, _ = ik(model, data, arm, goal, data.qpos[arm.qpos])
        data.ctrl[arm.actuators] = q
        data.ctrl[gripper.actuators] = gripper.ctrl(np.array([fraction]))[0]
        for _ in range(int(round(seconds / model.opt.timestep))):
            mujoco.mj_step(model, data)

    move(cube + [0, 0, 0.1], 1.0, seconds_per_move)
    move(cube, 1.0, seconds_per_move)
    move(cube, 0.0, seconds_per_move / 2)
    forces = data.sensordata[gripper.touch].copy()
    move(cube + [0, 0, 0.12], 0.0, seconds_per_move * 1.5)
    obj = env._obj_qpos
    lift = float(data.qpos[obj + 2] - rest_z)
    held = bool(np.all(data.sensordata[gripper.touch] > env.cfg.grasp_force / len(gripper.touch)))
    env.close()
    return {"force": float(forces.sum()), "lift": lift, "held": held,
            "ok": bool(forces.min() > 0 and forces.sum() > env.cfg.grasp_force and lift > 0.08 and held)}


def stability(env, steps: int = 100, seed: int = 0) -> dict[str, Any]:
    """Full-scale random actions (each component -1 or +1, switching at random) on every env:
    whether the state stays finite and speeds physical."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n, a = env.num_envs, env.single_action_space.shape[0]
    joint_speed, body_speed, finite = 0.0, 0.0, True
    action = rng.choice([-1.0, 1.0], (n, a))
    for _ in range(steps):
        flip = rng.random((n, a)) < 0.2
        action = np.where(flip, -action, action)
        obs, reward, *_ = env.step(action)
        finite &= bool(np.isfinite(env.qpos).all() and np.isfinite(env.qvel).all() and np.isfinite(reward).all())
        joint_speed = max(joint_speed, float(np.abs(env.qvel).max()))
        body_speed = max(body_speed, float(np.abs(env.batch.bind("cvel")[..., 3:]).max()))
    ok = finite and body_speed < 20.0
    return {"envs": n, "steps": steps, "control_hz": float(env.cfg.control_hz), "finite": finite,
            "max_joint_speed": joint_speed, "max_body_speed": body_speed, "ok": ok}


def _subtree_bodies(model: mujoco.MjModel, root: int) -> list[int]:
    bodies = [root]
    for b in range(root + 1, model.nbody):
        if model.body_parentid[b] in bodies:
            bodies.append(b)
    return bodies


def check_env_config(env_config, envs: int = 16, image: str | None = None) -> CheckReport:
    """Build the task env ``env_config`` describes (``envs`` envs) and check its robot(s): joints,
    masses, workspace and task regions, scripted grasp (tasks with a gripper and a cube), stability
    at full-scale actions; ``image`` writes a picture of env 0 (offscreen, PNG)."""
    from robolearn.envs.registry import get_task

    task = get_task(env_config.task)
    env = task.env_cls(config=env_config.model_copy(update={"num_envs": envs}), seed=0)
    model = env.model
    robots = env.robot_specs()
    report = CheckReport(robot=" + ".join(r.name for r in robots), task=env_config.task)
    joints: list[int] = []
    if hasattr(env, "base"):  # tasks with a differential-drive base (BaseHandles)
        base = env.base
        report.masses["base (with what it carries)"] = float(model.body_subtreemass[base.body])
        joints += [model.dof_jntid[d] for d in base.wheel_dof]
        report.base = {"wheel_radius": base.wheel_radius, "track_width": base.track_width,
                       "footprint_radius": base.footprint, "rest_height": base.rest_height,
                       "top_speed": env.cfg.max_wheel_speed * base.wheel_radius,
                       "max_wheel_speed": env.cfg.max_wheel_speed}
    if hasattr(env, "arm"):  # tasks with an arm and a gripper (ArmHandles, GripperHandles)
        arm, gripper = env.arm, env.gripper
        joints += list(arm.joints) + [model.dof_jntid[d] for d in gripper.dof]
        first = model.jnt_bodyid[arm.joints[0]]
        report.masses["arm links"] = float(sum(model.body_mass[b] for b in _subtree_bodies(model, first)))
        report.workspace = sample_workspace(model, arm)
        report.workspace["regions"] = region_reachability(env)
        for name, r in report.workspace["regions"].items():
            if r["reachable"] < 1.0:
                report.problems.append(f"env.{name}: {1 - r['reachable']:.0%} of its points are out of reach "
                                       f"(worst {r['worst_error_m'] * 100:.1f} cm short)")
        if env.uses_object and env.gripper_action and not hasattr(env, "base"):
            report.grasp = scripted_grasp(task.env_cls, env.cfg)
            if not report.grasp["ok"]:
                report.problems.append("scripted grasp-and-lift failed: check the gripper's open/closed positions, "
                                       "grasp_geoms, actuator gains and the object's size")
    report.joints = describe_joints(model, joints)
    if image is not None:  # the scene as an episode starts
        import cv2

        env.reset(seed=0)
        frame = env.render_env(0, width=640, height=480, camera=0 if model.ncam else -1)
        cv2.imwrite(str(image), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    report.stability = stability(env)
    if not report.stability["ok"]:
        report.problems.append("full-scale random actions made the simulation unstable: lower the gains or force "
                               "limits, or the timestep")
    env.close()
    return report


def task_for_robot(robot) -> str:
    """The bundled task a lone robot spec is checked in: PickPlace for an arm with a gripper,
    Nav for a base."""
    if robot.arm is not None and robot.gripper is not None:
        return "robolearn/PickPlace-v0"
    if robot.base is not None:
        return "robolearn/Nav-v0"
    raise ValueError(f"robot {robot.name!r} has neither arm + gripper nor base: no task fits it")
