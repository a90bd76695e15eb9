"""Policies: one interface (:class:`Policy`), built by name from the ``policy`` config section."""

from robolearn.models.actor_critic import DeployableMLP, MLPActorCritic, build_activation, gaussian_kl
from robolearn.models.average import PolicyAverage
from robolearn.models.encoder import ConvEncoder, ObsEncoder, ObsTerms
from robolearn.models.normalizer import EmpiricalNormalizer
from robolearn.models.policy import (POLICIES, ActionScores, Policy, PolicyStep, build_policy,
                                     register_policy)
from robolearn.models.recurrent import DeployableRecurrent, GRUActorCritic, LSTMActorCritic, RecurrentActorCritic
from robolearn.models.trajectories import Trajectories
from robolearn.models.transformer import DeployableTransformer, TransformerActorCritic

register_policy("mlp", MLPActorCritic)
register_policy("lstm", LSTMActorCritic)
register_policy("gru", GRUActorCritic)
register_policy("transformer", TransformerActorCritic)

__all__ = ["POLICIES", "ActionScores", "ConvEncoder", "DeployableMLP", "DeployableRecurrent", "DeployableTransformer",
           "EmpiricalNormalizer", "GRUActorCritic", "LSTMActorCritic", "MLPActorCritic", "ObsEncoder", "ObsTerms",
           "Policy", "PolicyAverage", "PolicyStep", "RecurrentActorCritic", "Trajectories", "TransformerActorCritic", "build_activation",
           "build_policy", "gaussian_kl", "register_policy"]
