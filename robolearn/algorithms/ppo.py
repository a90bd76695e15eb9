"""Proximal Policy Optimization (Schulman et al. 2017): clipped surrogate, GAE(γ, λ), clipped value
loss, entropy bonus, gradient clipping and a KL-adaptive learning rate (rsl_rl's rule). Everything
but the clipping and the lr rule is shared with A2C (:mod:`robolearn.algorithms.on_policy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from robolearn.algorithms.on_policy import OnPolicyAlgorithm, squared_error_value_loss

if TYPE_CHECKING:
    from collections.abc import Mapping

    from robolearn.distributed import Distributed
    from robolearn.models import Policy
    from robolearn.storage import Minibatch

MIN_LR, MAX_LR = 1e-5, 1e-2


def clipped_surrogate_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                           clip_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """−L^CLIP (a loss to minimise) and the fraction of samples whose ratio left [1 − ε, 1 + ε].

    L^CLIP(θ) = Ê_t[min(r_t(θ) Â_t, clip(r_t(θ), 1 − ε, 1 + ε) Â_t)]
    """
    ratio = torch.exp(log_prob - old_log_prob)  # r_t(θ) = π_θ(a_t|s_t) / π_θold(a_t|s_t)
    surrogate = ratio * advantages
    surrogate_clipped = ratio.clamp(1.0 - clip_ratio, 1.0 + clip_ratio) * advantages
    loss = -torch.min(surrogate, surrogate_clipped).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_ratio).float().mean()
    return loss, clip_fraction.detach()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       clip_range: float) -> torch.Tensor:
    """Ê[max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)]: the critic is kept close too."""
    values_clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return torch.max((values - returns).square(), (values_clipped - returns).square()).mean()


@torch.no_grad()
def adapt_learning_rate_(lr: torch.Tensor, kl: torch.Tensor, desired_kl: float) -> torch.Tensor:
    """rsl_rl's rule, in place on ``lr`` (a 0-d tensor on the training device, so no host sync):
    KL above 2× the target divides lr by 1.5 (not below 1e-5), below half multiplies it by 1.5
    (not above 1e-2). The comparisons run in ``lr``'s dtype (float64 on CPU)."""
    kl = kl.to(lr.dtype)
    lowered = (lr / 1.5).clamp_min(MIN_LR)
    raised = (lr * 1.5).clamp_max(MAX_LR)
    return lr.copy_(torch.where(kl > 2.0 * desired_kl, lowered, torch.where(kl < 0.5 * desired_kl, raised, lr)))


class PPO(OnPolicyAlgorithm):
    """Updates an actor-critic (MLP or recurrent) from a full :class:`RolloutStorage`, ``num_epochs``
    passes of ``num_minibatches`` minibatches each.

    Keyword arguments equal the fields of :class:`robolearn.config.AlgorithmConfig` (less ``name``;
    ``AlgorithmConfig.algorithm_kwargs()`` gives them, with their defaults), plus the ``device``
    and, for data-parallel training, the ``distributed`` context.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        num_epochs: int,
        num_minibatches: int,
        gamma: float,
        lam: float,
        clip_ratio: float,
        clip_value: bool,
        value_coef: float,
        entropy_coef: float,
        lr: float,
        lr_schedule: str,
        desired_kl: float,
        max_grad_norm: float,
        normalize_advantage: bool,
        normalize_rewards: bool,
        entropy_stage: Mapping[str, float | None] | None = None,
        device: torch.device | str = "cpu",
        distributed: Distributed | None = None,
    ) -> None:
        if lr_schedule not in ("adaptive", "fixed"):
            raise ValueError(f"lr_schedule must be 'adaptive' or 'fixed', got {lr_schedule!r}")
        super().__init__(policy, num_epochs, num_minibatches, gamma=gamma, lam=lam, value_coef=value_coef,
                         entropy_coef=entropy_coef, lr=lr, max_grad_norm=max_grad_norm,
                         normalize_advantage=normalize_advantage, normalize_rewards=normalize_rewards,
                         entropy_stage=entropy_stage, device=device,
                         distributed=distributed)
        self.clip_ratio = clip_ratio
        self.clip_value = clip_value
        self.lr_schedule = lr_schedule
        self.desired_kl = desired_kl

    def policy_loss(self, log_prob: torch.Tensor, batch: Minibatch,
                    advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return clipped_surrogate_loss(log_prob, batch.log_probs, advantages, self.clip_ratio)

    def value_loss(self, values: torch.Tensor, batch: Minibatch) -> torch.Tensor:
        if self.clip_value:
            return clipped_value_loss(values, batch.values, batch.returns, self.clip_ratio)
        return squared_error_value_loss(values, batch.returns)

    def on_minibatch_kl(self, kl: torch.Tensor) -> None:
        if self.lr_schedule == "adaptive":
            adapt_learning_rate_(self.lr_tensor, kl, self.desired_kl)
