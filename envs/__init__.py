"""robolearn tasks: batched MuJoCo environments, registered by name with robolearn and gymnasium.

    import gymnasium, robolearn.envs
    env = gymnasium.make_vec("robolearn/Nav-v0", num_envs=256, vectorization_mode="vector_entry_point")
    single = gymnasium.make("robolearn/Nav-v0")
"""

from robolearn.envs.core import BatchedMujocoEnv, ObsLayout, finished_episodes
from robolearn.envs.registry import get_task, list_tasks, make_env, register_task

_REGISTERED = False


def _register_bundled_tasks() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from robolearn.envs.diffdrive import NavConfig, NavDepthConfig, NavDepthEnv, NavEnv, NavPOConfig, NavPOEnv

    register_task("robolearn/Nav-v0", NavEnv, NavConfig,
                  single_entry_point="robolearn.envs.diffdrive:make_nav_single",
                  vector_entry_point="robolearn.envs.diffdrive:NavEnv",
                  description="differential-drive PointGoal navigation among obstacles, lidar")
    register_task("robolearn/NavPO-v0", NavPOEnv, NavPOConfig,
                  single_entry_point="robolearn.envs.diffdrive:make_nav_po_single",
                  vector_entry_point="robolearn.envs.diffdrive:NavPOEnv",
                  description="Nav-v0, partially observable: no velocity, lidar every k-th step, "
                              "per-episode action latency")
    register_task("robolearn/NavDepth-v0", NavDepthEnv, NavDepthConfig,
                  single_entry_point="robolearn.envs.diffdrive:make_nav_depth_single",
                  vector_entry_point="robolearn.envs.diffdrive:NavDepthEnv",
                  description="Nav-v0 with a forward depth camera (32x24, camera rangefinder) and GPS+compass "
                              "goal instead of the lidar")
    from robolearn.envs.arm import (
        PickPlaceConfig,
        PickPlaceEnv,
        PushConfig,
        PushEnv,
        ReachConfig,
        ReachEnv,
    )

    register_task("robolearn/Reach-v0", ReachEnv, ReachConfig,
                  single_entry_point="robolearn.envs.arm:make_reach_single",
                  vector_entry_point="robolearn.envs.arm:ReachEnv",
                  description="5-DOF arm + parallel gripper: move the gripper to a random target (2 cm)")
    register_task("robolearn/Push-v0", PushEnv, PushConfig,
                  single_entry_point="robolearn.envs.arm:make_push_single",
                  vector_entry_point="robolearn.envs.arm:PushEnv",
                  description="arm: push the cube to a target on the table (3 cm)")
    register_task("robolearn/PickPlace-v0", PickPlaceEnv, PickPlaceConfig,
                  single_entry_point="robolearn.envs.arm:make_pickplace_single",
                  vector_entry_point="robolearn.envs.arm:PickPlaceEnv",
                  description="arm: grasp, lift and place the cube at a target in the air or on the table "
                              "(3 cm, held 5 steps)")
    from robolearn.envs.mobile import MobilePickConfig, MobilePickEnv

    register_task("robolearn/MobilePick-v0", MobilePickEnv, MobilePickConfig,
                  single_entry_point="robolearn.envs.mobile:make_mobile_pick_single",
                  vector_entry_point="robolearn.envs.mobile:MobilePickEnv",
                  description="mobile manipulator (diff-drive base + arm): drive to a table, pick the cube, "
                              "bring it to a drop zone")


_register_bundled_tasks()

__all__ = ["BatchedMujocoEnv", "ObsLayout", "finished_episodes", "get_task", "list_tasks", "make_env", "register_task"]
