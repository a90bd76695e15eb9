"""A causal transformer over the last K steps of an episode, with its key/value context carried
explicitly (PoliFormer-style memory, sliding-window attention).

Each control step is one token: a reader's features (normalised observations, image features) ->
``encoder_hidden`` MLP layers -> a linear map to ``width``. ``layers`` pre-LayerNorm blocks follow,
each ``x ← x + Attn(LN(x)); x ← x + FFN(LN(x))``, then a final LayerNorm. In block ℓ the token of
step t attends to the keys and values block ℓ computed for the steps s of the same episode with
age a = t − s < K (K = ``context``, the current step included)::

    e_ts = q_t · k_s / √d_h + b_a        softmax over s          y_t = Σ_s α_ts v_s

per head (d_h = width / heads), where b_a is a learned bias per head and age (a relative position
bias, as in T5), so a window that shifts by one step means the same thing at every step. Block
ℓ's keys and values of step s were computed once, at step s, from what block ℓ − 1 gave that
step: acting costs one new token per step, and the effective horizon of L blocks is L·(K − 1) + 1
steps.

**The context** (the state of one reader) is ``[R, N, W]`` with R = 2·L·(K − 1) + 1 rows of
``width`` values per env: block 0's keys of the K − 1 previous steps (oldest first), block 0's
values of those steps, block 1's keys, block 1's values, ..., then a row whose column 0 holds n:
how many of those steps belong to the env's current episode (the latest n are valid). Each step
drops the oldest step from every block's keys and values, appends the new one and counts
n ← min(n + 1, K − 1). An all-zero context (an episode start,
``Policy.reset_state``) has n = 0: attention covers the current episode's steps only. Rows of
invalid steps are never read (their weight is exactly 0); they must be finite.

**Training** (:meth:`TransformerMemory.sequence`) runs a stored rollout ``[T, n]`` in one call from
the context each env had when it started: the queries of the T steps attend over the K − 1 + T
keys [carried context | rollout], masked to the window, the valid slots and the step's episode
(the episode index of step t counts the dones before it; the carried slots belong to the first
episode). It gives what step-by-step acting gave, up to float rounding, and no attention crosses an
episode boundary. As with the LSTM's stored start state, the carried keys and values are the ones
computed at collection (constants in the update).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _linear(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    """Orthogonal weights with ``gain``, zero bias (as every robolearn MLP)."""
    linear = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(linear.weight, gain=gain)
    nn.init.zeros_(linear.bias)
    return linear


class AttentionBlock(nn.Module):
    """One pre-LayerNorm transformer block with causal multi-head attention over a K-step window."""

    def __init__(self, context: int, width: int, heads: int, ffn_hidden: int, activation: str) -> None:
        from robolearn.models.actor_critic import build_activation  # at call time: actor_critic imports encoder

        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} does not split into {heads} heads")
        self.context, self.width, self.heads = context, width, heads
        self.head_dim = width // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.norm1 = nn.LayerNorm(width)
        self.qkv = _linear(width, 3 * width, gain=1.0)
        self.out = _linear(width, width, gain=1.0)
        #: b_a per head, a = 0 .. K − 1: the score bias of a key a steps older than the query (zero: no preference)
        self.age_bias = nn.Parameter(torch.zeros(heads, context))
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(_linear(width, ffn_hidden, gain=math.sqrt(2.0)), build_activation(activation),
                                 _linear(ffn_hidden, width, gain=1.0))
        #: ``[W, H]``: 1 where feature w belongs to head h (sums a product's features per head)
        self.register_buffer("head_sum", torch.eye(heads).repeat_interleave(self.head_dim, dim=0), persistent=False)
        #: ``head_sum / √d_h``: the per-head sum of q * k that is the scaled score (no separate scaling)
        self.register_buffer("score_sum", self.head_sum * self.scale, persistent=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., W]`` -> ``[..., H, d_h]`` (a view)."""
        return x.unflatten(-1, (self.heads, self.head_dim))

    def step(self, x: torch.Tensor, past_keys: Sequence[torch.Tensor], past_values: Sequence[torch.Tensor],
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of B envs: tokens ``x`` ``[B, W]``, the K − 1 previous keys and values (each
        given as row blocks ``[*, B, W]`` that concatenate to ``[K − 1, B, W]``, oldest first) and
        ``mask`` ``[K, B, 1]`` (0 for a window slot to read, −inf for one not to, the current step
        last) -> the block's output ``[B, W]`` and this step's key and value ``[1, B, W]``.

        Elementwise products and sums over a 0/1 head matrix instead of per-head matrix products:
        at batch 1 the exported graph is a few dozen small dense operators, no reshapes or einsums
        (deployment latency); the training path (:meth:`sequence`) uses batched matrix products."""
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        k, v = k.unsqueeze(0), v.unsqueeze(0)
        keys = torch.cat([*past_keys, k])  # [K, B, W]
        values = torch.cat([*past_values, v])
        scores = (keys * q) @ self.score_sum  # [K, B, H]: q·k / √d_h per head
        # slot j of the window is K − 1 − j steps old: the biases in slot order are b reversed
        weights = torch.softmax(scores + self.age_bias.flip(-1).T.unsqueeze(1) + mask, dim=0)
        attended = ((weights @ self.head_sum.T) * values).sum(0)  # [B, W]: Σ_s α_ts v_s per head
        x = x + self.out(attended)
        return x + self.ffn(self.norm2(x)), k, v

    def sequence(self, x: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor, mask: torch.Tensor,
                 age: torch.Tensor) -> torch.Tensor:
        """T steps of n envs at once: tokens ``x`` ``[T, n, W]``, the carried keys and values
        ``[K − 1, n, W]``, ``mask`` ``[n, 1, T, S]`` (S = K − 1 + T: which key each query may read)
        and ``age`` ``[T, S]`` (each query-key pair's age, clamped to [0, K − 1]) -> ``[T, n, W]``."""
        steps, envs = x.shape[:2]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = self._heads(q * self.scale).permute(1, 2, 0, 3)  # [n, H, T, d]
        keys = self._heads(torch.cat([past_keys, k])).permute(1, 2, 3, 0)  # [n, H, d, S]
        values = self._heads(torch.cat([past_values, v])).permute(1, 2, 0, 3)  # [n, H, S, d]
        position = self.age_bias[:, age]  # [H, T, S]: b_(t − s)
        scores = (torch.matmul(q, keys) + position).masked_fill(~mask, float("-inf"))  # [n, H, T, S]
        attended = torch.matmul(torch.softmax(scores, dim=-1), values)  # [n, H, T, d]
        x = x + self.out(attended.permute(2, 0, 1, 3).reshape(steps, envs, self.width))
        return x + self.ffn(self.norm2(x))


class TransformerMemory(nn.Module):
    """Token encoder, ``layers`` :class:`AttentionBlock` s and a final LayerNorm; the context layout
    of the module docstring."""

    def __init__(self, input_dim: int, encoder_hidden: Sequence[int], context: int, layers: int, heads: int,
                 width: int, ffn_hidden: int, activation: str) -> None:
        from robolearn.models.actor_critic import build_activation

        super().__init__()
        if context < 2:
            raise ValueError(f"context {context}: at least 2 steps (the current one and one before it)")
        encoder: list[nn.Module] = []
        for in_dim, out_dim in zip([input_dim, *encoder_hidden], encoder_hidden):
            encoder += [_linear(in_dim, out_dim, gain=math.sqrt(2.0)), build_activation(activation, inplace=True)]
        self.encoder = nn.Sequential(*encoder)
        self.embed = _linear(encoder_hidden[-1] if encoder_hidden else input_dim, width, gain=1.0)
        self.blocks = nn.ModuleList(AttentionBlock(context, width, heads, ffn_hidden, activation)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.context, self.layers, self.heads, self.width = context, layers, heads, width
        self.history = context - 1
        #: the context of N envs is ``[rows, N, width]``
        self.rows = 2 * layers * self.history + 1
        # the counter row's step: n ← min(n + 1, K − 1) in column 0, the other columns unchanged
        self.register_buffer("count_step", F.one_hot(torch.tensor(0), width).float(), persistent=False)
        # window slot j (0 .. K − 2: a previous step) is valid when j + n >= K − 1; the current step always
        self.register_buffer("window_slots", torch.cat([torch.arange(float(self.history)), torch.tensor([math.inf])]),
                             persistent=False)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """A reader's features ``[..., D]`` -> tokens ``[..., width]``."""
        return self.embed(self.encoder(features))

    def _unpack(self, context: torch.Tensor) -> tuple[list[tuple[list[Tensor], list[Tensor]]], Tensor]:
        """Each block's keys and values in a context ``[R, B, W]``, each as its oldest row and the
        K − 2 rows after it (the rows the next context keeps), and the counter row ``[1, B, W]``:
        views, one split (one operator in the exported graph; no slicing of concatenated windows)."""
        rows = [1, self.history - 1] if self.history > 1 else [1]
        *parts, count = context.split(rows * (2 * self.layers) + [1])
        n = len(rows)
        blocks = [parts[i:i + n] for i in range(0, len(parts), n)]
        return [(blocks[2 * layer], blocks[2 * layer + 1]) for layer in range(self.layers)], count

    def _valid(self, count: torch.Tensor) -> torch.Tensor:
        """``[K, B, 1]``: which window slots (the previous steps, oldest first, then the current
        one) belong to the current episode, from the counter row ``[1, B, W]``."""
        return self.window_slots[:, None, None] + count[..., :1] >= self.history

    def step(self, features: torch.Tensor, context: torch.Tensor, out: torch.Tensor | None = None,
             advance: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step: features ``[B, D]`` and the context ``[R, B, W]`` -> outputs ``[B, width]`` and
        the next context (written into ``out`` when given, no concatenation; None with
        ``advance=False``, for a value that does not advance the state)."""
        x = self.tokens(features)
        pasts, count = self._unpack(context)
        mask = torch.where(self._valid(count), 0.0, float("-inf"))  # [K, B, 1], added to the scores
        windows = []
        for block, (past_keys, past_values) in zip(self.blocks, pasts):
            x, k, v = block.step(x, past_keys, past_values, mask)
            windows += [*past_keys[1:], k, *past_values[1:], v]  # drop the oldest step, keep this one
        if not advance:
            return self.norm(x), None
        rows = [*windows, torch.clamp(count + self.count_step, max=float(self.history))]
        if out is None:
            return self.norm(x), torch.cat(rows)
        start = 0
        for part in rows:
            out[start:start + part.shape[0]].copy_(part)
            start += part.shape[0]
        return self.norm(x), out

    def sequence(self, features: torch.Tensor, context: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """A rollout of n envs in one call: features ``[T, n, D]``, the context each env had when
        it started ``[R, n, W]`` and ``dones`` ``[T, n]`` (step t ended an episode) -> outputs
        ``[T, n, width]``, equal to acting step by step with the context reset after each done."""
        steps, history = dones.shape[0], self.history
        ends = dones.bool().long()
        episode = ends.cumsum(0) - ends  # [T, n]: episode ends before step t
        key_episode = torch.cat([torch.zeros_like(episode[:1]).expand(history, -1), episode])  # [S, n]
        pasts, count = self._unpack(context)
        key_valid = torch.cat([self._valid(count)[:-1, :, 0], torch.ones_like(episode, dtype=torch.bool)])  # [S, n]
        position = torch.arange(history + steps, device=dones.device)
        age = position[history:, None] - position[None, :]  # [T, S]: query t sits at position K − 1 + t
        window = (age >= 0) & (age < self.context)
        mask = window & (episode.T.unsqueeze(-1) == key_episode.T.unsqueeze(1)) & key_valid.T.unsqueeze(1)
        mask = mask.unsqueeze(1)  # [n, 1, T, S]
        age = age.clamp(0, self.context - 1)
        x = self.tokens(features)
        for block, (past_keys, past_values) in zip(self.blocks, pasts):
            x = block.sequence(x, torch.cat(past_keys), torch.cat(past_values), mask, age)
        return self.norm(x)
