"""Cut a time-major rollout ``[T, N]`` into episode segments and pad them into ``[L, K]`` columns.

A recurrent network must not carry memory across an episode end. Training therefore runs each
segment of an env's rollout between two episode ends as its own sequence: segment k is column k of
a padded ``[L, K, ...]`` tensor (L: the longest segment, K: the number of segments), starting from
a zero state, except each env's first segment, which continues the state the env had when the
rollout started. ``unpad`` reads the valid positions back into ``[T, N, ...]``, so padded
positions are never read: they cannot reach a loss.
"""

from __future__ import annotations

import torch


class Trajectories:
    """The segment layout of a rollout, from its ``dones`` ``[T, N]`` (step t ended an episode)."""

    def __init__(self, dones: torch.Tensor) -> None:
        num_steps, num_envs = dones.shape
        starts = torch.ones(num_envs, num_steps, dtype=torch.bool, device=dones.device)  # env-major
        starts[:, 1:] = dones[:-1].T.bool()  # a step starts a segment if the previous one ended an episode
        segment = starts.flatten().cumsum(0).view(num_envs, num_steps) - 1
        steps = torch.arange(num_steps, device=dones.device).expand(num_envs, num_steps)
        segment_start = (steps * starts).cummax(dim=1).values
        position = steps - segment_start
        self.num_segments, self.max_length = (int(v) for v in torch.stack([segment[-1, -1] + 1, position.max() + 1]).tolist())
        self.segment = segment.T  # [T, N]: the column each step lands in
        self.position = position.T  # [T, N]: its row (time since the segment started)
        self.first_segment = segment[:, 0]  # [N]: each env's first segment, continuing the rollout's start state

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, N, ...]`` -> ``[L, K, ...]``, zeros after each segment's end."""
        padded = x.new_zeros(self.max_length, self.num_segments, *x.shape[2:])
        padded[self.position, self.segment] = x
        return padded

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """``[L, K, ...]`` -> ``[T, N, ...]``: the valid positions only."""
        return padded[self.position, self.segment]

    def initial_state(self, state: torch.Tensor) -> torch.Tensor:
        """Per-env start state ``[..., N, H]`` -> per-segment ``[..., K, H]`` (zero for segments that
        begin with an episode)."""
        segment_state = state.new_zeros(*state.shape[:-2], self.num_segments, state.shape[-1])
        segment_state[..., self.first_segment, :] = state
        return segment_state
