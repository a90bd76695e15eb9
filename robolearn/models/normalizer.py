"""Running observation normalisation that lives inside the model (saved and exported with it)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: (count, mean, population variance, min, max) of this process's batch -> the same of all processes' batches
ReduceMoments = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


class EmpiricalNormalizer(nn.Module):
    """``clip((x - mean) / sqrt(var + eps))`` with the running mean and variance of every ``x`` seen.

    The statistics are buffers (``mean``, ``var``, and the smallest and largest value seen, ``min``
    and ``max``: float32; ``count``: float64), so they travel in ``state_dict`` and the forward pass
    is plain tensor ops for ONNX export. ``update`` only learns in training mode, and stops once
    ``count`` reaches ``until`` (if given). ``min`` / ``max`` are what the exported contract gives
    the robot as the training range of each observation; NaN where a checkpoint predates them.
    """

    def __init__(self, dim: int, eps: float = 1e-8, clip: float = 5.0, until: int | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.clip = clip
        self.until = until
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("min", torch.full((dim,), float("inf")))
        self.register_buffer("max", torch.full((dim,), float("-inf")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("min", "max"):  # checkpoints from before the range was recorded: unknown
            state_dict.setdefault(prefix + name, torch.full_like(self.mean, float("nan")))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: torch.Tensor, reduce: ReduceMoments | None = None) -> None:
        """Fold a batch ``[..., dim]`` into the statistics (no-op in eval mode or past ``until``).

        ``reduce`` (distributed training: :meth:`robolearn.distributed.Distributed.reduce_moments`)
        turns this rank's batch moments into those of every rank's batches concatenated, so all
        ranks fold in the same statistics; it is called on every rank, even with an empty batch.
        """
        x = x.reshape(-1, x.shape[-1])
        if not self.training or (x.shape[0] == 0 and reduce is None):
            return
        if self.until is not None and self.count.item() >= self.until:
            return
        if x.shape[0] == 0:
            mean, var = x.new_zeros(x.shape[-1]), x.new_zeros(x.shape[-1])
            lo, hi = torch.full_like(mean, float("inf")), torch.full_like(mean, float("-inf"))
        else:
            var, mean = torch.var_mean(x, dim=0, correction=0)
            lo, hi = x.amin(dim=0), x.amax(dim=0)
        count: int | torch.Tensor = x.shape[0]
        if reduce is not None:
            count, mean, var, lo, hi = reduce(x.shape[0], mean, var, lo, hi)
        self.merge(count, mean, var)
        torch.fmin(self.min, lo.to(self.min.dtype), out=self.min)  # fmin: a NaN (unknown) gives way
        torch.fmax(self.max, hi.to(self.max.dtype), out=self.max)

    @torch.no_grad()
    def merge(self, count: int | float | torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Merge the moments of another sample (count, mean, population variance): Chan et al.'s
        parallel rule, computed in float64. Distributed training merges all-reduced moments here."""
        count_a, mean_a, var_a = self.count, self.mean.double(), self.var.double()
        count_b = torch.as_tensor(count, dtype=torch.float64, device=self.count.device)
        mean_b, var_b = mean.double(), var.double()
        total = count_a + count_b
        delta = mean_b - mean_a
        mean_ab = mean_a + delta * (count_b / total)
        var_ab = (var_a * count_a + var_b * count_b + delta.square() * (count_a * count_b / total)) / total
        self.mean.copy_(mean_ab)
        self.var.copy_(var_ab)
        self.count.copy_(total)
