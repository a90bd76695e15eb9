"""Recurrent actor-critic (LSTM or GRU) with explicit hidden state.

Actor and critic each have their own memory: normalised observations (image terms encoded by the
reader's CNN, :mod:`robolearn.models.encoder`) -> optional MLP layers (``encoder_hidden``) ->
a multi-layer LSTM/GRU -> an MLP head (``actor_hidden`` / ``critic_hidden``). The actor reads the
``policy`` group, the critic the group named by ``critic_obs`` (``critic``: privileged state, an
asymmetric actor-critic), so the exported actor never needs what the robot cannot sense.

The state is one tensor ``[S, layers, N, rnn_hidden]``: the actor's ``h`` (and ``c`` for an LSTM),
then the critic's. Collection steps it explicitly (:meth:`act` returns the new state) and zeroes it
where an episode ended (:meth:`~robolearn.models.policy.Policy.reset_state`); training runs whole
rollout segments between episode ends through the cell in one call
(:class:`~robolearn.models.trajectories.Trajectories`: truncated BPTT over the rollout).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from robolearn.config import EncoderConfig
from robolearn.models.actor_critic import (build_activation, build_mlp, gaussian_log_prob_entropy, gaussian_sample,
                                           init_readers, update_obs_normalizers)
from robolearn.models.encoder import ObsShapes, encode_obs
from robolearn.models.normalizer import ReduceMoments
from robolearn.models.policy import ActionScores, Policy, PolicyStep
from robolearn.models.trajectories import Trajectories

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


class Memory(nn.Module):
    """``encoder`` (Linear-activation layers, possibly none) then an LSTM/GRU over ``[T, B, ...]``."""

    def __init__(self, cell: str, input_dim: int, encoder_hidden: Sequence[int], rnn_hidden: int,
                 rnn_layers: int, activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim in zip([input_dim, *encoder_hidden], encoder_hidden):
            linear = nn.Linear(in_dim, out_dim)
            nn.init.orthogonal_(linear.weight, gain=math.sqrt(2.0))
            nn.init.zeros_(linear.bias)
            layers += [linear, build_activation(activation, inplace=True)]
        self.encoder = nn.Sequential(*layers)
        self.rnn = CELLS[cell](encoder_hidden[-1] if encoder_hidden else input_dim, rnn_hidden, rnn_layers)
        self.num_states = 2 if cell == "lstm" else 1  # (h, c) or (h,)

    def forward(self, x: torch.Tensor, state: Sequence[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Encoded ``x`` ``[T, B, D]`` from ``state`` ((h, c) or (h,), each ``[layers, B, H]``) ->
        outputs ``[T, B, H]`` and the final state."""
        if self.num_states == 2:
            out, (h, c) = self.rnn(x, (state[0], state[1]))
            return out, (h, c)
        out, h = self.rnn(x, state[0])
        return out, (h,)


class RecurrentActorCritic(Policy):
    """π(a_t|o_≤t) = N(μ_θ(m_t), diag(σ²)) with memory m_t = RNN(o_t, m_{t−1}); V_φ on its own memory.
    Registered as :class:`LSTMActorCritic` (``policy.class: lstm``) and :class:`GRUActorCritic` (``gru``)."""

    sequence_training = True
    #: the recurrent cell, ``lstm`` | ``gru`` (set by the registered subclasses)
    cell: str

    def __init__(
        self,
        obs_dims: Mapping[str, int],
        action_dim: int,
        *,
        obs_shapes: ObsShapes | None,
        rnn_hidden: int,
        rnn_layers: int,
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
        cell = self.cell
        self.rnn_hidden, self.rnn_layers = rnn_hidden, rnn_layers
        widths = init_readers(self, obs_dims, obs_shapes, critic_obs, normalize_obs, encoder, activation)
        self.actor_memory = Memory(cell, widths["actor"], encoder_hidden, rnn_hidden, rnn_layers, activation)
        self.critic_memory = Memory(cell, widths["critic"], encoder_hidden, rnn_hidden, rnn_layers, activation)
        self.actor = build_mlp(rnn_hidden, actor_hidden, action_dim, activation, output_gain=0.01)
        self.critic = build_mlp(rnn_hidden, critic_hidden, 1, activation, output_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))
        self.num_states = self.actor_memory.num_states  # per memory: 2 (h, c) or 1 (h)
        #: ``(S, layers, hidden)``: the state of N envs is ``[S, layers, N, hidden]``, S = actor h[, c], critic h[, c]
        self.state_shape = (2 * self.num_states, rnn_layers, rnn_hidden)

    # ------------------------------------------------------------------ state
    def initial_state(self, num_envs: int) -> torch.Tensor:
        """The zero state ``[S, layers, num_envs, rnn_hidden]`` of episodes that just began."""
        num_states, layers, hidden = self.state_shape
        return self.log_std.new_zeros(num_states, layers, num_envs, hidden)

    def _split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[S, ...]`` -> the actor's and the critic's part."""
        return state[:self.num_states], state[self.num_states:]

    # ------------------------------------------------------------------ one step (collection)
    def act(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> PolicyStep:
        """Sample a ~ π(·|o, m) and advance both memories; ``obs`` ``[N, D]``."""
        actor_state, critic_state = self._split(state)
        actor_features, actor_state = self._step("actor", obs, actor_state)
        critic_features, critic_state = self._step("critic", obs, critic_state)
        mean = self.actor(actor_features)
        actions, log_prob = gaussian_sample(mean, self.log_std)
        values = self.critic(critic_features).squeeze(-1)
        new_state = torch.stack([*actor_state, *critic_state])
        return PolicyStep(actions, log_prob, values, mean, self.log_std.exp().expand_as(mean), new_state)

    def act_inference(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean action from the actor memory alone (as deployed); the critic's part of the
        state passes through."""
        actor_state, critic_state = self._split(state)
        mean, *actor_state = self.actor_step(obs["policy"], *actor_state)
        return mean, torch.cat([torch.stack(actor_state), critic_state])

    def value(self, obs: Mapping[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """V_φ(o, m), ``[N]`` (used to bootstrap; the state is not advanced)."""
        critic_features, _ = self._step("critic", obs, self._split(state)[1])
        return self.critic(critic_features).squeeze(-1)

    def actor_step(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The deployed policy, actor only: raw ``policy`` observations ``[B, D]`` and the actor state
        (``h``, and ``c`` for an LSTM, each ``[layers, B, rnn_hidden]``) -> ``(mean_action, h[, c])``."""
        features, state = self._step("actor", {"policy": obs}, (h,) if c is None else (h, c))
        return (self.actor(features), *state)

    def _step(self, reader: str, obs: Mapping[str, torch.Tensor],
              state: Sequence[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One time step of ``reader``'s (``actor`` | ``critic``) memory: features ``[N, H]`` and its new state."""
        out, state = self._memory(reader)(self._encode(reader, obs).unsqueeze(0), state)
        return out[0], state

    # ------------------------------------------------------------------ whole rollouts (training)
    def evaluate_actions(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, state: torch.Tensor,
                         dones: torch.Tensor) -> ActionScores:
        """Scores ``[T, n(, A)]`` of a rollout slice ``[T, n, ...]`` that started from ``state``
        ``[S, layers, n, H]``, with episodes ending where ``dones``."""
        trajectories = Trajectories(dones)
        actor_state, critic_state = self._split(state)
        actor_features = self._run_segments("actor", obs, actor_state, trajectories)
        critic_features = self._run_segments("critic", obs, critic_state, trajectories)
        mean = self.actor(actor_features)
        log_prob, entropy = gaussian_log_prob_entropy(actions, mean, self.log_std)
        values = self.critic(critic_features).squeeze(-1)
        return ActionScores(log_prob, entropy, values, mean, self.log_std.exp().expand_as(mean))

    def _run_segments(self, reader: str, obs: Mapping[str, torch.Tensor], state: torch.Tensor,
                      trajectories: Trajectories) -> torch.Tensor:
        """Every episode segment through the cell in one call: pad, run, read back the valid steps."""
        x = self._encode(reader, obs)  # before padding: the encoders see valid steps only
        out, _ = self._memory(reader)(trajectories.pad(x), tuple(trajectories.initial_state(state)))
        return trajectories.unpad(out)

    def _memory(self, reader: str) -> Memory:
        return self.actor_memory if reader == "actor" else self.critic_memory

    def _encode(self, reader: str, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``reader``'s group normalised (its images through the reader's CNN), then its memory's MLP layers."""
        group = self.readers[reader]
        encoder = self.obs_encoders[reader] if reader in self.obs_encoders else None
        return self._memory(reader).encoder(encode_obs(obs[group], self.obs_normalizers[group], encoder))

    def update_normalizers(self, obs: Mapping[str, torch.Tensor], reduce: ReduceMoments | None = None) -> None:
        """Fold a batch of observations (any leading shape) into each group's statistics."""
        update_obs_normalizers(self.obs_normalizers, obs, reduce, self.obs_terms)

    def deployable_actor(self) -> "DeployableRecurrent":
        return DeployableRecurrent(self).eval()


class LSTMActorCritic(RecurrentActorCritic):
    """``policy.class: lstm``."""

    cell = "lstm"


class GRUActorCritic(RecurrentActorCritic):
    """``policy.class: gru``."""

    cell = "gru"


class DeployableRecurrent(nn.Module):
    """``model.actor_step(obs, h[, c])``: the deterministic action of a :class:`RecurrentActorCritic`
    (normaliser, the actor's image encoder if any, actor memory and head; the critic is never
    called), sharing its weights."""

    def __init__(self, model: RecurrentActorCritic):
        super().__init__()
        self.obs_dim = model.obs_dims["policy"]
        self.action_dim = model.log_std.numel()
        self.recurrent = {"cell": model.cell, "layers": model.rnn_layers, "hidden_size": model.rnn_hidden}
        self.model = model

    def forward(self, obs: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.actor_step(obs, *state)
