"""5-DOF arm with a parallel gripper over a table: Reach, Push, PickPlace."""

from robolearn.envs.arm.base import ArmTaskConfig, ArmTaskEnv
from robolearn.envs.arm.pickplace import PickPlaceConfig, PickPlaceEnv
from robolearn.envs.arm.push import PushConfig, PushEnv
from robolearn.envs.arm.reach import ReachConfig, ReachEnv
from robolearn.envs.single import SingleEnvView


def make_reach_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/Reach-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(ReachEnv, **kwargs)


def make_push_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/Push-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(PushEnv, **kwargs)


def make_pickplace_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/PickPlace-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(PickPlaceEnv, **kwargs)


__all__ = ["ArmTaskConfig", "ArmTaskEnv", "PickPlaceConfig", "PickPlaceEnv", "PushConfig", "PushEnv", "ReachConfig",
           "ReachEnv", "make_pickplace_single", "make_push_single", "make_reach_single"]
