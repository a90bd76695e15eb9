"""Robots as data: a model file (MJCF or URDF) plus a YAML spec naming the parts tasks use.

:mod:`.spec` is the schema (and how ``env.robot`` references resolve), :mod:`.compose` loads a
robot's file and composes robots into scenes with ``mujoco.MjSpec``, :mod:`.handles` turns a
composed model into the indices a task reads and writes, :mod:`.check` is ``robolearn robot check``.
Bundled robots (this folder): ``arm5``, ``diffdrive``, ``diffdrive_large``, ``kobuki`` (URDF) and
``fetch`` (from the ``gymnasium-robotics`` package: ``pip install -e ".[robots]"``).
"""

from robolearn.envs.robots.compose import add_look_at_camera, compose, robot_mjspec, scene_mjspec
from robolearn.envs.robots.handles import ArmHandles, BaseHandles, GripperHandles
from robolearn.envs.robots.spec import (
    ArmSpec,
    BaseSpec,
    GripperSpec,
    RobotSpec,
    RobotSpecError,
    bundled_robots,
    resolve_robot_ref,
    robot_field,
)

__all__ = ["ArmHandles", "ArmSpec", "BaseHandles", "BaseSpec", "GripperHandles", "GripperSpec", "RobotSpec",
           "RobotSpecError", "add_look_at_camera", "bundled_robots", "compose", "resolve_robot_ref", "robot_field",
           "robot_mjspec", "scene_mjspec"]
