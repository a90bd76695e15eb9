"""Policy and value networks."""

from robolearn.models.actor_critic import ActorCritic, build_activation, gaussian_kl
from robolearn.models.normalizer import EmpiricalNormalizer
from robolearn.models.recurrent import RecurrentActorCritic, reset_finished
from robolearn.models.trajectories import Trajectories

__all__ = ["ActorCritic", "EmpiricalNormalizer", "RecurrentActorCritic", "Trajectories", "build_activation",
           "gaussian_kl", "reset_finished"]
