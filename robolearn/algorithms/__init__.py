"""On-policy algorithms and their shared math."""

from robolearn.algorithms.gae import compute_gae, normalize_advantages
from robolearn.algorithms.ppo import PPO, adapt_learning_rate, clipped_surrogate_loss

__all__ = ["PPO", "adapt_learning_rate", "clipped_surrogate_loss", "compute_gae", "normalize_advantages"]
