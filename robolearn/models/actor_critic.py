"""Actor-critic MLPs with a diagonal Gaussian policy (state-independent log-std).

Observations are dicts of groups, ``{"policy": [N, Dp], "critic": [N, Dc]}``: the actor reads
``policy``, the critic the group named by ``critic_obs``. Each group used is normalised by its own
:class:`EmpiricalNormalizer` inside the model. The Gaussian math is closed-form (no
``torch.distributions`` objects on the hot path).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from robolearn.models.normalizer import EmpiricalNormalizer, ReduceMoments

LOG_2PI = math.log(2.0 * math.pi)
ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def build_activation(name: str, inplace: bool = False) -> nn.Module:
    """``"elu"`` | ``"relu"`` | ``"tanh"`` -> a new activation module, in place if asked and torch has one."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r} (choose from {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name](inplace=inplace) if name in ("elu", "relu") else ACTIVATIONS[name]()


def build_mlp(input_dim: int, hidden: Sequence[int], output_dim: int, activation: str,
              output_gain: float) -> nn.Sequential:
    """Linear-activation stack; orthogonal weights (gain √2, last layer ``output_gain``), zero biases.

    Activations work in place on the fresh linear outputs: one allocation less per layer, about 15%
    of a [256, 256, 256] ELU update on CPU.
    """
    dims = [input_dim, *hidden]
    layers: list[nn.Module] = []
    for in_dim, out_dim in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(in_dim, out_dim), build_activation(activation, inplace=True)]
    layers.append(nn.Linear(dims[-1], output_dim))
    linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
    for layer in linears:
        nn.init.orthogonal_(layer.weight, gain=output_gain if layer is linears[-1] else math.sqrt(2.0))
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def build_obs_normalizers(obs_dims: Mapping[str, int], critic_obs: str, normalize_obs: bool) -> nn.ModuleDict:
    """One :class:`EmpiricalNormalizer` (or identity) per group the model reads: ``policy`` and ``critic_obs``."""
    for group in ("policy", critic_obs):
        if group not in obs_dims:
            raise ValueError(f"observation group {group!r} not in obs_dims {dict(obs_dims)}")
    return nn.ModuleDict({
        group: EmpiricalNormalizer(obs_dims[group]) if normalize_obs else nn.Identity()
        for group in dict.fromkeys(("policy", critic_obs))
    })


@torch.no_grad()
def update_obs_normalizers(normalizers: nn.ModuleDict, obs: Mapping[str, torch.Tensor],
                           reduce: ReduceMoments | None = None) -> None:
    """Fold a batch of observations (any leading shape) into each group's normaliser statistics
    (``reduce``: merge the batch moments across distributed ranks first)."""
    for group, normalizer in normalizers.items():
        if isinstance(normalizer, EmpiricalNormalizer):
            normalizer.update(obs[group], reduce)


def gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a ~ N(μ, diag(σ²)) and log π(a), closed form: ``(actions, log_prob)``."""
    noise = torch.randn_like(mean)
    actions = mean + log_std.exp() * noise
    log_prob = -0.5 * noise.square().sum(-1) - _log_prob_offset(log_std)
    return actions, log_prob


def gaussian_log_prob_entropy(actions: torch.Tensor, mean: torch.Tensor,
                              log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(a) of given actions, and the entropy (state-independent σ: one value, expanded)."""
    z = (actions - mean) * torch.exp(-log_std)
    log_prob = -0.5 * z.square().sum(-1) - _log_prob_offset(log_std)
    entropy = (0.5 + 0.5 * LOG_2PI + log_std).sum().expand(mean.shape[:-1])
    return log_prob, entropy


def _log_prob_offset(log_std: torch.Tensor) -> torch.Tensor:
    """Σ log σ + (A/2) log 2π, the part of −log π(a|s) that does not depend on a."""
    return log_std.sum() + 0.5 * log_std.numel() * LOG_2PI


def gaussian_kl(mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor,
                std_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) between diagonal Gaussians, summed over the last dimension."""
    variance_q = std_q.square()
    return (torch.log(std_q / std_p) + (std_p.square() + (mean_p - mean_q).square()) / (2.0 * variance_q)
            - 0.5).sum(-1)


class ActorCritic(nn.Module):
    """π(a|s) = N(μ_θ(s), diag(σ²)) with a learned log σ, and a separate critic V_φ(s)."""

    is_recurrent = False

    def __init__(
        self,
        obs_dims: Mapping[str, int],
        action_dim: int,
        actor_hidden: Sequence[int] = (128, 128),
        critic_hidden: Sequence[int] = (128, 128),
        activation: str = "elu",
        init_std: float = 1.0,
        normalize_obs: bool = True,
        critic_obs: str = "policy",
    ) -> None:
        super().__init__()
        self.critic_obs = critic_obs
        self.obs_normalizers = build_obs_normalizers(obs_dims, critic_obs, normalize_obs)
        self.actor = build_mlp(obs_dims["policy"], actor_hidden, action_dim, activation, output_gain=0.01)
        self.critic = build_mlp(obs_dims[critic_obs], critic_hidden, 1, activation, output_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))

    def act(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Sample a ~ π(·|s): ``(actions, log_prob, values, mean, std)``, each ``[N, A]`` or ``[N]``."""
        mean = self.act_deterministic(obs)
        actions, log_prob = gaussian_sample(mean, self.log_std)
        return actions, log_prob, self.value(obs), mean, self.log_std.exp().expand_as(mean)

    def act_deterministic(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """μ_θ(s), the action a deployed policy takes."""
        return self.actor(self.obs_normalizers["policy"](obs["policy"]))

    def evaluate(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(log_prob, entropy, values, mean, std)`` of given actions under the current policy."""
        mean = self.act_deterministic(obs)
        log_prob, entropy = gaussian_log_prob_entropy(actions, mean, self.log_std)
        return log_prob, entropy, self.value(obs), mean, self.log_std.exp().expand_as(mean)

    def value(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """V_φ(s), ``[N]``."""
        return self.critic(self.obs_normalizers[self.critic_obs](obs[self.critic_obs])).squeeze(-1)

    def update_normalizers(self, obs: Mapping[str, torch.Tensor], reduce: ReduceMoments | None = None) -> None:
        """Fold a batch of observations (any leading shape) into each group's statistics."""
        update_obs_normalizers(self.obs_normalizers, obs, reduce)
