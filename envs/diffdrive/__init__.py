"""Differential-drive base: navigation tasks."""

from robolearn.envs.diffdrive.nav import NavConfig, NavEnv, default_config
from robolearn.envs.single import SingleEnvView


def make_nav_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/Nav-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(NavEnv, **kwargs)


__all__ = ["NavConfig", "NavEnv", "default_config", "make_nav_single"]
