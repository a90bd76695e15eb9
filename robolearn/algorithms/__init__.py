"""On-policy algorithms and their shared math."""

from robolearn.algorithms.a2c import A2C, policy_gradient_loss
from robolearn.algorithms.gae import compute_gae, normalize_advantages
from robolearn.algorithms.on_policy import OnPolicyAlgorithm, squared_error_value_loss
from robolearn.algorithms.ppo import PPO, adapt_learning_rate_, clipped_surrogate_loss

#: ``algorithm.name`` -> class
ALGORITHMS: dict[str, type[OnPolicyAlgorithm]] = {"ppo": PPO, "a2c": A2C}

__all__ = ["A2C", "ALGORITHMS", "OnPolicyAlgorithm", "PPO", "adapt_learning_rate_",
           "clipped_surrogate_loss", "compute_gae", "normalize_advantages", "policy_gradient_loss",
           "squared_error_value_loss"]
