"""Experiment configuration: YAML files -> validated pydantic models, plus ``KEY=VALUE`` overrides.

One YAML file describes an experiment::

    experiment: nav
    seed: 1
    device: auto
    env: {task: robolearn/Nav-v0, num_envs: 256, ...}   # validated against the task's config class
    algorithm: {...}
    policy: {...}
    runner: {...}

Every section is a :class:`StrictModel`: unknown keys, wrong types and impossible values are
errors. :func:`load_config` turns any of them into a :class:`ConfigError` whose message is one line
naming the file (or the command-line override) and the dotted key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, model_serializer,
                      model_validator)


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the source and the dotted key."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_assignment=True, frozen=False)


class Range(StrictModel):
    """A closed interval ``[lo, hi]``; written in YAML as a two-element list."""

    lo: float
    hi: float

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"expected [lo, hi], got {list(value)}")
            return {"lo": value[0], "hi": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.lo > self.hi:
            raise ValueError(f"lo > hi in [{self.lo}, {self.hi}]")
        return self

    @model_serializer
    def _to_list(self) -> list:
        return [self.lo, self.hi]

    def as_tuple(self) -> tuple[float, float]:
        return (self.lo, self.hi)


class IntRange(Range):
    """A closed integer interval ``[lo, hi]``."""

    lo: int
    hi: int


class EnvConfig(StrictModel):
    """Keys every task shares; each task's config class extends it with its own."""

    task: str = "robolearn/Nav-v0"
    num_envs: int = Field(256, gt=0)
    nthread: int = Field(0, ge=0, description="physics threads; 0 uses every CPU")


#: keys only PPO reads; A2C makes one pass per rollout at a fixed learning rate, without clipping
PPO_ONLY_KEYS = ("num_epochs", "num_minibatches", "clip_ratio", "clip_value", "lr_schedule", "desired_kl")


class AlgorithmConfig(StrictModel):
    """PPO / A2C hyper-parameters (keys equal the algorithm's constructor arguments)."""

    name: Literal["ppo", "a2c"] = "ppo"
    num_steps: int = Field(24, gt=0, description="rollout length per env")
    num_epochs: int = Field(5, gt=0)
    num_minibatches: int = Field(4, gt=0)
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    lam: float = Field(0.95, ge=0.0, le=1.0)
    clip_ratio: float = Field(0.2, gt=0.0)
    clip_value: bool = True
    value_coef: float = Field(1.0, ge=0.0)
    entropy_coef: float = Field(0.005, ge=0.0)
    lr: float = Field(1e-3, gt=0.0)
    lr_schedule: Literal["adaptive", "fixed"] = "adaptive"
    desired_kl: float = Field(0.01, gt=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    normalize_advantage: bool = True

    @model_validator(mode="after")
    def _keys_of_the_algorithm(self) -> "AlgorithmConfig":
        if self.name == "a2c":
            for key in PPO_ONLY_KEYS:
                if getattr(self, key) != type(self).model_fields[key].default:
                    raise ValueError(f"{key}: a PPO setting, not used by a2c (remove it)")
        return self

    def algorithm_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the algorithm ``name`` (less model and device)."""
        unused = {"name", "num_steps", *(PPO_ONLY_KEYS if self.name == "a2c" else ())}
        return self.model_dump(exclude=unused)


#: keys only a recurrent policy reads
RECURRENT_KEYS = ("rnn_hidden", "rnn_layers", "encoder_hidden")


class PolicyConfig(StrictModel):
    """Actor-critic network: ``class`` mlp (MLP actor and critic) or lstm | gru (each of actor and
    critic: ``encoder_hidden`` layers, the recurrent cell, then ``actor_hidden`` / ``critic_hidden``)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    class_: Literal["mlp", "lstm", "gru"] = Field("mlp", alias="class")
    actor_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    critic_hidden: list[int] = Field(default_factory=lambda: [128, 128])
    activation: Literal["elu", "relu", "tanh"] = "elu"
    init_std: float = Field(1.0, gt=0.0)
    normalize_obs: bool = True
    critic_obs: Literal["policy", "critic"] = Field(
        "policy", description="observation group the critic reads; 'critic' adds privileged state")
    rnn_hidden: int = Field(128, gt=0, description="recurrent state size (lstm | gru)")
    rnn_layers: int = Field(1, gt=0, description="stacked recurrent layers (lstm | gru)")
    encoder_hidden: list[int] = Field(default_factory=list, description="MLP layers before the cell (lstm | gru)")

    @model_validator(mode="after")
    def _positive_layers(self) -> "PolicyConfig":
        for name in ("actor_hidden", "critic_hidden", "encoder_hidden"):
            if any(width <= 0 for width in getattr(self, name)):
                raise ValueError(f"{name}: layer widths must be positive, got {getattr(self, name)}")
        if self.class_ == "mlp":
            for key in RECURRENT_KEYS:
                if getattr(self, key) != type(self).model_fields[key].get_default(call_default_factory=True):
                    raise ValueError(f"{key}: only for class lstm | gru (class is mlp)")
        return self


class RunnerConfig(StrictModel):
    """Training loop budget, logging and checkpoints."""

    max_iterations: int | None = Field(None, gt=0)
    max_env_steps: int | None = Field(None, gt=0)
    max_seconds: float | None = Field(None, gt=0)
    log_interval: int = Field(1, gt=0)
    checkpoint_interval: int = Field(50, gt=0)
    eval_episodes: int = Field(0, ge=0)
    # distributed training (torchrun / --nproc; ignored by a single process)
    dist_backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="auto: nccl on CUDA, gloo on CPU")
    sync_check_interval: int = Field(
        10, ge=0, description="compare parameters across ranks every N iterations (0: never)")


RANDOMIZATION_TARGETS = {
    # simulator physics, applied per env at reset through per-env model fields
    "geom_friction": "geoms", "body_mass": "bodies", "joint_damping": "joints", "armature": "joints",
    "actuator_gain": "actuators", "actuator_strength": "actuators", "gravity": None,
    # custom physics, applied inside step
    "action_latency": None, "action_noise": None, "action_deadband": None, "action_backlash": None,
    "push": "bodies",
    # observation noise on terms of the policy group
    "obs_noise": "obs_terms", "obs_bias": "obs_terms", "obs_scale": "obs_terms",
    # scene layout: a task-declared parameter (Nav: obstacle_count, obstacle_size, goal_distance)
    "layout": "layout",
}


class Selection(StrictModel):
    """Which model elements a parameter acts on, by name."""

    geoms: list[str] | None = None
    bodies: list[str] | None = None
    joints: list[str] | None = None
    actuators: list[str] | None = None
    obs_terms: list[str] | None = None
    layout: str | None = None


class RandomizationParam(StrictModel):
    """One randomized parameter (see DESIGN section 3). ``limits`` default to ``init_range``."""

    target: str
    select: Selection = Field(default_factory=Selection)
    op: Literal["scale", "add", "set"] = "scale"
    type: Literal["float", "int"] = "float"
    init_range: Range
    limits: Range | None = None
    delta: float = Field(0.0, ge=0.0)
    delta_style: Literal["additive", "multiplicative"] = "additive"
    every_s: float = Field(3.0, gt=0.0, description="push: mean seconds between pushes")

    @model_validator(mode="after")
    def _check(self) -> "RandomizationParam":
        if self.target not in RANDOMIZATION_TARGETS:
            raise ValueError(f"target: unknown target {self.target!r} (known: {', '.join(RANDOMIZATION_TARGETS)})")
        kind = RANDOMIZATION_TARGETS[self.target]
        given = {k for k, v in self.select.model_dump().items() if v is not None}
        if kind is None and given:
            raise ValueError(f"select: target {self.target!r} takes no selection, got {sorted(given)}")
        if kind is not None and given != {kind}:
            raise ValueError(f"select: target {self.target!r} needs select.{kind} (and nothing else)")
        limits = self.limits or self.init_range
        if not (limits.lo <= self.init_range.lo and self.init_range.hi <= limits.hi):
            raise ValueError(f"limits {[limits.lo, limits.hi]} do not contain init_range "
                             f"{[self.init_range.lo, self.init_range.hi]}")
        if self.op == "scale" and limits.lo <= 0:
            raise ValueError(f"scale ranges must be positive, got limits {[limits.lo, limits.hi]}")
        if self.type == "int" and not all(float(v).is_integer() for v in (*self.init_range.as_tuple(), *limits.as_tuple())):
            raise ValueError("int parameters need whole-number init_range and limits")
        if self.target in ("action_latency",) and self.type != "int":
            raise ValueError("action_latency counts whole control steps: set type: int")
        if self.delta_style == "multiplicative" and limits.lo <= 0:
            raise ValueError("multiplicative delta needs positive limits")
        return self

    @property
    def limit_range(self) -> Range:
        return self.limits or self.init_range


class AdrConfig(StrictModel):
    """ADR switches: ``enabled`` samples boundary episodes and moves ranges; ``update: false``
    freezes the ranges (plain domain randomization over them)."""

    enabled: bool = False
    update: bool = True
    boundary_prob: float = Field(0.5, ge=0.0, le=1.0)
    queue_length: int = Field(240, gt=0)
    t_low: float = Field(0.4, description="in the objective's units (success: a rate in [0, 1])")
    t_high: float = 0.8
    objective: str = Field("success", description="the episode metric ADR thresholds")

    @model_validator(mode="after")
    def _thresholds(self) -> "AdrConfig":
        if self.t_low >= self.t_high:
            raise ValueError(f"t_low ({self.t_low}) must be below t_high ({self.t_high})")
        return self


class RandomizationConfig(StrictModel):
    adr: AdrConfig = Field(default_factory=AdrConfig)
    params: dict[str, RandomizationParam] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _deltas(self) -> "RandomizationConfig":
        if self.adr.enabled and self.adr.update:
            for name, param in self.params.items():
                if param.delta <= 0 and param.init_range.as_tuple() != param.limit_range.as_tuple():
                    raise ValueError(f"params.{name}.delta: ADR needs a positive delta")
        return self


class Config(StrictModel):
    """A whole experiment. Build it with :func:`validate_config` / :func:`load_config`, which
    validate ``env`` against the config class of the task it names."""

    experiment: str = "default"
    seed: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    env: SerializeAsAny[EnvConfig] = Field(default_factory=EnvConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    randomization: RandomizationConfig = Field(default_factory=RandomizationConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# ---------------------------------------------------------------------------------------------
# loading, overrides, error messages


class _SectionError(Exception):
    """A validation error inside a config section, with the section's dotted prefix."""

    def __init__(self, error: ValidationError | str, prefix: str):
        super().__init__(str(error))
        self.error, self.prefix = error, prefix


def _build_config(data: Mapping[str, Any]) -> Config:
    """Validate ``env`` with its task's config class, then the whole experiment."""
    data = dict(data)
    env = data.get("env", {})
    if isinstance(env, dict):
        from robolearn.envs.registry import get_task  # lazily: tasks import this module

        task = env.get("task", EnvConfig.model_fields["task"].default)
        try:
            spec = get_task(str(task))
        except KeyError as err:
            raise _SectionError(err.args[0], "env.task") from None
        try:
            data["env"] = spec.config_cls.model_validate(env)
        except ValidationError as err:
            raise _SectionError(err, "env") from None
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _SectionError(err, "") from None


def _format_error(error: _SectionError, source: str) -> str:
    """First validation error as one line: ``source: dotted.key: message``."""
    if isinstance(error.error, str):
        return f"{source}: {error.prefix}: {error.error}"
    err = error.error
    first = err.errors()[0]
    parts = [error.prefix] if error.prefix else []
    parts += [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    loc = ".".join(parts)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        msg = f"{msg} (got {first['input']!r})"
    msg = msg.replace("Value error, ", "")
    extra = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {loc or '<root>'}: {msg}{extra}" if loc else f"{source}: {msg}{extra}"


_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"algorithm.lr=3e-4"`` -> ``(["algorithm", "lr"], 3e-4)``; the value is a YAML scalar."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. env.num_envs=64")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err.__class__.__name__})") from None
    if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value):
        value = float(value)  # YAML 1.1 reads "3e-4" as a string; YAML 1.2 and users read a number
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``KEY=VALUE`` override set (creating sections)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def validate_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a plain dict; errors become one-line :class:`ConfigError` naming ``source``."""
    try:
        return _build_config(data)
    except _SectionError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML experiment file (or the defaults), apply overrides, validate.

    The file is validated on its own first so that an error in it names the file; errors that
    only appear with the overrides name the override.
    """
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    validate_config(data, source)
    if overrides:
        merged = apply_overrides(data, overrides)
        try:
            return _build_config(merged)
        except _SectionError as err:
            line = _format_error(err, "")[2:]
            key = line.split(": ", 1)[0]
            culprit = next((o for o in overrides if key.startswith(o.partition("=")[0])), None)
            culprit = culprit or next((o for o in overrides if o.partition("=")[0].startswith(key)), None)
            where = f"override {culprit!r}" if culprit else f"{source} + overrides"
            raise ConfigError(f"{where}: {line}") from None
    return validate_config(data, source)


def dump_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (re-loadable with :func:`load_config`)."""
    Path(path).write_text(config.to_yaml())
