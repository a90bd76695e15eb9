"""Policy and value networks."""

from robolearn.models.actor_critic import ActorCritic, build_activation, gaussian_kl
from robolearn.models.normalizer import EmpiricalNormalizer

__all__ = ["ActorCritic", "EmpiricalNormalizer", "build_activation", "gaussian_kl"]
