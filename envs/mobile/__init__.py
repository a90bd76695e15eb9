"""Mobile manipulator: the differential-drive base carrying the arm (robolearn/MobilePick-v0)."""

from robolearn.envs.mobile.mobile_pick import MobilePickConfig, MobilePickEnv
from robolearn.envs.single import SingleEnvView


def make_mobile_pick_single(**kwargs) -> SingleEnvView:
    """Single-env view of ``robolearn/MobilePick-v0`` (gymnasium ``entry_point``)."""
    return SingleEnvView(MobilePickEnv, **kwargs)


__all__ = ["MobilePickConfig", "MobilePickEnv", "make_mobile_pick_single"]
