"""The policy that eval and export use: an exponential moving average of the trained policy's
weights (Polyak averaging), ``trainer.policy_average`` > 0.

PPO's iterate moves with each update's sampling noise, so the policy at the budget's last iteration
is one noisy point of a policy still being pushed around by penalty weights and the curriculum. The
average over the last ~1 / (1 - decay) iterations sits in the middle of where the iterates wander
(SWA, Izmailov et al. 2018; for RL, Nikishin et al. 2018). The average never acts in training: the
rollouts and updates use the live policy, so a run with and without it trains the same.

Every floating-point tensor of the policy's ``state_dict`` is averaged, the observation
normalisers' statistics included (the averaged layers expect the averaged normalisation; late in a
run both move slowly). Early updates average less, ``min(decay, (1 + n) / (10 + n))`` after ``n``
updates (as TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so a short run's average
is not its random initial policy.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class PolicyAverage:
    """Exponential moving average of ``policy``'s floating-point parameters and buffers."""

    def __init__(self, policy: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"policy average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.tensors = {key: value.clone() for key, value in policy.state_dict().items()
                        if value.is_floating_point()}

    def rate(self) -> float:
        """The weight of the policy in the next update: 1 - the decay in effect."""
        return 1.0 - min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self, policy: nn.Module) -> None:
        """Move the average toward ``policy`` (once per training iteration)."""
        rate, current = self.rate(), policy.state_dict()
        for key, average in self.tensors.items():
            average.lerp_(current[key], rate)  # state_dict's tensors are detached
        self.updates += 1

    def state_dict(self, policy: nn.Module) -> dict[str, Any]:
        """What a checkpoint keeps (``policy_average``): the update count and ``policy``'s ``state_dict``
        with the averaged tensors in place of its own, loadable into the same policy class."""
        return {"updates": self.updates,
                "model": {**policy.state_dict(), **{key: value.clone() for key, value in self.tensors.items()}}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in self.tensors.items():
            value.copy_(state["model"][key])
        self.updates = int(state["updates"])

    @classmethod
    def for_run(cls, policy: nn.Module, decay: float, resume: dict[str, Any] | None) -> "PolicyAverage | None":
        """A run's average (None when ``decay`` is 0), continued from a resumed checkpoint's."""
        if not decay:
            return None
        average = cls(policy, decay)
        if resume is not None and resume.get("policy_average") is not None:
            average.load_state_dict(resume["policy_average"])
        return average
