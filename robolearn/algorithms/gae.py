"""Generalized advantage estimation (Schulman et al. 2016), shared by PPO and A2C."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(γ, λ) advantages Â_t and returns Â_t + V(s_t) over time-major tensors ``[T, N]``.

    ``dones[t]``: the episode ended at step t (terminated or truncated). ``next_values[t]``: the
    value of the true next observation of step t: V(s_{t+1}) while the episode goes on,
    V(final_obs) when it was truncated (the pre-reset observation), 0 when it terminated. So a
    truncated episode is bootstrapped with the value of where it really ended, not of the reset
    state (rsl_rl's bug), and the trace is cut at every episode end::

        δ_t = r_t + γ · next_values[t] − V(s_t)
        Â_t = δ_t + γλ · (1 − dones[t]) · Â_{t+1}
    """
    not_done = 1.0 - dones.to(rewards.dtype)
    deltas = rewards + gamma * next_values - values
    advantages = torch.empty_like(rewards)
    advantage = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        advantage = deltas[t] + gamma * lam * not_done[t] * advantage
        advantages[t] = advantage
    return advantages, advantages + values


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit standard deviation."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)
