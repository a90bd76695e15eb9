"""Domain randomization and Automatic Domain Randomization (DESIGN section 3).

Parameters are applied per env at reset through the batched env's per-env model fields
(:meth:`robolearn.envs.core.BatchedMujocoEnv.model_field`), relative to the nominal model.
"""

from robolearn.randomization.adr import AdrParam, AdrState
from robolearn.randomization.randomizer import RandomizationError, Randomizer

__all__ = ["AdrParam", "AdrState", "RandomizationError", "Randomizer"]
