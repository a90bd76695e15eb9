"""Fixed-size rollout buffer: ``num_steps`` transitions of ``num_envs`` envs, time-major ``[T, N, ...]``.

It also keeps the policy state every env had when the rollout started, and hands out either
shuffled single steps or minibatches of whole envs (``[T, n, ...]`` slices with that state and the
dones), so that a policy with memory can run each env's steps as sequences.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import torch


class Minibatch(NamedTuple):
    """A shuffled slice of the flattened rollout (leading dimension B), or a group of n whole envs
    (leading dimensions ``[T, n]``) with their start ``state`` and ``dones``."""

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    action_mean: torch.Tensor
    action_std: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    state: torch.Tensor | None = None  # [..., n, :] at the rollout's start
    dones: torch.Tensor | None = None  # [T, n]


class RolloutStorage:
    """Preallocated on ``device``; ``add`` writes one step in place, nothing is allocated per step."""

    def __init__(self, num_steps: int, num_envs: int, obs_dims: Mapping[str, int], action_dim: int,
                 state_shape: tuple[int, ...], device: torch.device | str = "cpu") -> None:
        """``state_shape``: the shape of the policy's state for ``num_envs`` envs (of
        ``policy.initial_state(num_envs)``; env dimension −2)."""
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = torch.device(device)

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(num_steps, num_envs, *shape, device=self.device)

        self.obs = {group: zeros(dim) for group, dim in obs_dims.items()}
        self.actions = zeros(action_dim)
        self.action_mean = zeros(action_dim)
        self.action_std = zeros(action_dim)
        self.log_probs = zeros()
        self.values = zeros()
        self.rewards = zeros()
        self.dones = zeros()
        self.next_values = zeros()
        self.advantages = zeros()
        self.returns = zeros()
        self.initial_state = torch.zeros(state_shape, device=self.device)
        if len(state_shape) < 2 or state_shape[-2] != num_envs:
            raise ValueError(f"state_shape {tuple(state_shape)}: expected the env dimension -2 to be {num_envs}")
        self.step = 0

    def add(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, log_probs: torch.Tensor,
            values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, rewards: torch.Tensor,
            dones: torch.Tensor, next_values: torch.Tensor) -> None:
        """Record step t. ``dones`` = terminated | truncated; ``next_values`` = value of the true next
        observation (V(s_{t+1}), V(final_obs) if truncated, 0 if terminated; see ``compute_gae``)."""
        if self.step >= self.num_steps:
            raise IndexError(f"rollout storage is full ({self.num_steps} steps); call clear() first")
        t = self.step
        for group, buffer in self.obs.items():
            buffer[t].copy_(obs[group])
        self.actions[t].copy_(actions)
        self.log_probs[t].copy_(log_probs)
        self.values[t].copy_(values)
        self.action_mean[t].copy_(mean)
        self.action_std[t].copy_(std)
        self.rewards[t].copy_(rewards)
        self.dones[t].copy_(dones)
        self.next_values[t].copy_(next_values)
        self.step += 1

    def minibatches(self, num_minibatches: int, num_epochs: int, whole_envs: bool = False,
                    generator: torch.Generator | None = None) -> Iterator[Minibatch]:
        """``num_epochs`` passes, each in a fresh random order, split into ``num_minibatches``
        nearly equal minibatches: of single steps of the flattened rollout, or (``whole_envs``) of
        envs, each minibatch holding its envs' whole rollouts ``[T, n, ...]``."""
        fields = [self.actions, self.log_probs, self.values, self.action_mean, self.action_std,
                  self.advantages, self.returns]
        if whole_envs:
            yield from self._env_minibatches(num_minibatches, num_epochs, fields, generator)
            return
        batch_size = self.num_steps * self.num_envs
        obs = {group: buffer.flatten(0, 1) for group, buffer in self.obs.items()}
        flat_fields = [field.flatten(0, 1) for field in fields]
        for _ in range(num_epochs):
            permutation = torch.randperm(batch_size, device=self.device, generator=generator)
            for indices in permutation.tensor_split(num_minibatches):
                yield Minibatch({group: x[indices] for group, x in obs.items()},
                                *(field[indices] for field in flat_fields))

    def _env_minibatches(self, num_minibatches: int, num_epochs: int, fields: list[torch.Tensor],
                         generator: torch.Generator | None) -> Iterator[Minibatch]:
        if num_minibatches > self.num_envs:
            raise ValueError(f"num_minibatches={num_minibatches} exceeds num_envs={self.num_envs}: "
                             "minibatches of a sequence policy are groups of envs")
        for _ in range(num_epochs):
            permutation = torch.randperm(self.num_envs, device=self.device, generator=generator)
            for envs in permutation.tensor_split(num_minibatches):
                yield Minibatch({group: x[:, envs] for group, x in self.obs.items()},
                                *(field[:, envs] for field in fields),
                                state=self.initial_state[..., envs, :], dones=self.dones[:, envs])

    def clear(self) -> None:
        """Start a new rollout (buffers are overwritten, not zeroed)."""
        self.step = 0
