"""Compose robots and scenes with MuJoCo's model editing API (``mujoco.MjSpec``).

:func:`robot_mjspec` loads a robot's file (MJCF or URDF) and edits it as its spec says: keeps the
``root_body`` subtree, drops what ``remove`` names, welds the ``freeze`` joints at their positions,
chooses the colliding geoms, adds the position / velocity actuators a ``drive`` asks for, an
end-effector site, a touch site and sensor per grasp geom, the bumper and the sensor mount of a
base (and a free joint for a base that has none). :func:`compose` attaches robots to a scene at
their mount sites; every name a spec gives is checked against the file, with the closest names
in the error.

Conventions of the composed model: robot geoms are in geom group 2 (lidar rays cast against
groups 0 and 1 only); the loader names what it adds ``<geom>_grasp`` (touch sites and sensors),
``<ee_body>_ee``, ``bumper``, ``<site>_touch`` and ``sensor``, behind the robot's prefix.
"""

from __future__ import annotations

import fnmatch
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable

import mujoco
import numpy as np

from robolearn.envs.robots.spec import RobotSpec, RobotSpecError, closest

ROBOT_GEOM_GROUP = 2
GRASP_SITE_MARGIN = 0.003  # metres a grasp geom's touch site extends beyond the geom
BUMPER_MARGIN = 0.02       # metres the derived bumper extends beyond the chassis
BUMPER_FLOOR_GAP = 0.02    # metres above the floor where the derived bumper starts (wheels and casters below)

_KINDS = {"body": "bodies", "joint": "joints", "geom": "geoms", "site": "sites", "actuator": "actuators",
          "sensor": "sensors"}


@contextmanager
def _quiet_attach():
    """MjSpec warns on attaching with an empty prefix (saving to XML may repeat names); robots keep
    the file's names unless their spec sets a prefix, and compose checks names stay unique."""
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: None)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attaching a spec with an empty prefix")
            # the scene's options (timestep, integrator) win over a robot file's, by design
            warnings.filterwarnings("ignore", message="Attach conflict")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def find(spec: mujoco.MjSpec, kind: str, name: str, key: str, where: str):
    """The ``kind`` element named ``name`` of ``spec``, or RobotSpecError naming ``key`` and the
    closest names that exist."""
    element = getattr(spec, kind)(name)
    if element is None:
        names = [e.name for e in getattr(spec, _KINDS[kind])]
        raise RobotSpecError(f"{key}: no {kind} named {name!r} in {where} ({closest(name, names)})")
    return element


def _quat_yaw(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _axis_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def _rotate(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, vec, quat)
    return out


def load_file(robot: RobotSpec) -> mujoco.MjSpec:
    """The robot's file as an ``MjSpec`` (URDF: static links kept as bodies, not fused)."""
    path = robot.model_path()
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as err:  # noqa: BLE001  (the parser's message names the missing mesh file)
        raise RobotSpecError(f"robot {robot.name!r}: cannot load {path}: {str(err).strip().splitlines()[-1]}") from None
    if path.suffix.lower() == ".urdf":
        spec.compiler.fusestatic = False
    return spec


def _keep_root(spec: mujoco.MjSpec, robot: RobotSpec, where: str) -> None:
    """Only the ``root_body`` subtree stays in the world; equalities naming dropped bodies go too."""
    if robot.root_body is None:
        return
    root = find(spec, "body", robot.root_body, "robot.root_body", where)
    if root.parent.name != spec.worldbody.name:
        raise RobotSpecError(f"robot.root_body: {robot.root_body!r} is not a child of the world body in {where}")
    for body in list(spec.worldbody.bodies):
        if body.name != robot.root_body:
            spec.delete(body)
    for kind in ("geoms", "sites", "lights", "cameras"):
        for element in list(getattr(spec.worldbody, kind)):
            spec.delete(element)
    kept = {b.name for b in spec.bodies}
    for eq in list(spec.equalities):
        if eq.objtype == mujoco.mjtObj.mjOBJ_BODY and not {eq.name1, eq.name2} <= kept:
            spec.delete(eq)


def _remove(spec: mujoco.MjSpec, robot: RobotSpec, where: str) -> None:
    for kind, names in (("actuator", robot.remove.actuators), ("sensor", robot.remove.sensors),
                        ("geom", robot.remove.geoms), ("body", robot.remove.bodies)):
        for name in names:
            spec.delete(find(spec, kind, name, f"robot.remove.{_KINDS[kind]}", where))


def _freeze(spec: mujoco.MjSpec, robot: RobotSpec, where: str) -> None:
    """Weld each ``freeze`` joint at its position: the body moves to where the joint held it, the
    joint (and any actuator on it) is deleted."""
    for name, value in robot.freeze.items():
        joint = find(spec, "joint", name, f"robot.freeze.{name}", where)
        body = joint.parent
        pos, quat = np.array(body.pos, float), np.array(body.quat, float)
        quat /= np.linalg.norm(quat)
        axis, jpos = np.array(joint.axis, float), np.array(joint.pos, float)
        if joint.type == mujoco.mjtJoint.mjJNT_SLIDE:
            body.pos = pos + _rotate(quat, axis * (value - joint.ref))
        elif joint.type == mujoco.mjtJoint.mjJNT_HINGE:
            turn = _axis_quat(axis, value - joint.ref)
            body.pos = pos + _rotate(quat, jpos - _rotate(turn, jpos))
            body.quat = _quat_mul(quat, turn)
        elif value != 0.0:
            raise RobotSpecError(f"robot.freeze.{name}: only hinge and slide joints freeze at a position "
                                 f"(a ball or free joint freezes at 0)")
        for act in list(spec.actuators):
            if act.target == name:
                spec.delete(act)
        spec.delete(joint)


def _collision(spec: mujoco.MjSpec, robot: RobotSpec) -> None:
    for geom in spec.worldbody.find_all(mujoco.mjtObj.mjOBJ_GEOM):
        geom.group = ROBOT_GEOM_GROUP
    if robot.collision is None:
        return
    patterns = robot.collision.geoms
    matched = set()
    for geom in spec.worldbody.find_all(mujoco.mjtObj.mjOBJ_GEOM):
        hit = [p for p in patterns if fnmatch.fnmatchcase(geom.name, p)]
        matched.update(hit)
        geom.contype, geom.conaffinity = ((robot.collision.contype, robot.collision.conaffinity) if hit else (0, 0))
    missing = [p for p in patterns if p not in matched]
    if missing:
        names = [g.name for g in spec.geoms]
        raise RobotSpecError(f"robot.collision.geoms: {missing[0]!r} matches no geom of robot {robot.name!r} "
                             f"({closest(missing[0], names)})")


def _matching(elements: list, pattern: str, key: str, kind: str, robot: RobotSpec) -> list:
    """The elements whose name matches the shell ``pattern``; RobotSpecError naming ``key`` when
    none does."""
    hit = [e for e in elements if fnmatch.fnmatchcase(e.name, pattern)]
    if not hit:
        raise RobotSpecError(f"{key}: {pattern!r} matches no {kind} of robot {robot.name!r} "
                             f"({closest(pattern, [e.name for e in elements])})")
    return hit


def _geom_contact(spec: mujoco.MjSpec, robot: RobotSpec) -> None:
    """Contact settings of the geoms the spec's ``geom_contact`` patterns match (e.g. frictionless
    casters, which a URDF cannot say); ``joint_dynamics`` likewise for joints."""
    geoms = list(spec.worldbody.find_all(mujoco.mjtObj.mjOBJ_GEOM))
    for pattern, contact in robot.geom_contact.items():
        for geom in _matching(geoms, pattern, "robot.geom_contact", "geom", robot):
            if contact.condim is not None:
                geom.condim = contact.condim
            if contact.friction is not None:
                geom.friction = list(contact.friction)


def _joint_dynamics(spec: mujoco.MjSpec, robot: RobotSpec) -> None:
    joints = list(spec.worldbody.find_all(mujoco.mjtObj.mjOBJ_JOINT))
    for pattern, dyn in robot.joint_dynamics.items():
        for joint in _matching(joints, pattern, "robot.joint_dynamics", "joint", robot):
            for key in ("armature", "damping", "frictionloss"):
                if getattr(dyn, key) is not None:
                    setattr(joint, key, getattr(dyn, key))


def _add_position_actuators(spec, joints, drive, key, where) -> None:
    kp, kv, force = drive.per_joint(len(joints))
    for i, name in enumerate(joints):
        joint = find(spec, "joint", name, f"{key}.joints", where)
        act = spec.add_actuator(name=f"{name}", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp[i], kv=kv[i])
        lo, hi = joint.range
        limited = joint.limited == mujoco.mjtLimited.mjLIMITED_TRUE or (
            joint.limited == mujoco.mjtLimited.mjLIMITED_AUTO and lo < hi)
        act.ctrlrange = (lo, hi) if limited else (-np.pi, np.pi)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        if force is not None:
            act.forcerange = (-force[i], force[i])
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE


def _check_actuators(spec, joints, actuators, key, where) -> None:
    for joint, name in zip(joints, actuators):
        act = find(spec, "actuator", name, f"{key}.actuators", where)
        if act.target != joint:
            raise RobotSpecError(f"{key}.actuators: {name!r} drives {act.target!r}, not joint {joint!r}")


def _drive(spec, part, key: str, where: str) -> None:
    """An arm's or gripper's joints exist and are driven: by the named actuators of the file, or by
    position actuators added from its ``drive``."""
    for name in part.joints:
        find(spec, "joint", name, f"{key}.joints", where)
    if part.actuators is not None:
        _check_actuators(spec, part.joints, part.actuators, key, where)
    else:
        _add_position_actuators(spec, part.joints, part.drive, key, where)


def _subtree(body) -> Iterable:
    yield body
    for child in body.bodies:
        yield from _subtree(child)


def _geom_box(model: mujoco.MjModel, gid: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half extents of a compiled geom's bounding box in its own frame."""
    aabb = model.geom_aabb[gid]
    return aabb[:3].copy(), aabb[3:].copy()


def _add_arm_parts(spec, robot: RobotSpec, where: str) -> None:
    arm = robot.arm
    _drive(spec, arm, "robot.arm", where)
    if arm.ee_site is not None:
        find(spec, "site", arm.ee_site, "robot.arm.ee_site", where)
    else:
        body = find(spec, "body", arm.ee_body, "robot.arm.ee_body", where)
        body.add_site(name=f"{arm.ee_body}_ee", pos=list(arm.ee_offset), size=[0.008, 0, 0], group=4)
    if arm.base_body is not None:
        find(spec, "body", arm.base_body, "robot.arm.base_body", where)
    if arm.gravity_compensation:
        first = spec.joint(arm.joints[0]).parent
        for body in _subtree(first):
            body.gravcomp = 1.0


def _add_gripper_parts(spec, robot: RobotSpec, where: str) -> None:
    grip = robot.gripper
    _drive(spec, grip, "robot.gripper", where)
    geoms = [find(spec, "geom", name, "robot.gripper.grasp_geoms", where) for name in grip.grasp_geoms]
    model = spec.compile()  # sizes of mesh geoms are known once compiled
    for name, geom in zip(grip.grasp_geoms, geoms):
        centre, half = _geom_box(model, model.geom(name).id)
        geom.parent.add_site(name=f"{name}_grasp", type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(geom.pos),
                             quat=list(geom.quat), size=list(half + GRASP_SITE_MARGIN), rgba=[0, 0, 0, 0])
        site = spec.site(f"{name}_grasp")
        site.pos = np.array(geom.pos) + _rotate(np.array(geom.quat, float), centre)
        spec.add_sensor(name=f"{name}_grasp", type=mujoco.mjtSensor.mjSENS_TOUCH,
                        objtype=mujoco.mjtObj.mjOBJ_SITE, objname=f"{name}_grasp")


def base_geometry(model: mujoco.MjModel, root: int) -> tuple[float, float, float]:
    """(lowest z, highest z, largest horizontal radius) of the colliding geoms of body ``root``'s
    subtree, in the root body's frame (the robot alone, compiled at qpos0)."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    inv_rot = data.xmat[root].reshape(3, 3).T
    origin = data.xpos[root]
    low, high, radius = np.inf, -np.inf, 0.0
    for g in range(model.ngeom):
        body = model.geom_bodyid[g]
        while body != root and body != 0:
            body = model.body_parentid[body]
        if body != root or (model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0):
            continue
        centre, half = _geom_box(model, g)
        rot = data.geom_xmat[g].reshape(3, 3)
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half + centre
        local = (corners @ rot.T + data.geom_xpos[g] - origin) @ inv_rot.T
        low, high = min(low, local[:, 2].min()), max(high, local[:, 2].max())
        # the box corners overestimate round geoms: the bounding sphere about the centre bounds them too
        centre_xy = np.linalg.norm(((data.geom_xpos[g] - origin) @ inv_rot.T)[:2])
        radius = max(radius, min(np.linalg.norm(local[:, :2], axis=-1).max(), centre_xy + model.geom_rbound[g]))
    if not np.isfinite(low):
        raise RobotSpecError("robot.base.body: the base has no colliding geom to stand on")
    return float(low), float(high), float(radius)


def _add_base_parts(spec, robot: RobotSpec, where: str) -> None:
    base = robot.base
    body = find(spec, "body", base.body, "robot.base.body", where)
    if body.parent.name != spec.worldbody.name:
        raise RobotSpecError(f"robot.base.body: {base.body!r} must be the root body (a child of the world) "
                             f"in {where}; set robot.root_body to it")
    for name in base.wheels:
        find(spec, "joint", name, "robot.base.wheels", where)
    if base.actuators is not None:
        _check_actuators(spec, base.wheels, base.actuators, "robot.base", where)
    else:
        for name in base.wheels:
            act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_velocity(kv=base.drive.kv)
            if base.drive.force is not None:
                act.forcerange = (-base.drive.force, base.drive.force)
                act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    if not any(j.type == mujoco.mjtJoint.mjJNT_FREE for j in body.joints):
        body.add_freejoint(name=f"{base.body}_free")
    body.add_site(name="sensor", pos=list(base.sensor_pos), size=[0.01, 0, 0], group=4)
    if base.bumper_site is not None:
        site = find(spec, "site", base.bumper_site, "robot.base.bumper_site", where)
    else:
        model = spec.compile()
        low, high, radius = base_geometry(model, model.body(base.body).id)
        bottom, top = low + BUMPER_FLOOR_GAP, high + BUMPER_MARGIN  # never down to the floor contacts
        site = body.add_site(name="bumper", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                             size=[radius + BUMPER_MARGIN, (top - bottom) / 2, 0],
                             pos=[0, 0, (top + bottom) / 2], rgba=[0, 0, 0, 0])
    spec.add_sensor(name=f"{site.name}_touch", type=mujoco.mjtSensor.mjSENS_TOUCH,
                    objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site.name)


def robot_mjspec(robot: RobotSpec) -> mujoco.MjSpec:
    """The robot's file edited as its spec says (see the module docstring); compiles alone."""
    spec = load_file(robot)
    where = str(robot.model_path().name)
    _keep_root(spec, robot, where)
    _remove(spec, robot, where)
    _freeze(spec, robot, where)
    _collision(spec, robot)
    _geom_contact(spec, robot)
    _joint_dynamics(spec, robot)
    if robot.arm is not None:
        _add_arm_parts(spec, robot, where)
    if robot.gripper is not None:
        _add_gripper_parts(spec, robot, where)
    if robot.base is not None:
        _add_base_parts(spec, robot, where)
    roots = list(spec.worldbody.bodies)
    if len(roots) != 1:
        raise RobotSpecError(f"robot {robot.name!r}: {where} has {len(roots)} bodies in its world "
                             f"({', '.join(b.name for b in roots[:4])}); set robot.root_body to the robot's root")
    try:
        spec.compile()
    except ValueError as err:
        raise RobotSpecError(f"robot {robot.name!r}: the edited model does not compile: {err}") from None
    return spec


def compose(scene: mujoco.MjSpec, robots: list[RobotSpec], scene_name: str,
            edit: Callable[[mujoco.MjSpec], None] | None = None) -> mujoco.MjModel:
    """Attach each robot in order at its mount site (a site of the scene or of a robot attached
    before it; the world when the site is ``world``), its root body at the mount's offset and yaw
    in the site's frame (the root's pose in its own file is not used), and compile. Robot names
    keep the file's names behind the spec's prefix. ``edit`` changes the composed spec before it
    compiles (a task's own sensors on a robot, e.g. a depth camera)."""
    with _quiet_attach():
        try:
            _attach_all(scene, robots, scene_name)
            if edit is not None:
                edit(scene)
            return scene.compile()
        except RobotSpecError:
            raise
        except ValueError as err:  # MuJoCo's own: repeated names, bad references
            raise RobotSpecError(f"{scene_name} with robot(s) {', '.join(r.name for r in robots)} does not "
                                 f"compile: {str(err).strip()} (set robot.prefix when names repeat)") from None


def _attach_all(scene: mujoco.MjSpec, robots: list[RobotSpec], scene_name: str) -> None:
    for robot in robots:
        child = robot_mjspec(robot)
        root = child.worldbody.bodies[0]
        if robot.mount.site == "world":
            attached = scene.worldbody.add_frame().attach_body(root, robot.prefix, "")
        else:
            site = scene.site(robot.mount.site)
            if site is None:
                names = [s.name for s in scene.sites]
                raise RobotSpecError(f"robot.mount.site: no site named {robot.mount.site!r} in {scene_name} "
                                     f"({closest(robot.mount.site, names)})")
            attached = site.attach_body(root, robot.prefix, "")
        # the root's pose in its own file is replaced by the mount's
        attached.pos = np.array(robot.mount.pos, float)
        attached.quat = _quat_yaw(robot.mount.yaw)


def add_look_at_camera(body, name: str, pos, target, fovy: float = 45.0,
                       mode: mujoco.mjtCamLight = mujoco.mjtCamLight.mjCAMLIGHT_FIXED):
    """Add a camera named ``name`` to ``body`` (an ``MjsBody`` of a spec; the world body for a
    fixed view) at ``pos`` looking at ``target`` (both in the body's frame as the spec places it),
    the image's up toward +z; ``fovy`` degrees. With ``mode`` ``mjCAMLIGHT_TRACKCOM`` the camera
    keeps that offset from the body's subtree centre of mass and its orientation in the world."""
    pos, target = np.asarray(pos, float), np.asarray(target, float)
    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    # a camera looks along its -z axis with +y up in the image
    frame = np.column_stack([right, np.cross(right, forward), -forward])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, frame.flatten())
    return body.add_camera(name=name, pos=pos, quat=quat, fovy=fovy, mode=mode)


def scene_mjspec(package: str, name: str) -> mujoco.MjSpec:
    from importlib import resources

    return mujoco.MjSpec.from_string(resources.files(package).joinpath(name).read_text())
