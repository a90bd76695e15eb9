"""Rollout collection: a batched env driven by the policy, written into a :class:`RolloutStorage`.

:class:`TorchEnv` puts a numpy batched env (``robolearn.envs``) behind torch tensors on the
training device: one copy per step each way, nothing else leaves the device. :func:`collect_rollout`
is the loop the runner (and the learner benchmark) uses.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from robolearn.models import ActorCritic, RecurrentActorCritic, reset_finished
from robolearn.storage import RolloutStorage


class EnvStep(NamedTuple):
    obs: dict[str, torch.Tensor]  # next observations (finished envs already reset)
    rewards: torch.Tensor  # [N]
    dones: torch.Tensor  # [N] float: terminated or truncated
    truncated_ids: torch.Tensor | None  # indices of truncated envs, or None
    final_obs: dict[str, torch.Tensor] | None  # true last observations of the truncated envs
    info: dict[str, Any]


class StepEnv(Protocol):
    num_envs: int

    def step(self, actions: torch.Tensor) -> EnvStep: ...


class TorchEnv:
    """A numpy batched env (SAME_STEP autoreset) seen through torch tensors on ``device``."""

    def __init__(self, env, device: torch.device):
        self.env, self.device = env, device
        self.num_envs = env.num_envs

    def to_device(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {group: torch.from_numpy(value).to(self.device, non_blocking=True) for group, value in obs.items()}

    def reset(self) -> dict[str, torch.Tensor]:
        return self.to_device(self.env.reset()[0])

    def step(self, actions: torch.Tensor) -> EnvStep:
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        truncated_ids = final_obs = None
        if truncated.any():  # decided on the host: no device sync
            ids = np.flatnonzero(truncated)
            truncated_ids = torch.from_numpy(ids).to(self.device)
            final_obs = self.to_device({g: v[ids] for g, v in info["final_obs"].items()})
        dones = torch.from_numpy(terminated | truncated).to(self.device, torch.float32)
        return EnvStep(self.to_device(obs), torch.from_numpy(reward).to(self.device), dones,
                       truncated_ids, final_obs, info)


@torch.inference_mode()
def collect_rollout(model: ActorCritic | RecurrentActorCritic, env: StepEnv, storage: RolloutStorage,
                    obs: dict[str, torch.Tensor], state: torch.Tensor | None = None,
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, list[dict[str, Any]]]:
    """Fill ``storage`` with ``storage.num_steps`` steps from ``obs`` (and, for a recurrent model,
    its hidden ``state``); returns the next observation, the next state (None for an MLP) and the
    env's per-step infos.

    Bootstrap values (``next_values``): a truncated env gets V(final_obs) of its true last
    observation (evaluated on the truncated envs only), a terminated env 0, and a running env
    V(s_{t+1}), which is the value the next step computes anyway. A recurrent model's state is
    stored at the rollout's start and zeroed for every env whose episode ended.
    """
    model.eval()
    infos = []
    bootstrap = torch.zeros(env.num_envs, device=storage.device)
    if state is not None:
        storage.initial_state.copy_(state)
    for _ in range(storage.num_steps):
        if state is None:
            actions, log_prob, values, mean, std = model.act(obs)
        else:
            actions, log_prob, values, mean, std, state = model.act(obs, state)
        step = env.step(actions)
        bootstrap.zero_()
        if step.truncated_ids is not None:
            if state is None:
                bootstrap[step.truncated_ids] = model.value(step.final_obs)
            else:  # the memory after this step, of the truncated envs: state is [S, layers, N, H]
                bootstrap[step.truncated_ids] = model.value(step.final_obs, state[:, :, step.truncated_ids])
        storage.add(obs, actions, log_prob, values, mean, std, step.rewards, step.dones, bootstrap)
        infos.append(step.info)
        obs = step.obs
        if state is not None:
            state = reset_finished(state, step.dones)
    last_values = model.value(obs) if state is None else model.value(obs, state)
    following = torch.cat([storage.values[1:], last_values.unsqueeze(0)])
    storage.next_values.mul_(storage.dones).add_((1.0 - storage.dones) * following)
    model.train()
    return obs, state, infos
