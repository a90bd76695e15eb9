"""Single-env view of a batched task, for gymnasium tools (``gymnasium.make``, SB3, CleanRL).

The observation is the ``policy`` group as a flat ``Box``; ``info["critic"]`` carries the
privileged group. Episodes end as in any gymnasium env: after ``terminated`` or ``truncated``
the caller resets. The batched env underneath runs one simulation on one thread.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from robolearn.envs.core import BatchedMujocoEnv, finished_episodes


class SingleEnvView(gymnasium.Env):
    """One simulation of a :class:`BatchedMujocoEnv` behind the ``gymnasium.Env`` API."""

    def __init__(self, env_cls: type[BatchedMujocoEnv], render_mode: str | None = None, **kwargs: Any):
        kwargs.setdefault("nthread", 1)
        self.vector_env = env_cls(num_envs=1, render_mode=render_mode, **kwargs)
        self.observation_space = self.vector_env.single_observation_space["policy"]
        self.action_space = self.vector_env.single_action_space
        self.render_mode = render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self.vector_env.metadata["render_fps"]}
        self.spec_layout = self.vector_env.obs_layout

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))  # gymnasium seeds np_random from entropy
        self._seeded = True
        obs, _ = self.vector_env.reset(seed=seed, options=options)
        return obs["policy"][0], {"critic": obs["critic"][0]}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.vector_env.step(np.asarray(action, np.float32)[None])
        out_info: dict[str, Any] = {}
        ended, metrics = finished_episodes(info)
        if ended.size:  # the batch already started a new episode: report the old one's end
            obs = info["final_obs"]
            out_info["episode"] = {k: v[0] for k, v in metrics.items()}
        out_info["critic"] = obs["critic"][0]
        return obs["policy"][0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), out_info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.vector_env.render_env(0)
        return None

    def close(self):
        self.vector_env.close()
