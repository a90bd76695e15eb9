"""Policies for the tests: built from config sections, and exportable ones with a non-trivial normaliser.

``make_policy``: any registered policy class from ``policy`` keys (defaults from the config schema).
``mlp_policy``: a freshly initialised :class:`MLPActorCritic`'s deployable actor.
``RecurrentActor``: a small self-contained LSTM/GRU actor written only against the exporter's
interface (:mod:`robolearn.deploy.export`), independent of robolearn's own
:class:`RecurrentActorCritic`, so the generic recurrent path is tested on its own.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from robolearn.config import AlgorithmConfig, policy_config_class
from robolearn.models import DeployableMLP, EmpiricalNormalizer, Policy, build_policy

NAV_OBS_DIM = 23
NAV_ACTION_DIM = 2


def set_statistics(normalizer: EmpiricalNormalizer, seed: int) -> None:
    """Give a normaliser a mean and variance far from (0, 1), as after training."""
    generator = torch.Generator().manual_seed(seed)
    dim = normalizer.mean.numel()
    normalizer.mean.copy_(torch.randn(dim, generator=generator))
    normalizer.var.copy_(torch.rand(dim, generator=generator) * 3.0 + 0.1)


def make_policy(obs_dims: Mapping[str, int], action_dim: int, policy_class: str = "mlp",
                obs_shapes: Mapping[str, Mapping[str, Sequence[int]]] | None = None, **keys: Any) -> Policy:
    """The policy ``policy: {class: policy_class, **keys}`` describes (other keys at their defaults),
    for observation groups of these widths (and term shapes: image terms)."""
    config = policy_config_class(policy_class).model_validate({"class": policy_class, **keys})
    return build_policy(config, obs_dims, action_dim, obs_shapes)


def algorithm_kwargs(name: str = "ppo", **keys: Any) -> dict[str, Any]:
    """The algorithm's constructor arguments for ``algorithm: {name: name, **keys}`` (defaults from config)."""
    return AlgorithmConfig.model_validate({"name": name, **keys}).algorithm_kwargs()


def mlp_policy(hidden: Sequence[int] = (64, 64), seed: int = 0) -> DeployableMLP:
    """A fresh actor-critic's deployable actor; the output layer is re-drawn so actions are not all ~0."""
    torch.manual_seed(seed)
    model = make_policy({"policy": NAV_OBS_DIM}, NAV_ACTION_DIM, actor_hidden=list(hidden))
    set_statistics(model.obs_normalizers["policy"], seed)
    nn.init.normal_(model.actor[-1].weight, std=0.3)
    return model.deployable_actor()


class RecurrentActor(nn.Module):
    """normaliser -> LSTM/GRU -> linear head; ``forward(obs, h[, c]) -> (actions, h[, c])``,
    state ``[layers, batch, hidden]``."""

    def __init__(self, cell: str = "lstm", hidden_size: int = 32, layers: int = 1, seed: int = 0,
                 obs_dim: int = NAV_OBS_DIM, action_dim: int = NAV_ACTION_DIM):
        super().__init__()
        torch.manual_seed(seed)
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.recurrent = {"cell": cell, "layers": layers, "hidden_size": hidden_size}
        self.normalizer = EmpiricalNormalizer(obs_dim)
        set_statistics(self.normalizer, seed)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(obs_dim, hidden_size, num_layers=layers)
        self.head = nn.Linear(hidden_size, action_dim)

    def forward(self, obs: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.normalizer(obs).unsqueeze(0)  # one time step
        if self.recurrent["cell"] == "lstm":
            y, (h, c) = self.rnn(x, (state[0], state[1]))
            return self.head(y.squeeze(0)), h, c
        y, h = self.rnn(x, state[0])
        return self.head(y.squeeze(0)), h
