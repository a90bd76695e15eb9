"""Differential-drive base: navigation tasks."""

from robolearn.envs.diffdrive.nav import NavConfig, NavEnv
from robolearn.envs.diffdrive.nav_depth import NavDepthConfig, NavDepthEnv
from robolearn.envs.diffdrive.nav_po import NavPOConfig, NavPOEnv
from robolearn.envs.single import SingleEnvView


def make_nav_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/Nav-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(NavEnv, **kwargs)


def make_nav_po_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/NavPO-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(NavPOEnv, **kwargs)


def make_nav_depth_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/NavDepth-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(NavDepthEnv, **kwargs)


__all__ = ["NavConfig", "NavDepthConfig", "NavDepthEnv", "NavEnv", "NavPOConfig", "NavPOEnv",
           "make_nav_depth_single", "make_nav_po_single", "make_nav_single"]
