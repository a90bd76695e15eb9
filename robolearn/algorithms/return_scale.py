"""Reward scaling by the running spread of the discounted return (``algorithm.normalize_rewards``).

PPO's critic regresses returns: with rewards of a few units per step over hundreds of steps the
returns reach the thousands, the value loss dominates the one gradient-norm clip that actor and
critic share (so the actor barely moves whatever the learning rate) and the value clip (±ε in the
return's own units) holds the critic almost still. Dividing every reward by σ_G, the running
standard deviation of the discounted return

    G_t = γ · G_{t−1} + r_t      (per env, G ← 0 after an episode ends)

brings the returns to a few units for any choice of reward weights. Only the learner sees the
scaled rewards: episode returns, reward terms and success in the logs stay in the task's units.
The statistics are those of every G_t seen (with ``reduce``, every rank's); σ_G is updated with a
rollout before that rollout is scaled.
"""

from __future__ import annotations

import torch
from torch import nn

from robolearn.models.normalizer import EmpiricalNormalizer, ReduceMoments


class ReturnScale(nn.Module):
    """``r_t ← r_t / sqrt(Var[G] + eps)`` in place on a rollout's rewards ``[T, N]`` (:meth:`scale_`)."""

    def __init__(self, gamma: float, eps: float = 1e-8) -> None:
        super().__init__()
        self.gamma = gamma
        self.returns = EmpiricalNormalizer(1, eps=eps)
        #: G of each env after the last rollout (sized at the first rollout)
        self.register_buffer("running_return", torch.zeros(0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the buffer is sized at the first rollout: size it to the saved one so that it loads
        # (scale_ restarts it from zero if the run now has another number of envs)
        key = prefix + "running_return"
        if key in state_dict:
            self.running_return = torch.zeros_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def std(self) -> torch.Tensor:
        """σ_G (a 0-d tensor; 1 before any rollout)."""
        return torch.sqrt(self.returns.var[0] + self.returns.eps)

    @torch.no_grad()
    def scale_(self, rewards: torch.Tensor, dones: torch.Tensor, reduce: ReduceMoments | None = None) -> torch.Tensor:
        """Fold the rollout's discounted returns into the statistics, then divide ``rewards`` by σ_G."""
        if self.running_return.shape != rewards.shape[1:]:
            self.running_return = rewards.new_zeros(rewards.shape[1:])
        g = self.running_return
        discounted = torch.empty_like(rewards)
        for t in range(rewards.shape[0]):
            g = self.gamma * g + rewards[t]
            discounted[t] = g
            g = g * (1.0 - dones[t])
        self.running_return.copy_(g)
        self.returns.update(discounted.reshape(-1, 1), reduce)
        return rewards.div_(self.std)
