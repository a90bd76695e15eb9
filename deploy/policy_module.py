"""The module the exporter traces: a policy's deterministic action path as one ``nn.Module``.

Any module with this interface can be exported (:func:`robolearn.deploy.export.export_policy`):

* ``obs_dim``, ``action_dim``: ints;
* ``recurrent``: ``None``, or ``{"cell": "lstm" | "gru", "layers": L, "hidden_size": H}``;
* ``forward(obs)`` -> ``actions`` (feed-forward), ``forward(obs, h)`` -> ``(actions, h)`` (GRU),
  ``forward(obs, h, c)`` -> ``(actions, h, c)`` (LSTM), with ``obs`` ``[B, obs_dim]`` raw (not yet
  normalised) observations, ``actions`` ``[B, action_dim]`` the mean action in [-1, 1] units
  (before clipping), and each state ``[L, B, H]``.

The observation normaliser belongs inside ``forward``, so it is part of every exported graph.
:func:`policy_module` adapts robolearn's trained models: :class:`MLPPolicy` for an
:class:`ActorCritic`, :class:`RecurrentPolicy` for a :class:`RecurrentActorCritic`.
"""

from __future__ import annotations

import torch
from torch import nn

from robolearn.models import ActorCritic, RecurrentActorCritic


class MLPPolicy(nn.Module):
    """``actor(normalizer(obs))``: the deterministic action of a feed-forward :class:`ActorCritic`."""

    recurrent = None

    def __init__(self, normalizer: nn.Module, actor: nn.Sequential):
        super().__init__()
        linears = [m for m in actor if isinstance(m, nn.Linear)]
        self.obs_dim = linears[0].in_features
        self.action_dim = linears[-1].out_features
        self.normalizer = normalizer
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))


class RecurrentPolicy(nn.Module):
    """``model.actor_step(obs, h[, c])``: the deterministic action of a :class:`RecurrentActorCritic`
    (normaliser, actor memory and head; the critic is never called)."""

    def __init__(self, model: RecurrentActorCritic):
        super().__init__()
        memory = model.actor_memory
        encoder = [m for m in memory.encoder if isinstance(m, nn.Linear)]
        self.obs_dim = encoder[0].in_features if encoder else memory.rnn.input_size
        self.action_dim = model.log_std.numel()
        self.recurrent = {"cell": model.cell, "layers": model.rnn_layers, "hidden_size": model.rnn_hidden}
        self.model = model

    def forward(self, obs: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.actor_step(obs, *state)


def policy_module(model: nn.Module) -> MLPPolicy | RecurrentPolicy:
    """The exportable deterministic policy of a trained actor-critic (sharing its weights)."""
    if isinstance(model, ActorCritic):
        return MLPPolicy(model.obs_normalizers["policy"], model.actor).eval()
    if isinstance(model, RecurrentActorCritic):
        return RecurrentPolicy(model).eval()
    raise TypeError(f"no export path for {type(model).__name__}: export_policy takes any module "
                    "with the interface of robolearn.deploy.policy_module")
