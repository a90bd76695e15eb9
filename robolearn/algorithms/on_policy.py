"""What PPO and A2C share: the actor-critic update loop and its math.

Both learn from a full :class:`~robolearn.storage.RolloutStorage`: GAE(γ, λ) returns, per-minibatch
advantage normalisation, the loss L = L^π + c1 · L^V − c2 · S[π_θ], gradient-norm clipping, Adam,
a NaN check and the normaliser update. A subclass supplies only what differs: the policy loss,
the value loss, the passes over the rollout and what happens to the learning rate.

The policy is driven through its interface (:mod:`robolearn.models.policy`) only: a policy with
``sequence_training`` gets minibatches of whole envs and scores each env's rollout as sequences
from the state it had at the rollout's start; any other gets shuffled single steps.

Host syncs: one per update (the logged statistics and the NaN check). The learning rate is a
0-d tensor on the training device that the fused Adam reads there, so PPO's KL-adaptive rule runs
on the device without a ``.item()`` per minibatch. With ``distributed`` (several ranks,
:mod:`robolearn.distributed`), each minibatch's gradients and KL are averaged over the ranks in
one all-reduce before clipping and the step, advantages are normalised with all ranks' minibatch
statistics, the logged statistics are rank means, and normaliser moments are merged over ranks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robolearn.algorithms.gae import compute_gae, normalize_advantages
from robolearn.algorithms.return_scale import ReturnScale
from robolearn.models import Policy, gaussian_kl

if TYPE_CHECKING:
    from collections.abc import Mapping

    from robolearn.distributed import Distributed
    from robolearn.storage import Minibatch, RolloutStorage

STAT_NAMES = ("policy_loss", "value_loss", "entropy", "kl", "clip_fraction")


def squared_error_value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """L^V = Ê[(V_φ(s_t) − R_t)²]."""
    return (values - returns).square().mean()


class OnPolicyAlgorithm:
    """The update loop; subclasses define :meth:`policy_loss` and may override :meth:`value_loss`
    and :meth:`on_minibatch_kl`."""

    def __init__(
        self,
        policy: Policy,
        num_epochs: int,
        num_minibatches: int,
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
        self.device = torch.device(device)
        self.distributed = distributed if distributed is not None and distributed.enabled else None
        self.policy = policy.to(self.device)
        self.num_epochs = num_epochs
        self.num_minibatches = num_minibatches
        self.gamma = gamma
        self.lam = lam
        self.value_coef = value_coef
        self.entropy_coef = entropy_coef
        #: {success, entropy_coef[, max_std]}: c2 (and a cap on the policy's std) from when the training success
        #: rate first reaches ``success``
        self.entropy_stage = dict(entropy_stage) if entropy_stage is not None else None
        self.stage_reached = False
        self.max_grad_norm = max_grad_norm
        self.normalize_advantage = normalize_advantage
        #: rewards ÷ the running std of the discounted return (robolearn.algorithms.return_scale), or None
        self.return_scale = ReturnScale(gamma).to(self.device) if normalize_rewards else None
        # the lr lives on the device (float64 on CPU: the same numbers as a Python float; the fused
        # CUDA kernel reads a float32 lr tensor), so an adaptive rule needs no host sync
        lr_dtype = torch.float32 if self.device.type == "cuda" else torch.float64
        self.lr_tensor = torch.tensor(lr, dtype=lr_dtype, device=self.device)
        self.parameters = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=self.lr_tensor, fused=True)

    @property
    def lr(self) -> float:
        """The current learning rate (reading it is a host sync on CUDA)."""
        return float(self.lr_tensor)

    def advance_stage(self, success_rate: float) -> bool:
        """Switch c2 to ``entropy_stage``'s, and cap the std at its ``max_std``, once ``success_rate``
        first reaches its ``success`` (True on that call only)."""
        stage = self.entropy_stage
        if stage is None or self.stage_reached or success_rate < stage["success"]:
            return False
        self.stage_reached = True
        self.entropy_coef = stage["entropy_coef"]
        self._limit_std()
        return True

    def _limit_std(self) -> None:
        """Keep the policy's std at most the stage's ``max_std`` once the stage is on (after every update)."""
        if self.stage_reached and self.entropy_stage.get("max_std") is not None:
            self.policy.limit_std_(self.entropy_stage["max_std"])

    def policy_loss(self, log_prob: torch.Tensor, batch: Minibatch,
                    advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L^π (to minimise) and the fraction of clipped samples."""
        raise NotImplementedError

    def value_loss(self, values: torch.Tensor, batch: Minibatch) -> torch.Tensor:
        return squared_error_value_loss(values, batch.returns)

    def on_minibatch_kl(self, kl: torch.Tensor) -> None:
        """Called with KL(π_old ‖ π_θ) of each minibatch (the mean over ranks) before its gradient
        step; runs on the device (no host sync)."""

    def _normalize_advantages(self, advantages: torch.Tensor) -> torch.Tensor:
        if self.distributed is None:
            return normalize_advantages(advantages)
        mean, std = self.distributed.mean_std(advantages)
        return (advantages - mean) / (std + 1e-8)

    def compute_returns(self, storage: RolloutStorage) -> None:
        """Fill the storage's ``advantages`` and ``returns`` with GAE(γ, λ) (of the scaled rewards
        with ``normalize_rewards``: the storage's rewards are divided in place)."""
        if storage.step != storage.num_steps:
            raise RuntimeError(f"rollout incomplete: {storage.step} of {storage.num_steps} steps added")
        if self.return_scale is not None:
            reduce = self.distributed.reduce_moments if self.distributed is not None else None
            self.return_scale.scale_(storage.rewards, storage.dones, reduce)
        advantages, returns = compute_gae(storage.rewards, storage.values, storage.dones, storage.next_values,
                                          self.gamma, self.lam)
        storage.advantages.copy_(advantages)
        storage.returns.copy_(returns)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        """Learn from a full rollout, then fold its observations into the policy's normalisers and
        clear it. Returns the means over minibatches of :data:`STAT_NAMES`, plus ``lr``."""
        self.policy.train()
        self.compute_returns(storage)
        stat_sums = torch.zeros(len(STAT_NAMES), device=self.device)
        batches = storage.minibatches(self.num_minibatches, self.num_epochs,
                                      whole_envs=self.policy.sequence_training)
        for batch in batches:
            log_prob, entropy, values, mean, std = self.policy.evaluate_actions(batch.obs, batch.actions,
                                                                                batch.state, batch.dones)

            # KL(π_old ‖ π_θ) on this minibatch, before its gradient step
            with torch.no_grad():
                kl = gaussian_kl(batch.action_mean, batch.action_std, mean, std).mean()

            advantages = batch.advantages
            if self.normalize_advantage:
                advantages = self._normalize_advantages(advantages)
            policy_loss, clip_fraction = self.policy_loss(log_prob, batch, advantages)
            value_loss = self.value_loss(values, batch)
            entropy = entropy.mean()
            # L = L^π + c1 · L^V − c2 · S[π_θ]
            loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy

            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.distributed is not None:  # DD-PPO: every rank steps with the mean gradient and KL
                (kl,) = self.distributed.all_reduce_gradients(self.parameters, kl)
            self.on_minibatch_kl(kl)  # the lr only acts at the step below
            nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
            self.optimizer.step()
            stat_sums += torch.stack([policy_loss, value_loss, entropy, kl, clip_fraction]).detach()
        self._limit_std()

        # the one host sync of the update: statistics (rank means), the lr and a NaN check
        stat_means = stat_sums / (self.num_epochs * self.num_minibatches)
        if self.distributed is not None:
            self.distributed.all_reduce_mean_(stat_means)
        params_finite = torch.stack([p.isfinite().all() for p in self.policy.parameters()]).all()
        *means, finite = torch.cat([stat_means, params_finite.float().unsqueeze(0)]).tolist()
        lr = self.lr  # the stream is drained by now: no wait
        stats = dict(zip(STAT_NAMES, means))
        if finite != 1.0 or not all(math.isfinite(value) for value in means):
            raise FloatingPointError(
                f"{type(self).__name__} update went non-finite ({', '.join(f'{k}={v:.4g}' for k, v in stats.items())}, "
                f"parameters finite: {finite == 1.0}); check the env's observations and rewards for "
                "NaN/inf, or lower the learning rate"
            )
        self.update_normalizers(storage.obs)
        storage.clear()
        return {**stats, "lr": lr}

    def update_normalizers(self, obs) -> None:
        """Fold observations into the policy's normalisers (merged over ranks when distributed)."""
        reduce = self.distributed.reduce_moments if self.distributed is not None else None
        self.policy.update_normalizers(obs, reduce)

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "lr": self.lr, "stage_reached": self.stage_reached}
        if self.return_scale is not None:
            state["return_scale"] = self.return_scale.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self._set_lr(state["lr"])
        self.stage_reached = state.get("stage_reached", False)  # (absent: a checkpoint from before stages)
        if self.stage_reached and self.entropy_stage is not None:  # c2 follows from the stage, as at the switch
            self.entropy_coef = self.entropy_stage["entropy_coef"]
        if self.return_scale is not None and "return_scale" in state:  # (absent: a run that did not scale)
            self.return_scale.load_state_dict(state["return_scale"])

    def _set_lr(self, lr: float) -> None:
        self.lr_tensor.fill_(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_tensor
