"""Proximal Policy Optimization (Schulman et al. 2017): clipped surrogate, GAE(γ, λ), clipped value
loss, entropy bonus, gradient clipping and a KL-adaptive learning rate (rsl_rl's rule)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robolearn.algorithms.gae import normalize_advantages
from robolearn.models.actor_critic import ActorCritic, gaussian_kl

if TYPE_CHECKING:
    from robolearn.storage import RolloutStorage

MIN_LR, MAX_LR = 1e-5, 1e-2
STAT_NAMES = ("policy_loss", "value_loss", "entropy", "kl", "clip_fraction")


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


def adapt_learning_rate(lr: float, kl: float, desired_kl: float) -> float:
    """rsl_rl's rule: KL above 2× the target divides lr by 1.5, below half multiplies it by 1.5."""
    if kl > 2.0 * desired_kl:
        return max(MIN_LR, lr / 1.5)
    if kl < 0.5 * desired_kl:
        return min(MAX_LR, lr * 1.5)
    return lr


class PPO:
    """Updates an :class:`ActorCritic` from a full :class:`RolloutStorage`.

    Keyword arguments equal the fields of ``robolearn.config.AlgorithmConfig`` (less ``name`` and
    ``num_steps``).
    """

    def __init__(
        self,
        model: ActorCritic,
        num_epochs: int = 5,
        num_minibatches: int = 4,
        gamma: float = 0.99,
        lam: float = 0.95,
        clip_ratio: float = 0.2,
        clip_value: bool = True,
        value_coef: float = 1.0,
        entropy_coef: float = 0.005,
        lr: float = 1e-3,
        lr_schedule: str = "adaptive",
        desired_kl: float = 0.01,
        max_grad_norm: float = 1.0,
        normalize_advantage: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        if lr_schedule not in ("adaptive", "fixed"):
            raise ValueError(f"lr_schedule must be 'adaptive' or 'fixed', got {lr_schedule!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.num_epochs = num_epochs
        self.num_minibatches = num_minibatches
        self.gamma = gamma
        self.lam = lam
        self.clip_ratio = clip_ratio
        self.clip_value = clip_value
        self.value_coef = value_coef
        self.entropy_coef = entropy_coef
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.desired_kl = desired_kl
        self.max_grad_norm = max_grad_norm
        self.normalize_advantage = normalize_advantage
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, fused=True)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        """Learn from a full rollout, then fold its observations into the model's normalisers and
        clear it. Returns the means over minibatches of :data:`STAT_NAMES`, plus ``lr``."""
        self.model.train()
        storage.compute_returns(self.gamma, self.lam)
        stat_sums = torch.zeros(len(STAT_NAMES), device=self.device)
        for batch in storage.minibatches(self.num_minibatches, self.num_epochs):
            log_prob, entropy, values, mean, std = self.model.evaluate(batch.obs, batch.actions)

            # KL(π_old ‖ π_θ) on this minibatch, before its gradient step; drives the adaptive lr
            with torch.no_grad():
                kl = gaussian_kl(batch.action_mean, batch.action_std, mean, std).mean()
            if self.lr_schedule == "adaptive":
                self._set_lr(adapt_learning_rate(self.lr, kl.item(), self.desired_kl))

            advantages = batch.advantages
            if self.normalize_advantage:
                advantages = normalize_advantages(advantages)
            policy_loss, clip_fraction = clipped_surrogate_loss(log_prob, batch.log_probs, advantages,
                                                                self.clip_ratio)
            if self.clip_value:
                value_loss = clipped_value_loss(values, batch.values, batch.returns, self.clip_ratio)
            else:
                value_loss = (values - batch.returns).square().mean()
            entropy = entropy.mean()
            # L = −L^CLIP + c1 · L^VF − c2 · S[π_θ]
            loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy

            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            stat_sums += torch.stack([policy_loss, value_loss, entropy, kl, clip_fraction]).detach()

        # the one host sync of the update (besides the adaptive lr's): statistics and a NaN check
        params_finite = torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()
        *means, finite = torch.cat([stat_sums / (self.num_epochs * self.num_minibatches),
                                    params_finite.float().unsqueeze(0)]).tolist()
        stats = dict(zip(STAT_NAMES, means))
        if finite != 1.0 or not all(math.isfinite(value) for value in means):
            raise FloatingPointError(
                f"PPO update went non-finite ({', '.join(f'{k}={v:.4g}' for k, v in stats.items())}, "
                f"parameters finite: {finite == 1.0}); check the env's observations and rewards for "
                "NaN/inf, or lower the learning rate"
            )
        self.model.update_normalizers(storage.obs)
        storage.clear()
        return {**stats, "lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self._set_lr(state["lr"])

    def _set_lr(self, lr: float) -> None:
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
