"""Advantage actor-critic (Mnih et al. 2016, synchronous): one gradient step per rollout on the
plain policy gradient, with the same GAE(γ, λ) advantages, value baseline, entropy bonus and
gradient clipping as PPO (:mod:`robolearn.algorithms.on_policy`), a fixed learning rate and no
ratio or value clipping."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from robolearn.algorithms.on_policy import OnPolicyAlgorithm

if TYPE_CHECKING:
    from collections.abc import Mapping

    from robolearn.distributed import Distributed
    from robolearn.models import Policy
    from robolearn.storage import Minibatch


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """−Ê_t[log π_θ(a_t|s_t) Â_t], the policy-gradient objective as a loss."""
    return -(log_prob * advantages).mean()


class A2C(OnPolicyAlgorithm):
    """One pass over the whole rollout as a single batch.

    Keyword arguments equal the fields of :class:`robolearn.config.AlgorithmConfig` that apply to
    A2C (``AlgorithmConfig.algorithm_kwargs()`` gives them, with their defaults). Its logged ``kl``
    and ``clip_fraction`` are 0: the one step is taken from the policy that collected the rollout.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        gamma: float,
        lam: float,
        value_coef: float,
        entropy_coef: float,
        lr: float,
        max_grad_norm: float,
        normalize_advantage: bool,
        normalize_rewards: bool,
        entropy_stage: Mapping[str, float | None] | None = None,
        device: torch.device | str = "cpu",
        distributed: Distributed | None = None,
    ) -> None:
        super().__init__(policy, num_epochs=1, num_minibatches=1, gamma=gamma, lam=lam, value_coef=value_coef,
                         entropy_coef=entropy_coef, lr=lr, max_grad_norm=max_grad_norm,
                         normalize_advantage=normalize_advantage, normalize_rewards=normalize_rewards,
                         entropy_stage=entropy_stage, device=device,
                         distributed=distributed)

    def policy_loss(self, log_prob: torch.Tensor, batch: Minibatch,
                    advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return policy_gradient_loss(log_prob, advantages), log_prob.new_zeros(())
