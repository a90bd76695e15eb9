"""Differential-drive base: navigation tasks."""

from robolearn.envs.diffdrive.nav import NavConfig, NavEnv
from robolearn.envs.diffdrive.nav_po import NavPOConfig, NavPOEnv
from robolearn.envs.single import SingleEnvView


def make_nav_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/Nav-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(NavEnv, **kwargs)


def make_nav_po_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/NavPO-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(NavPOEnv, **kwargs)


__all__ = ["NavConfig", "NavEnv", "NavPOConfig", "NavPOEnv", "make_nav_po_single", "make_nav_single"]
