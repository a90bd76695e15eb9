"""The parity gate: an exported policy must act like the eager torch policy over a real rollout.

The eager policy drives the task's env for ``steps`` steps; every exported backend sees the same
observation sequence, carries its own recurrent state (zeroed where an episode ended, as a robot
does at reset) and is compared action by action with the eager output.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from robolearn.deploy.contract import STATE_NAMES

#: a backend maps numpy inputs ``(obs, *state)`` to numpy outputs ``[actions, *state]``
Backend = Callable[..., Sequence[np.ndarray]]


def initial_state(policy: nn.Module, batch: int) -> list[np.ndarray]:
    """Zero recurrent state ``[layers, batch, hidden]`` per state input (none for an MLP)."""
    recurrent = policy.recurrent
    if recurrent is None:
        return []
    shape = (recurrent["layers"], batch, recurrent["hidden_size"])
    return [np.zeros(shape, np.float32) for _ in STATE_NAMES[recurrent["cell"]]]


def torch_backend(module: Callable) -> Backend:
    """A torch callable (the eager policy module or a TorchScript module) with numpy in and out."""

    @torch.no_grad()
    def run(*inputs: np.ndarray) -> list[np.ndarray]:
        out = module(*(torch.from_numpy(x) for x in inputs))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    return run


def rollout_parity(policy: nn.Module, backends: dict[str, Backend], env, steps: int, seed: int) -> dict[str, float]:
    """Max abs action difference of each backend to the eager policy over a ``steps``-step rollout."""
    eager = torch_backend(policy)
    obs, _ = env.reset(seed=seed)
    states = {name: initial_state(policy, env.num_envs) for name in ["eager", *backends]}
    worst = dict.fromkeys(backends, 0.0)
    for _ in range(steps):
        x = obs["policy"]
        actions, *states["eager"] = eager(x, *states["eager"])
        for name, backend in backends.items():
            out, *states[name] = backend(x, *states[name])
            diff = float(np.max(np.abs(np.asarray(out) - actions)))
            worst[name] = max(worst[name], diff if math.isfinite(diff) else math.inf)
        obs, _, terminated, truncated, _ = env.step(actions)
        done = terminated | truncated
        if done.any():
            for state in states.values():
                for tensor in state:
                    tensor[:, done] = 0.0
    return worst
