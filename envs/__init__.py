"""robolearn tasks: batched MuJoCo environments, registered by name with robolearn and gymnasium.

    import gymnasium, robolearn.envs
    env = gymnasium.make_vec("robolearn/Nav-v0", num_envs=256, vectorization_mode="vector_entry_point")
    single = gymnasium.make("robolearn/Nav-v0")
"""

from robolearn.envs.core import BatchedMujocoEnv, ObsLayout
from robolearn.envs.registry import get_task, list_tasks, make_env, register_task

_REGISTERED = False


def _register_bundled_tasks() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from robolearn.envs.diffdrive import NavConfig, NavEnv, NavPOConfig, NavPOEnv

    register_task("robolearn/Nav-v0", NavEnv, NavConfig,
                  single_entry_point="robolearn.envs.diffdrive:make_nav_single",
                  vector_entry_point="robolearn.envs.diffdrive:NavEnv",
                  description="differential-drive PointGoal navigation among obstacles, lidar")
    register_task("robolearn/NavPO-v0", NavPOEnv, NavPOConfig,
                  single_entry_point="robolearn.envs.diffdrive:make_nav_po_single",
                  vector_entry_point="robolearn.envs.diffdrive:NavPOEnv",
                  description="Nav-v0, partially observable: no velocity, lidar every k-th step, "
                              "per-episode action latency")


_register_bundled_tasks()

__all__ = ["BatchedMujocoEnv", "ObsLayout", "get_task", "list_tasks", "make_env", "register_task"]
