"""A task with an image observation term, for the policy and deploy tests (not a bundled task).

``robolearn-test/NavImage-v0`` is Nav-v0 whose ``policy`` group replaces the lidar ring with a
"depth image" ``(H, W)`` made from it: column j reads lidar ray ``j * rays // W`` (so the image
follows the obstacles as the robot moves), row r scales it by ``1 + r / H`` (so rows differ and a
transposed image is a different image). The image sits between the ``goal`` and ``velocity`` terms,
so the vector terms are not contiguous. The ``critic`` group is Nav's privileged vectors (no image).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import gymnasium
import numpy as np
from pydantic import Field

from robolearn.config import ENV_CONFIGS
from robolearn.envs.diffdrive import NavConfig, NavEnv
from robolearn.envs.registry import _TASKS, register_task

TASK = "robolearn-test/NavImage-v0"
DEPTH_INFO = {"units": "m", "invalid_value": 0.0, "layout": "row-major, row 0 at the top", "near": 0.05,
              "far": 6.0}


class NavImageConfig(NavConfig):
    task: str = TASK
    image_shape: list[int] = Field(default_factory=lambda: [6, 8], description="(H, W) of the depth term")


class NavImageEnv(NavEnv):
    config_cls = NavImageConfig
    obs_term_info = {"depth": DEPTH_INFO}

    def _obs_terms(self) -> dict[str, dict]:
        groups = super()._obs_terms()
        policy = {name: width for name, width in groups["policy"].items() if name != "lidar"}
        height, width = self.cfg.image_shape
        policy = {"goal": policy.pop("goal"), "depth": (height, width), **policy}
        return {"policy": policy, "critic": groups["critic"]}

    def _observe(self) -> dict[str, np.ndarray]:
        terms = super()._observe()
        height, width = self.cfg.image_shape
        rays = terms["lidar"].shape[1]
        columns = terms["lidar"][:, np.arange(width) * rays // width]  # (N, W)
        rows = 1.0 + np.arange(height) / height  # (H,)
        terms["depth"] = (rows[None, :, None] * columns[:, None, :]).reshape(len(columns), height * width)
        return terms


def depth_image(env: NavImageEnv, obs: np.ndarray) -> np.ndarray:
    """The depth images ``(N, H, W)`` inside a batch of ``policy`` observations."""
    layout = env.obs_layout["policy"]
    return obs[:, layout.slices["depth"]].reshape(-1, *layout.shapes["depth"])


@contextlib.contextmanager
def registered() -> Iterator[str]:
    """The task registered (with robolearn, its config schema and gymnasium) while the block runs,
    so that it never shows up in other test modules' lists of the bundled tasks."""
    register_task(TASK, NavImageEnv, NavImageConfig, "image_env:NavImageEnv", "image_env:NavImageEnv",
                  "test only: Nav-v0 with a depth image made from the lidar instead of the lidar")
    try:
        yield TASK
    finally:
        _TASKS.pop(TASK, None)
        ENV_CONFIGS.pop(TASK, None)
        gymnasium.registry.pop(TASK, None)
