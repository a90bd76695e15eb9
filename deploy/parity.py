"""The parity gate: an exported policy must act like the eager torch policy over a real rollout.

The eager policy, driven through the policy interface (:mod:`robolearn.models.policy`:
``initial_state``, ``act_inference``, ``reset_state``), drives the task's env for ``steps`` steps.
Every exported backend sees the same observation sequence and is run as the robot runs it: its
recurrent state is the contract's (``[layers, batch, hidden]`` per state input, or a transformer's
context ``[rows, batch, width]``), starts at zero
and is zeroed where an episode ended (what ``PolicyRunner.reset`` does); its actions are compared
with the eager ones step by step.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from robolearn.deploy.contract import STATE_NAMES, state_shape
from robolearn.models import Policy

#: a backend maps numpy inputs ``(obs, *state)`` to numpy outputs ``[actions, *state]``
Backend = Callable[..., Sequence[np.ndarray]]


def contract_state(recurrent: dict | None, batch: int) -> list[np.ndarray]:
    """The contract's zero state: one array per state input, ``[layers, batch, hidden]`` (LSTM/GRU)
    or ``[rows, batch, width]`` (a transformer's context); none for an MLP."""
    if recurrent is None:
        return []
    return [np.zeros(state_shape(recurrent, batch), np.float32) for _ in STATE_NAMES[recurrent["cell"]]]


def torch_backend(module: Callable) -> Backend:
    """A torch callable (the eager policy module or a TorchScript module) with numpy in and out."""

    @torch.no_grad()
    def run(*inputs: np.ndarray) -> list[np.ndarray]:
        out = module(*(torch.from_numpy(x) for x in inputs))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    return run


class DeployedActorPolicy(Policy):
    """The inference part of the policy interface over a bare deployable module (``forward(obs[,
    *state]) -> actions[, *state]``, see :mod:`robolearn.deploy.export`), for exporting modules that
    are not robolearn policies. State: the module's states stacked, ``[S, *state shape]`` with the
    batch axis second to last, or ``[N, 0]`` for a feed-forward module."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def initial_state(self, num_envs: int) -> torch.Tensor:
        states = contract_state(self.module.recurrent, num_envs)
        return torch.from_numpy(np.stack(states)) if states else torch.zeros(num_envs, 0)

    def act_inference(self, obs, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.module.recurrent is None:
            return self.module(obs["policy"]), state
        actions, *new_state = self.module(obs["policy"], *state)
        return actions, torch.stack(new_state)


def rollout_parity(reference: Policy, backends: dict[str, Backend], recurrent: dict | None, env, steps: int,
                   seed: int) -> dict[str, float]:
    """Max abs action difference of each backend (state layout ``recurrent``, the contract's) to
    the ``reference`` policy's ``act_inference`` over a ``steps``-step rollout of ``env``."""
    obs, _ = env.reset(seed=seed)
    reference_state = reference.initial_state(env.num_envs)
    states = {name: contract_state(recurrent, env.num_envs) for name in backends}
    worst = dict.fromkeys(backends, 0.0)
    for _ in range(steps):
        with torch.no_grad():
            actions, reference_state = reference.act_inference({g: torch.from_numpy(v) for g, v in obs.items()},
                                                               reference_state)
        actions = actions.numpy()
        for name, backend in backends.items():
            out, *states[name] = backend(obs["policy"], *states[name])
            diff = float(np.max(np.abs(np.asarray(out) - actions)))
            worst[name] = max(worst[name], diff if math.isfinite(diff) else math.inf)
        obs, _, terminated, truncated, _ = env.step(actions)
        done = terminated | truncated
        reference_state = reference.reset_state(reference_state, torch.from_numpy(done))
        if done.any():
            for state in states.values():
                for tensor in state:
                    tensor[:, done] = 0.0
    return worst
