"""The one interface every policy implements, and the registry behind ``policy.class``.

A policy is an ``nn.Module`` that acts in N envs at once and learns from stored rollouts. Rollout
collection, the PPO / A2C update, evaluation, export and the export parity check call only the
methods below, so a new policy (an image encoder, a transformer) plugs in by implementing them and
registering under a ``policy.class`` name (:func:`register_policy`); no caller changes.

**State.** Every policy carries a state tensor whose dimension ``-2`` indexes the envs: an LSTM's
``[S, layers, N, hidden]``, a transformer's key/value contexts ``[2, rows, N, width]``
(:mod:`robolearn.models.attention`), and for a feed-forward policy an empty ``[N, 0]``.
Collection starts from :meth:`Policy.initial_state`, passes the state returned by each
:meth:`Policy.act` to the next, and calls :meth:`Policy.reset_state` with the step's dones, so an
env whose episode ended starts the next one from the initial state.

**Methods.**

* ``initial_state(num_envs)`` -> the state of episodes that just began;
* ``reset_state(state, dones)`` -> the state with the envs where ``dones`` [N] is set re-initialised;
* ``act(obs, state)`` -> :class:`PolicyStep`: sampled actions, their log-probability, the value,
  the Gaussian mean and std, and the next state (collection; no gradients);
* ``act_inference(obs, state)`` -> ``(mean action, next state)``: what the robot runs;
* ``value(obs, state)`` -> V(s) ``[N]`` without advancing the state (bootstrapping);
* ``evaluate_actions(obs, actions, state, dones)`` -> :class:`ActionScores` of stored actions
  under the current parameters (the update). With ``sequence_training = False`` the inputs are a
  shuffled batch of single steps ``[B, ...]`` and ``state``/``dones`` are None; with
  ``sequence_training = True`` they are whole env rollouts ``[T, n, ...]``, the state each env
  had when the rollout started ``[..., n, :]`` and the dones ``[T, n]`` that cut its episodes;
* ``update_normalizers(obs, reduce)`` folds observations into the model's normalisers;
* ``limit_std_(max_std)`` clamps the action std in place (a default for a ``log_std`` parameter);
* ``deployable_actor()`` -> the module the exporter traces (see :mod:`robolearn.deploy.export`):
  ``obs_dim``, ``action_dim``, ``recurrent`` (None, ``{"cell", "layers", "hidden_size"}`` or a
  transformer's ``{"cell", "context", "layers", "heads", "width", "rows"}``) and
  ``forward(obs[, h[, c]]) -> actions[, h[, c]]`` (a transformer: ``forward(obs, ctx) -> actions,
  ctx``) on raw policy observations, normaliser inside.

Observations are dicts of groups (``{"policy": [N, Dp], "critic": [N, Dc]}``); a policy's actor
reads ``policy`` only, so its deployable actor needs nothing the robot cannot sense. Each group is
one flat vector; ``obs_shapes`` (group -> term -> shape, in layout order) tells a policy which
slices are images (``(H, W)``, row-major), which the bundled policies encode with a CNN
(``policy.encoder``, :mod:`robolearn.models.encoder`). The deployable actor still takes the flat
``obs`` vector, images inside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from robolearn.config import PolicyConfig, register_policy_config
from robolearn.models.normalizer import ReduceMoments


class PolicyStep(NamedTuple):
    """One step of collection for N envs."""

    actions: torch.Tensor  # [N, A] sampled a ~ π(·|o, state)
    log_prob: torch.Tensor  # [N]
    values: torch.Tensor  # [N]
    mean: torch.Tensor  # [N, A]
    std: torch.Tensor  # [N, A]
    state: torch.Tensor  # the state after this step


class ActionScores(NamedTuple):
    """Stored actions scored by the current parameters (leading dims ``[B]`` or ``[T, n]``)."""

    log_prob: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


class Policy(nn.Module):
    """Base of every policy: the interface of the module docstring. Subclasses implement the
    abstract methods; ``reset_state`` zeroes the finished envs' state, which suits every policy
    whose initial state is zero."""

    #: the update feeds whole env rollouts (``[T, n]`` with start state and dones), not single steps
    sequence_training: bool = False

    def initial_state(self, num_envs: int) -> torch.Tensor:
        raise NotImplementedError

    def reset_state(self, state: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """state ← state · (1 − done) per env (env dimension −2): a new episode starts from zero."""
        return state * (1.0 - dones.to(state.dtype)).unsqueeze(-1)

    def act(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> PolicyStep:
        raise NotImplementedError

    def act_inference(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def value(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate_actions(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, state: torch.Tensor | None,
                         dones: torch.Tensor | None) -> ActionScores:
        raise NotImplementedError

    def update_normalizers(self, obs: Mapping[str, torch.Tensor], reduce: ReduceMoments | None = None) -> None:
        raise NotImplementedError

    def deployable_actor(self) -> nn.Module:
        raise NotImplementedError

    def limit_std_(self, max_std: float) -> None:
        """Clamp the action std to at most ``max_std`` in place (``algorithm.entropy_stage.max_std``). The
        bundled policies keep a state-independent ``log_std`` parameter; a policy without one overrides this."""
        with torch.no_grad():
            self.log_std.clamp_(max=math.log(max_std))


#: ``policy.class`` -> the policy class (built as ``cls(obs_dims, action_dim, obs_shapes=..., **config keys)``)
POLICIES: dict[str, Callable[..., Policy]] = {}


def register_policy(name: str, policy_cls: Callable[..., Policy],
                    config_cls: type[PolicyConfig] | None = None) -> None:
    """Make ``policy_cls`` available as ``policy.class: name``; ``config_cls`` is the schema of its
    ``policy`` section (keys = constructor arguments), already known to the config for the
    bundled classes."""
    if name in POLICIES:
        raise ValueError(f"policy class {name!r} is already registered")
    if config_cls is not None:
        register_policy_config(name, config_cls)
    POLICIES[name] = policy_cls


def build_policy(config: PolicyConfig, obs_dims: Mapping[str, int], action_dim: int,
                 obs_shapes: Mapping[str, Mapping[str, Sequence[int]]] | None = None) -> Policy:
    """The policy a validated ``policy`` section describes, for these observation groups and actions.

    ``obs_shapes`` (``{group: {term: shape}}`` in layout order, as the env's
    ``{g: layout.shapes for g, layout in env.obs_layout.items()}``) marks the image terms; None (a
    checkpoint from before shapes were recorded) reads every group as one vector.
    """
    name = config.class_
    if name not in POLICIES:
        raise ValueError(f"policy.class: no policy registered as {name!r} (registered: {', '.join(sorted(POLICIES))})")
    return POLICIES[name](obs_dims, action_dim, obs_shapes=obs_shapes, **config.constructor_kwargs())
