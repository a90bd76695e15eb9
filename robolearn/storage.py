"""Fixed-size rollout buffer: ``num_steps`` transitions of ``num_envs`` envs, time-major ``[T, N, ...]``.

For a recurrent policy it also keeps the hidden state every env had when the rollout started, and
hands out minibatches of whole envs (``[T, n, ...]`` slices with that state and the dones), so the
model can run each env's steps as sequences.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import torch

from robolearn.algorithms.gae import compute_gae


class Minibatch(NamedTuple):
    """A shuffled slice of the flattened rollout (leading dimension B), or, for a recurrent policy,
    a group of n envs (leading dimensions ``[T, n]``) with their start ``state`` and ``dones``."""

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    action_mean: torch.Tensor
    action_std: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    state: torch.Tensor | None = None  # [S, layers, n, H] at the rollout's start
    dones: torch.Tensor | None = None  # [T, n]


class RolloutStorage:
    """Preallocated on ``device``; ``add`` writes one step in place, nothing is allocated per step."""

    def __init__(self, num_steps: int, num_envs: int, obs_dims: Mapping[str, int], action_dim: int,
                 device: torch.device | str = "cpu", state_shape: tuple[int, int, int] | None = None) -> None:
        """``state_shape``: a recurrent model's ``(S, layers, hidden)`` (its ``state_shape``), or None."""
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
        self.initial_state = None
        if state_shape is not None:
            num_states, layers, hidden = state_shape
            self.initial_state = torch.zeros(num_states, layers, num_envs, hidden, device=self.device)
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

    def compute_returns(self, gamma: float, lam: float) -> None:
        """Fill ``advantages`` and ``returns`` with GAE(γ, λ)."""
        if self.step != self.num_steps:
            raise RuntimeError(f"rollout incomplete: {self.step} of {self.num_steps} steps added")
        advantages, returns = compute_gae(self.rewards, self.values, self.dones, self.next_values, gamma, lam)
        self.advantages.copy_(advantages)
        self.returns.copy_(returns)

    def minibatches(self, num_minibatches: int, num_epochs: int,
                    generator: torch.Generator | None = None) -> Iterator[Minibatch]:
        """``num_epochs`` passes over the flattened rollout, each in a fresh random order, split into
        ``num_minibatches`` nearly equal minibatches."""
        batch_size = self.num_steps * self.num_envs
        obs = {group: buffer.flatten(0, 1) for group, buffer in self.obs.items()}
        fields = [self.actions, self.log_probs, self.values, self.action_mean, self.action_std,
                  self.advantages, self.returns]
        flat_fields = [field.flatten(0, 1) for field in fields]
        for _ in range(num_epochs):
            permutation = torch.randperm(batch_size, device=self.device, generator=generator)
            for indices in permutation.tensor_split(num_minibatches):
                yield Minibatch({group: x[indices] for group, x in obs.items()},
                                *(field[indices] for field in flat_fields))

    def env_minibatches(self, num_minibatches: int, num_epochs: int,
                        generator: torch.Generator | None = None) -> Iterator[Minibatch]:
        """``num_epochs`` passes over the envs, each in a fresh random order, split into
        ``num_minibatches`` groups; a minibatch holds its envs' whole rollouts ``[T, n, ...]``."""
        if self.initial_state is None:
            raise RuntimeError("env_minibatches needs a storage built with state_shape (a recurrent model)")
        if num_minibatches > self.num_envs:
            raise ValueError(f"num_minibatches={num_minibatches} exceeds num_envs={self.num_envs}: "
                             "recurrent minibatches are groups of envs")
        fields = [self.actions, self.log_probs, self.values, self.action_mean, self.action_std,
                  self.advantages, self.returns]
        for _ in range(num_epochs):
            permutation = torch.randperm(self.num_envs, device=self.device, generator=generator)
            for envs in permutation.tensor_split(num_minibatches):
                yield Minibatch({group: x[:, envs] for group, x in self.obs.items()},
                                *(field[:, envs] for field in fields),
                                state=self.initial_state[:, :, envs], dones=self.dones[:, envs])

    def clear(self) -> None:
        """Start a new rollout (buffers are overwritten, not zeroed)."""
        self.step = 0
