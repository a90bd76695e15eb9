"""Transformer actor-critic (``policy.class: transformer``): causal attention over the episode's last
K steps, with the key/value context carried explicitly (:mod:`robolearn.models.attention`).

Actor and critic each have their own memory, as in :mod:`robolearn.models.recurrent`: normalised
observations (image terms through the reader's CNN, :mod:`robolearn.models.encoder`) -> token
encoder -> causal transformer -> an MLP head (``actor_hidden`` / ``critic_hidden``). The actor
reads the ``policy`` group, the critic the group named by ``critic_obs`` (an asymmetric critic on
privileged state), so the exported actor needs nothing the robot cannot sense.

The state is ``[2, R, N, W]``: the actor's context, then the critic's (layout in
:mod:`robolearn.models.attention`). Collection appends one token per step (:meth:`act`); the zero
state of a new episode (``reset_state``) has no valid entry; the update scores whole rollouts from
the context stored at their start (:meth:`evaluate_actions`, ``sequence_training``). The deployed
actor is ``actor_step(obs, ctx) -> (action_mean, ctx)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from robolearn.config import EncoderConfig
from robolearn.models.actor_critic import (build_mlp, gaussian_log_prob_entropy, gaussian_sample, init_readers,
                                           update_obs_normalizers)
from robolearn.models.attention import TransformerMemory
from robolearn.models.encoder import ObsShapes, encode_obs
from robolearn.models.normalizer import ReduceMoments
from robolearn.models.policy import ActionScores, Policy, PolicyStep


class TransformerActorCritic(Policy):
    """π(a_t|o_{t−K+1..t}) = N(μ_θ(z_t), diag(σ²)) with z_t the causal transformer's output at step
    t; V_φ on its own transformer over the critic group."""

    sequence_training = True

    def __init__(
        self,
        obs_dims: Mapping[str, int],
        action_dim: int,
        *,
        obs_shapes: ObsShapes | None,
        context: int,
        layers: int,
        heads: int,
        width: int,
        ffn_hidden: int,
        encoder_hidden: Sequence[int],
        actor_hidden: Sequence[int],
        critic_hidden: Sequence[int],
        activation: str,
        init_std: float,
        normalize_obs: bool,
        critic_obs: str,
        encoder: EncoderConfig | None,
    ) -> None:
        super().__init__()
        widths = init_readers(self, obs_dims, obs_shapes, critic_obs, normalize_obs, encoder, activation)
        sizes = dict(encoder_hidden=encoder_hidden, context=context, layers=layers, heads=heads, width=width,
                     ffn_hidden=ffn_hidden, activation=activation)
        self.actor_memory = TransformerMemory(widths["actor"], **sizes)
        self.critic_memory = TransformerMemory(widths["critic"], **sizes)
        self.actor = build_mlp(width, actor_hidden, action_dim, activation, output_gain=0.01)
        self.critic = build_mlp(width, critic_hidden, 1, activation, output_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))
        #: ``(2, R, W)``: the state of N envs is ``[2, R, N, W]``, the actor's context then the critic's
        self.state_shape = (2, self.actor_memory.rows, width)

    # ------------------------------------------------------------------ state
    def initial_state(self, num_envs: int) -> torch.Tensor:
        """The zero state ``[2, R, num_envs, W]``: no step of the episode yet."""
        readers, rows, width = self.state_shape
        return self.log_std.new_zeros(readers, rows, num_envs, width)

    # ------------------------------------------------------------------ one step (collection)
    def act(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> PolicyStep:
        """Sample a ~ π(·|context, o) and append this step to both contexts; ``obs`` ``[N, D]``."""
        new_state = torch.empty_like(state)
        actor_out, _ = self.actor_memory.step(self._features("actor", obs), state[0], out=new_state[0])
        critic_out, _ = self.critic_memory.step(self._features("critic", obs), state[1], out=new_state[1])
        mean = self.actor(actor_out)
        actions, log_prob = gaussian_sample(mean, self.log_std)
        values = self.critic(critic_out).squeeze(-1)
        return PolicyStep(actions, log_prob, values, mean, self.log_std.exp().expand_as(mean), new_state)

    def act_inference(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean action from the actor's context alone (as deployed); the critic's context passes through."""
        mean, actor_context = self.actor_step(obs["policy"], state[0])
        return mean, torch.stack([actor_context, state[1]])

    def value(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """V_φ(context, o), ``[N]`` (bootstrapping; the state is not advanced)."""
        critic_out, _ = self.critic_memory.step(self._features("critic", obs), state[1], advance=False)
        return self.critic(critic_out).squeeze(-1)

    def actor_step(self, obs: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deployed policy: raw ``policy`` observations ``[B, D]`` and the actor's context
        ``[R, B, W]`` -> ``(mean_action, next context)``."""
        out, context = self.actor_memory.step(self._features("actor", {"policy": obs}), context)
        return self.actor(out), context

    # ------------------------------------------------------------------ whole rollouts (training)
    def evaluate_actions(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, state: torch.Tensor,
                         dones: torch.Tensor) -> ActionScores:
        """Scores ``[T, n(, A)]`` of a rollout slice ``[T, n, ...]`` that started from ``state``
        ``[2, R, n, W]``, with episodes ending where ``dones``."""
        actor_out = self.actor_memory.sequence(self._features("actor", obs), state[0], dones)
        critic_out = self.critic_memory.sequence(self._features("critic", obs), state[1], dones)
        mean = self.actor(actor_out)
        log_prob, entropy = gaussian_log_prob_entropy(actions, mean, self.log_std)
        values = self.critic(critic_out).squeeze(-1)
        return ActionScores(log_prob, entropy, values, mean, self.log_std.exp().expand_as(mean))

    def _features(self, reader: str, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``reader``'s group normalised (its images through the reader's CNN)."""
        group = self.readers[reader]
        encoder = self.obs_encoders[reader] if reader in self.obs_encoders else None
        return encode_obs(obs[group], self.obs_normalizers[group], encoder)

    def update_normalizers(self, obs: Mapping[str, torch.Tensor], reduce: ReduceMoments | None = None) -> None:
        """Fold a batch of observations (any leading shape) into each group's statistics."""
        update_obs_normalizers(self.obs_normalizers, obs, reduce, self.obs_terms)

    def deployable_actor(self) -> "DeployableTransformer":
        return DeployableTransformer(self).eval()


class DeployableTransformer(nn.Module):
    """``model.actor_step(obs, ctx)``: the deterministic action of a :class:`TransformerActorCritic`
    (normaliser, the actor's image encoder if any, actor transformer and head; the critic is never
    called), sharing its weights. ``recurrent`` describes the context for the contract."""

    def __init__(self, model: TransformerActorCritic):
        super().__init__()
        memory = model.actor_memory
        self.obs_dim = model.obs_dims["policy"]
        self.action_dim = model.log_std.numel()
        self.recurrent = {"cell": "transformer", "context": memory.context, "layers": memory.layers,
                          "heads": memory.heads, "width": memory.width, "rows": memory.rows}
        self.model = model

    def forward(self, obs: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.actor_step(obs, context)
