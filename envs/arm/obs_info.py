"""What an exported contract says of the arm tasks' policy observation terms: units, frame,
elements and meaning of each (:attr:`ArmTaskEnv.obs_term_info`; a task adds its own terms)."""

from __future__ import annotations

from robolearn.envs.robots import ArmHandles, RobotSpec


def arm_obs_term_info(robot: RobotSpec, arm: ArmHandles, target: str) -> dict[str, dict]:
    """The shared arm terms for ``robot`` (its ``arm`` handles in the compiled model); ``target``
    names what the ``target`` term is measured from ("the object", or "the gripper" in Reach)."""
    frame = f"arm base (body {robot.prefix}{robot.arm.base_body})"
    xyz, units = ["x", "y", "z"], list(dict.fromkeys(arm.units))  # "rad", or "rad, m" with a slide joint
    return {
        "joint_pos": {"units": ", ".join(units), "frame": "joint", "elements": list(arm.names),
                      "meaning": "arm joint positions (rad for hinges, m for slides), the file's zero"},
        "joint_vel": {"units": ", ".join(f"{u}/s" for u in units), "frame": "joint",
                      "elements": list(arm.names), "meaning": "arm joint velocities"},
        "gripper": {"units": "unitless, 1/s", "frame": "gripper", "elements": ["open_fraction", "open_fraction_rate"],
                    "meaning": "the fingers' open fraction (0 closed, 1 fully open) and its rate"},
        "ee_pose": {"units": "m, unitless", "frame": frame,
                    "elements": [f"pos_{a}" for a in xyz] + [f"x_axis_{a}" for a in xyz] + [f"z_axis_{a}" for a in xyz],
                    "meaning": "end-effector position, then the x and z axes of its frame (rotation matrix columns)"},
        "object_pos": {"units": "m", "frame": frame, "elements": xyz,
                       "meaning": "the object's centre minus the end-effector position"},
        "object_rot": {"units": "unitless", "frame": frame,
                       "elements": [f"x_axis_{a}" for a in xyz] + [f"z_axis_{a}" for a in xyz],
                       "meaning": "the object's x and z axes (rotation matrix columns)"},
        "object_vel": {"units": "m/s", "frame": frame, "elements": xyz,
                       "meaning": "the object's linear velocity minus the end effector's"},
        "target": {"units": "m", "frame": frame, "elements": xyz,
                   "meaning": f"the target position minus {target}'s"},
        "last_action": {"units": "normalised [-1, 1]", "frame": "action",
                        "meaning": "the policy's previous action (before scaling), zeros at an episode's start"},
    }
