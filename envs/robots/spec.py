"""The robot spec: a model file (MJCF or URDF) plus the parts a task needs, named, as data.

A spec names what is in the robot's file; nothing in a task names a joint, body or geom directly::

    name: my_arm
    file: my_arm.urdf                  # relative to this YAML, absolute, or package://pkg/path
    root_body: base_link               # keep this body's subtree of the file (drop the rest)
    freeze: {torso_lift_joint: 0.2}    # joints welded at a position (rad or m)
    remove: {bodies: [head_pan_link]}  # parts dropped from the file
    collision: {geoms: ["*finger*", "gripper_link"]}   # only these collide; the rest is visual
    arm:
      joints: [j1, j2, j3]
      drive: {kp: [300, 300, 100], kv: [30, 30, 6], force: [40, 40, 15]}   # or actuators: [...]
      home: [0.0, 0.5, 1.2]
      ee_site: grip                    # or ee_body + ee_offset
    gripper:
      joints: [finger_l, finger_r]
      actuators: [finger_l, finger_r]  # or drive
      open: [0.04, 0.04]               # joint positions fully open (closed: 0 unless given)
      grasp_geoms: [finger_l, finger_r]
      opening: 0.08                    # widest object between the fingers, metres
    base:
      wheels: [wheel_left, wheel_right]
      wheel_radius: 0.035
      track_width: 0.23
      drive: {kv: 0.5, force: 2.0}
      body: base_link
    mount: {site: arm_mount, pos: [0, 0, 0]}

A reference to a spec (``env.robot``) is a bundled robot's name (``arm5``, ``diffdrive``,
``diffdrive_large``, ``kobuki``, ``fetch``), a path to a YAML file, or the mapping itself; it is
resolved when the config is validated, so a saved config carries the whole spec.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from robolearn.config import StrictModel, first_error

PACKAGE_SCHEME = "package://"
_BUNDLED = Path(__file__).parent


class RobotSpecError(ValueError):
    """A robot spec that does not fit its model file (one line: the spec key, the name, what exists)."""


def closest(name: str, candidates: list[str], n: int = 3) -> str:
    """``"closest: a, b, c"`` for an error message (the first names of the file when none is close)."""
    names = [c for c in candidates if c]
    near = difflib.get_close_matches(name, names, n=n, cutoff=0.4) or names[:n]
    return "closest: " + ", ".join(near) if near else "the file has none"


#: a 3-vector, written as a list in YAML
Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]


def _per_joint(key: str, values: float | list[float], count: int) -> list[float]:
    if isinstance(values, (int, float)):
        return [float(values)] * count
    if len(values) != count:
        raise ValueError(f"{key} has {len(values)} values for {count} joints")
    return [float(v) for v in values]


class PositionDrive(StrictModel):
    """Position actuators the loader adds (many URDFs have none): one per joint, gains and force
    limits per joint or one value for all."""

    kp: float | list[float]
    kv: float | list[float] = 0.0
    force: float | list[float] | None = Field(None, description="symmetric force/torque limit, N or N m")

    def per_joint(self, count: int) -> tuple[list[float], list[float], list[float] | None]:
        force = None if self.force is None else _per_joint("force", self.force, count)
        return _per_joint("kp", self.kp, count), _per_joint("kv", self.kv, count), force


class VelocityDrive(StrictModel):
    """Velocity actuators the loader adds to the wheels."""

    kv: float = Field(gt=0.0)
    force: float | None = Field(None, gt=0.0, description="symmetric torque limit, N m")


class _Driven(StrictModel):
    joints: list[str] = Field(min_length=1)
    actuators: list[str] | None = Field(None, description="position actuators in the file, each driving one "
                                        "of the joints")
    drive: PositionDrive | None = None

    @model_validator(mode="after")
    def _one_drive(self):
        if (self.actuators is None) == (self.drive is None):
            raise ValueError("give either actuators (already in the file) or drive (added by the loader)")
        if self.drive is not None:
            self.drive.per_joint(len(self.joints))
        return self


class ArmSpec(_Driven):
    """An arm: joints in order, how they are driven, home pose, end effector."""

    home: list[float]
    ee_site: str | None = Field(None, description="the end-effector site (or ee_body + ee_offset)")
    ee_body: str | None = None
    ee_offset: Vec3 = [0.0, 0.0, 0.0]
    ee_axis: Vec3 = Field([0.0, 0.0, 1.0], description="the gripper's approach direction in the end-effector "
                          "frame (what points down to grasp from above)")
    base_body: str | None = Field(None, description="body whose frame observations and task regions use "
                                  "(default: the parent of the first joint's body)")
    gravity_compensation: bool = Field(False, description="compensate gravity on the arm's links, as most "
                                       "arm controllers do")

    @model_validator(mode="after")
    def _arm(self) -> ArmSpec:
        if self.actuators is not None and len(self.actuators) != len(self.joints):
            raise ValueError(f"actuators has {len(self.actuators)} names for {len(self.joints)} joints")
        if len(self.home) != len(self.joints):
            raise ValueError(f"home has {len(self.home)} values for {len(self.joints)} joints")
        if (self.ee_site is None) == (self.ee_body is None):
            raise ValueError("give either ee_site or ee_body (with ee_offset)")
        return self


class GripperSpec(_Driven):
    """A gripper driven by one open-close command: every joint moves from ``closed`` to ``open``
    (joints coupled in the file, e.g. by an equality, may share one actuator)."""

    open: list[float]
    closed: list[float] | None = Field(None, description="joint positions when closed (default 0)")
    grasp_geoms: list[str] = Field(min_length=1, description="geoms that all touch the object in a grasp")
    opening: float = Field(gt=0.0, description="widest object the open gripper holds, metres")

    @model_validator(mode="after")
    def _gripper(self) -> GripperSpec:
        if len(self.open) != len(self.joints):
            raise ValueError(f"open has {len(self.open)} values for {len(self.joints)} joints")
        if self.closed is not None and len(self.closed) != len(self.joints):
            raise ValueError(f"closed has {len(self.closed)} values for {len(self.joints)} joints")
        return self

    @property
    def closed_pos(self) -> list[float]:
        return list(self.closed) if self.closed is not None else [0.0] * len(self.joints)


class BaseSpec(StrictModel):
    """A differential-drive base: two wheels, left then right."""

    wheels: list[str] = Field(min_length=2, max_length=2, description="left and right wheel joints")
    wheel_radius: float = Field(gt=0.0, description="metres")
    track_width: float = Field(gt=0.0, description="metres between the wheels' contact points")
    actuators: list[str] | None = Field(None, description="velocity actuators in the file, left then right")
    drive: VelocityDrive | None = None
    body: str = Field(description="the chassis body: its contacts (above the floor) are collisions")
    bumper_site: str | None = Field(None, description="touch site of the bumper (default: a cylinder around "
                                    "the chassis, from 2 cm above the floor to its top)")
    sensor_pos: Vec3 = Field([0.0, 0.0, 0.1], description="lidar / camera position in the chassis frame, metres")

    @model_validator(mode="after")
    def _one_drive(self) -> BaseSpec:
        if (self.actuators is None) == (self.drive is None):
            raise ValueError("give either actuators (already in the file) or drive (added by the loader)")
        if self.actuators is not None and len(self.actuators) != 2:
            raise ValueError(f"actuators has {len(self.actuators)} names for the 2 wheels")
        return self


class MountSpec(StrictModel):
    """Where the robot's root body is attached: a site of the scene (or of the base carrying it),
    offset in the site's frame."""

    site: str = "arm_mount"
    pos: Vec3 = [0.0, 0.0, 0.0]
    yaw: float = Field(0.0, description="rad about the site's z axis")


class RemoveSpec(StrictModel):
    bodies: list[str] = Field(default_factory=list)
    geoms: list[str] = Field(default_factory=list)
    actuators: list[str] = Field(default_factory=list)
    sensors: list[str] = Field(default_factory=list)


class CollisionSpec(StrictModel):
    """Which robot geoms collide (names or shell patterns); all others become visual only."""

    geoms: list[str] = Field(min_length=1)
    contype: int = Field(1, ge=0)
    conaffinity: int = Field(1, ge=0)


class GeomContact(StrictModel):
    """Contact settings of some robot geoms (e.g. ``condim: 1`` for casters that roll freely)."""

    condim: Literal[1, 3, 4, 6] | None = None
    friction: Vec3 | None = Field(None, description="sliding, torsional, rolling")


class JointDynamics(StrictModel):
    """Dynamics of some robot joints a URDF may lack (e.g. the rotor inertia a gearbox reflects)."""

    armature: float | None = Field(None, ge=0.0, description="kg m^2 (or kg for a slide joint)")
    damping: float | None = Field(None, ge=0.0)
    frictionloss: float | None = Field(None, ge=0.0)


class RobotSpec(StrictModel):
    """One robot: a model file and the parts tasks use (see the module docstring)."""

    name: str
    file: str = Field(description="MJCF or URDF: absolute, or package://<package>/<path>")
    root_body: str | None = Field(None, description="keep only this body's subtree of the file's world")
    prefix: str = Field("", description="prefix of every name of the robot in the composed model")
    freeze: dict[str, float] = Field(default_factory=dict, description="joint -> position it is welded at")
    remove: RemoveSpec = Field(default_factory=RemoveSpec)
    collision: CollisionSpec | None = Field(None, description="default: the file's collision settings")
    geom_contact: dict[str, GeomContact] = Field(default_factory=dict,
                                                 description="geom name or shell pattern -> contact settings")
    joint_dynamics: dict[str, JointDynamics] = Field(default_factory=dict,
                                                     description="joint name or shell pattern -> dynamics")
    arm: ArmSpec | None = None
    gripper: GripperSpec | None = None
    base: BaseSpec | None = None
    mount: MountSpec = Field(default_factory=MountSpec)

    @model_validator(mode="before")
    @classmethod
    def _from_reference(cls, value: Any) -> Any:
        """A bundled robot's name or a spec file's path stands for the spec it names."""
        return resolve_robot_ref(value)

    def require(self, *parts: str, key: str = "env.robot") -> RobotSpec:
        """The spec, or RobotSpecError naming the part a task needs and the spec lacks."""
        for part in parts:
            if getattr(self, part) is None:
                raise RobotSpecError(f"{key}: robot {self.name!r} has no {part!r} section, which this task needs")
        return self

    def model_path(self) -> Path:
        """The model file on disk (package:// resolved without importing the package)."""
        return resolve_path(self.file, f"robot {self.name!r} file")


def resolve_path(ref: str, what: str) -> Path:
    """An absolute path or ``package://<package>/<path>`` to a file path; RobotSpecError naming
    what it looked for (a missing file or package is a spec problem: one line, not a traceback)."""
    if ref.startswith(PACKAGE_SCHEME):
        package, _, rest = ref[len(PACKAGE_SCHEME):].partition("/")
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            extra = " (pip install -e \".[robots]\")" if package == "gymnasium_robotics" else ""
            raise RobotSpecError(f"{what}: {ref}: package {package!r} is not installed{extra}")
        path = Path(list(found.submodule_search_locations)[0]) / rest
    else:
        path = Path(ref)
    if not path.is_file():
        raise RobotSpecError(f"{what}: {path} does not exist")
    return path


def bundled_robots() -> list[str]:
    return sorted(p.stem for p in _BUNDLED.glob("*.yaml"))


def load_robot_file(path: Path) -> dict[str, Any]:
    """A spec YAML as a mapping, its relative ``file`` made absolute (relative to the YAML)."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RobotSpecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RobotSpecError(f"{path}: a robot spec is a mapping with name, file, arm / gripper / base")
    data = dict(data.get("robot", data))
    file = data.get("file")
    if isinstance(file, str) and not file.startswith(PACKAGE_SCHEME) and not Path(file).is_absolute():
        data["file"] = str((path.parent / file).resolve())
    return data


def resolve_robot_ref(value: Any) -> Any:
    """A bundled robot's name or a YAML path to the spec's mapping; mappings pass unchanged."""
    if not isinstance(value, str):
        return value
    if value.endswith((".yaml", ".yml")):
        path = Path(value)
        if not path.is_file():
            raise RobotSpecError(f"robot spec file {value} does not exist")
        return load_robot_file(path)
    path = _BUNDLED / f"{value}.yaml"
    if not path.is_file():
        raise RobotSpecError(f"unknown robot {value!r}: bundled robots are {', '.join(bundled_robots())}, "
                             f"or give a path to a robot spec .yaml")
    return load_robot_file(path)


def load_robot_spec(path: str | Path) -> RobotSpec:
    """The robot spec in a YAML file; RobotSpecError naming the file and the first bad key."""
    data = resolve_robot_ref(str(path)) if str(path).endswith((".yaml", ".yml")) else load_robot_file(Path(path))
    try:
        return RobotSpec.model_validate(data)
    except ValidationError as err:
        raise RobotSpecError(f"{path}: {first_error(err, 'robot')}") from None


def robot_field(default: str, description: str):
    """A config field holding a robot spec, given as a name, a YAML path or a mapping."""
    return Field(default_factory=lambda: RobotSpec.model_validate(default), description=description)
