"""Experiment configuration: validated sections (:mod:`~robolearn.config.schema`, the randomization
section in :mod:`~robolearn.config.randomization`) loaded from YAML
files with ``KEY=VALUE`` overrides (:mod:`~robolearn.config.loading`).

One YAML file describes an experiment::

    experiment: nav
    seed: 1
    device: auto
    env: {task: robolearn/Nav-v0, num_envs: 256, ...}   # validated by the task's config class
    algorithm: {name: ppo, ...}
    policy: {class: mlp, ...}                          # validated by the policy class's schema
    trainer: {num_steps: 24, max_env_steps: 2000000, ...}
    randomization: {adr: {...}, params: {...}}
    constraints: {bumps: {term: bump, limit: 0.5, lr: 0.01, max_weight: 5.0}}   # optional
"""

from robolearn.config.loading import (ConfigOrigin, apply_overrides, dump_config, first_error, load_config,
                                      parse_override, read_yaml, validate_config)
from robolearn.config.physics import PhysicsConfig
from robolearn.config.base import ConfigError, IntRange, Range, StrictModel
from robolearn.config.randomization import (RANDOMIZATION_TARGETS, AdrConfig, RandomizationConfig, RandomizationParam,
                                            Selection)
from robolearn.config.schema import (ENV_CONFIGS, PPO_ONLY_KEYS, AlgorithmConfig, Config, ConstraintConfig,
                                     EncoderConfig, EnvConfig, PolicyConfig, RecurrentPolicyConfig, TrainerConfig,
                                     TransformerPolicyConfig, env_config_class, policy_config_class,
                                     register_env_config, register_policy_config)

__all__ = ["ENV_CONFIGS", "PPO_ONLY_KEYS", "RANDOMIZATION_TARGETS", "AdrConfig", "AlgorithmConfig", "Config",
           "ConfigError", "ConstraintConfig", "ConfigOrigin", "EncoderConfig", "EnvConfig", "IntRange",
           "PhysicsConfig", "PolicyConfig",
           "RandomizationConfig", "RandomizationParam", "Range", "RecurrentPolicyConfig", "TrainerConfig",
           "TransformerPolicyConfig", "Selection", "StrictModel", "apply_overrides", "dump_config", "env_config_class", "first_error",
           "load_config", "parse_override", "policy_config_class", "read_yaml", "register_env_config",
           "register_policy_config", "validate_config"]
