"""The experiment schema: one pydantic model per config section, each key a constructor argument.

Every section is a :class:`StrictModel`: unknown keys, wrong types (no silent ``true`` -> 1, no
``"3"`` -> 3), NaN or infinite numbers and impossible values are errors. Two sections depend on a
name inside them: ``env`` is validated by the config class of the task ``env.task`` names, and
``policy`` by the schema of the policy ``policy.class`` names. Both are looked up in registries
here, which the tasks (:mod:`robolearn.envs`) and policies (:mod:`robolearn.models`) fill when
they are imported; this module imports neither.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, SerializeAsAny, model_validator

from robolearn.config.base import StrictModel
from robolearn.config.randomization import RandomizationConfig


class EnvConfig(StrictModel):
    """Keys every task shares; each task's config class extends it with its own."""

    task: str = "robolearn/Nav-v0"
    num_envs: int = Field(256, gt=0)
    nthread: int = Field(0, ge=0, description="physics threads; 0 uses every CPU")


#: ``env.task`` -> the task's config class (filled by :func:`robolearn.envs.register_task`)
ENV_CONFIGS: dict[str, type[EnvConfig]] = {}


def register_env_config(task: str, config_cls: type[EnvConfig]) -> None:
    """Validate ``env`` sections naming ``task`` with ``config_cls``."""
    ENV_CONFIGS[task] = config_cls


def env_config_class(task: str) -> type[EnvConfig]:
    """The config class of a registered task (KeyError with a one-line message otherwise)."""
    if task not in ENV_CONFIGS:
        known = ", ".join(sorted(ENV_CONFIGS)) or "none: import robolearn.envs to register the bundled tasks"
        raise KeyError(f"unknown task {task!r} (registered: {known})")
    return ENV_CONFIGS[task]


class EntropyStage(StrictModel):
    """``algorithm.entropy_stage``: ``entropy_coef`` (and the policy's action std kept at most ``max_std``) from
    when the trainer's training success rate first reaches ``success``."""

    success: float = Field(gt=0.0, le=1.0)
    entropy_coef: float = Field(ge=0.0)
    max_std: float | None = Field(None, gt=0.0, description="the largest action std once the stage is on (None: no cap)")


#: keys only PPO reads; A2C makes one pass per rollout at a fixed learning rate, without clipping
PPO_ONLY_KEYS = ("num_epochs", "num_minibatches", "clip_ratio", "clip_value", "lr_schedule", "desired_kl")


class AlgorithmConfig(StrictModel):
    """PPO / A2C hyper-parameters (keys equal the algorithm's constructor arguments)."""

    name: Literal["ppo", "a2c"] = "ppo"
    num_epochs: int = Field(5, gt=0)
    num_minibatches: int = Field(4, gt=0)
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    lam: float = Field(0.95, ge=0.0, le=1.0)
    clip_ratio: float = Field(0.2, gt=0.0)
    clip_value: bool = True
    value_coef: float = Field(1.0, ge=0.0)
    entropy_coef: float = Field(0.005, ge=0.0)
    entropy_stage: EntropyStage | None = None
    lr: float = Field(1e-3, gt=0.0)
    lr_schedule: Literal["adaptive", "fixed"] = "adaptive"
    desired_kl: float = Field(0.01, gt=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    normalize_advantage: bool = True
    #: divide rewards by the running std of the discounted return (robolearn.algorithms.return_scale)
    normalize_rewards: bool = False

    @model_validator(mode="after")
    def _keys_of_the_algorithm(self) -> "AlgorithmConfig":
        if self.name == "a2c":
            for key in PPO_ONLY_KEYS:
                if getattr(self, key) != type(self).model_fields[key].default:
                    raise ValueError(f"{key}: a PPO setting, not used by a2c (remove it)")
        return self

    def algorithm_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the algorithm ``name`` (less model and device)."""
        unused = {"name", *(PPO_ONLY_KEYS if self.name == "a2c" else ())}
        return self.model_dump(exclude=unused)


class EncoderConfig(StrictModel):
    """``policy.encoder``: the CNN each image term of an observation group goes through before the
    policy's MLP or recurrent layers. Layer i is a ``kernel_sizes[i]`` convolution (no padding) with
    ``channels[i]`` output channels and stride ``strides[i]``, then the policy's activation; the
    last feature map is flattened and projected by a linear layer (and the activation) to
    ``features`` values. The defaults turn a 24 x 32 depth image into 64 features with ~0.2 M
    multiply-adds."""

    channels: list[int] = Field(default_factory=lambda: [16, 32], description="output channels per conv layer")
    kernel_sizes: list[int] = Field(default_factory=lambda: [5, 3], description="square kernel size per conv layer")
    strides: list[int] = Field(default_factory=lambda: [2, 2], description="stride per conv layer")
    features: int = Field(64, gt=0, description="features per image term (the linear layer after the convs)")

    @model_validator(mode="after")
    def _layers(self) -> "EncoderConfig":
        if not self.channels:
            raise ValueError("channels: at least one conv layer")
        for name in ("channels", "kernel_sizes", "strides"):
            values = getattr(self, name)
            if any(v <= 0 for v in values):
                raise ValueError(f"{name}: must be positive, got {values}")
            if len(values) != len(self.channels):
                raise ValueError(f"{name}: one entry per conv layer ({len(self.channels)} in channels), got {values}")
        return self


class PolicyConfig(StrictModel):
    """Keys every policy takes, and the schema of ``class: mlp`` (an MLP actor and critic). The
    keys other than ``class`` are the policy class's constructor arguments."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    class_: str = Field("mlp", alias="class")
    actor_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    critic_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    activation: Literal["elu", "relu", "tanh"] = "elu"
    init_std: float = Field(1.0, gt=0.0)
    normalize_obs: bool = True
    critic_obs: Literal["policy", "critic"] = Field(
        "policy", description="observation group the critic reads; 'critic' adds privileged state")
    # null (left out of the resolved config, so runs without images keep their configs): the
    # default CNN; used only by readers of a group that has image terms
    encoder: EncoderConfig | None = Field(None, exclude_if=lambda value: value is None,
                                          description="CNN for image terms (null: the default one)")

    @model_validator(mode="after")
    def _positive_layers(self) -> "PolicyConfig":
        for name, value in self:
            if isinstance(value, list) and any(width <= 0 for width in value):
                raise ValueError(f"{name}: layer widths must be positive, got {value}")
        return self

    def constructor_kwargs(self) -> dict[str, Any]:
        """The policy class's keyword arguments (every key but ``class``)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "class_"}


class RecurrentPolicyConfig(PolicyConfig):
    """``class: lstm | gru``: each of actor and critic runs ``encoder_hidden`` layers, the recurrent
    cell, then its ``actor_hidden`` / ``critic_hidden`` head."""

    rnn_hidden: int = Field(128, gt=0, description="recurrent state size")
    rnn_layers: int = Field(1, gt=0, description="stacked recurrent layers")
    encoder_hidden: list[int] = Field(default_factory=list, description="MLP layers before the cell")


class TransformerPolicyConfig(PolicyConfig):
    """``class: transformer``: each of actor and critic turns every step into a token
    (``encoder_hidden`` layers, then a linear map to ``width``), runs a causal transformer over the
    episode's last ``context`` steps (``layers`` blocks of ``heads``-head attention and a
    ``ffn_hidden`` MLP), then its ``actor_hidden`` / ``critic_hidden`` head. No dropout. The
    default size is the one the latency goal of the exported actor is set for (p99 <= 200 µs at
    batch 1 on one thread, ``bench/deploy_latency.py``)."""

    context: int = Field(32, ge=2, description="K: steps each attention layer sees, the current one included")
    layers: int = Field(2, gt=0, description="transformer blocks")
    heads: int = Field(4, gt=0, description="attention heads per block (width / heads values each)")
    width: int = Field(64, gt=0, description="token width")
    ffn_hidden: int = Field(128, gt=0, description="hidden width of each block's MLP")
    encoder_hidden: list[int] = Field(default_factory=list, description="MLP layers before the token projection")

    @model_validator(mode="after")
    def _heads_split_width(self) -> "TransformerPolicyConfig":
        if self.width % self.heads:
            raise ValueError(f"heads: width {self.width} does not split into {self.heads} heads "
                             "(width must be a multiple of heads)")
        return self


#: ``policy.class`` -> the schema of its section (more through :func:`robolearn.models.register_policy`)
POLICY_CONFIGS: dict[str, type[PolicyConfig]] = {"mlp": PolicyConfig, "lstm": RecurrentPolicyConfig,
                                                 "gru": RecurrentPolicyConfig, "transformer": TransformerPolicyConfig}


def register_policy_config(name: str, config_cls: type[PolicyConfig]) -> None:
    """Validate ``policy`` sections with ``class: name`` by ``config_cls``."""
    POLICY_CONFIGS[name] = config_cls


def policy_config_class(name: str) -> type[PolicyConfig]:
    if name not in POLICY_CONFIGS:
        raise KeyError(f"unknown policy class {name!r} (registered: {', '.join(sorted(POLICY_CONFIGS))})")
    return POLICY_CONFIGS[name]


class TrainerConfig(StrictModel):
    """Training loop: rollout length, budget (at least one key), logging and checkpoints."""

    num_steps: int = Field(24, gt=0, description="rollout length per env and iteration")
    rollout_threads: int = Field(1, ge=0, description="torch threads running the policy in rollouts on CPU "
                                 "(0: half of the CPUs)")
    update_threads: int = Field(0, ge=0, description="torch threads of the update on CPU (0: half of the CPUs, "
                                "leaving room for other work; a descheduled thread stalls the rest)")
    max_iterations: int | None = Field(None, gt=0)
    max_env_steps: int | None = Field(None, gt=0)
    max_seconds: float | None = Field(None, gt=0)
    log_interval: int = Field(1, gt=0)
    checkpoint_interval: int = Field(50, gt=0)
    policy_average: float = Field(0.0, ge=0.0, lt=1.0, description="decay per iteration of the moving average of the "
                                  "policy's weights that eval and export use (0: the last iteration's weights)")
    # distributed training (torchrun / --nproc; ignored by a single process)
    dist_backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl on CUDA, gloo on CPU")
    sync_check_interval: int = Field(
        10, ge=0, description="compare parameters across ranks every N iterations (0: never)")

    @model_validator(mode="after")
    def _has_budget(self) -> "TrainerConfig":
        if not (self.max_iterations or self.max_env_steps or self.max_seconds):
            raise ValueError("no training budget: set max_iterations, max_env_steps or max_seconds")
        return self

    #: keys a resumed run may change (everything else is the run's and must stay as it was)
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "max_iterations", "max_env_steps", "max_seconds", "log_interval", "checkpoint_interval", "dist_backend",
        "sync_check_interval", "rollout_threads", "update_threads")


class ConstraintConfig(StrictModel):
    """A limit on an episode metric (``constraints.<name>``, the name being the metric unless
    ``metric`` says otherwise), kept by adapting the weight of the penalty term that charges for it
    (a Lagrange multiplier, :mod:`robolearn.constraints`)."""

    term: str = Field(description="the reward term (env.rewards) whose penalty weight is adapted")
    metric: str | None = Field(None, description="the episode metric limited (default: the constraint's name); "
                                                 "two constraints may limit one metric through different terms")
    limit: float = Field(ge=0.0, description="the most the metric may average per episode")
    lr: float = Field(gt=0.0, description="weight change per iteration per unit the metric's mean exceeds the limit "
                                          "(or, below it, is under: the penalty relaxes to its configured weight)")
    max_weight: float = Field(gt=0.0, description="the largest magnitude the penalty weight may reach")
    start_success: float | None = Field(None, ge=0.0, le=1.0, description=(
        "adapt the term's weight only once the training success rate (over the same window) first reaches "
        "this; until then it keeps its configured weight: a limit tightened after the task is learned"))


class Config(StrictModel):
    """A whole experiment. Build it with :func:`robolearn.config.validate_config` /
    :func:`~robolearn.config.load_config`, which validate ``env`` and ``policy`` with the classes
    their ``task`` and ``class`` name."""

    experiment: str = "default"
    seed: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    env: SerializeAsAny[EnvConfig]
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    policy: SerializeAsAny[PolicyConfig] = Field(default_factory=PolicyConfig)
    trainer: TrainerConfig
    randomization: RandomizationConfig = Field(default_factory=RandomizationConfig)
    #: episode metric -> the limit kept by adapting a penalty term's weight (none: the weights stay as configured)
    constraints: dict[str, ConstraintConfig] = Field(default_factory=dict)
    #: where the config came from (file, overrides): set by the loaders, names the source of an error
    _origin: Any = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:  # the same experiment, wherever it was loaded from
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def origin(self, key: str) -> str:
        """The file or override a dotted key came from (for errors found after loading)."""
        return self._origin.describe(key) if self._origin is not None else "<config>"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


