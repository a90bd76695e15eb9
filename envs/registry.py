"""Registry of robolearn tasks: name -> batched env class + config class.

Tasks register themselves when :mod:`robolearn.envs` is imported; the core looks them up by name
and never imports a concrete task. Each task is also registered with gymnasium with a single-env
``entry_point`` and a ``vector_entry_point``, and its config class with :mod:`robolearn.config`,
which validates ``env`` sections naming the task with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium

from robolearn.config import EnvConfig, register_env_config

if TYPE_CHECKING:
    from robolearn.envs.core import BatchedMujocoEnv


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env_cls: type["BatchedMujocoEnv"]
    config_cls: type[EnvConfig]
    description: str


_TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, env_cls: type, config_cls: type, single_entry_point: str,
                  vector_entry_point: str, description: str = "") -> None:
    """Register a task with robolearn and with gymnasium (single and vector entry points)."""
    if name in _TASKS:
        raise ValueError(f"task {name!r} is already registered")
    _TASKS[name] = TaskSpec(name, env_cls, config_cls, description)
    register_env_config(name, config_cls)
    gymnasium.register(id=name, entry_point=single_entry_point, vector_entry_point=vector_entry_point,
                       disable_env_checker=False)


def get_task(name: str) -> TaskSpec:
    import robolearn.envs  # noqa: F401  (registers the bundled tasks)

    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(sorted(_TASKS)) or "none"
        raise KeyError(f"unknown task {name!r} (registered: {known})") from None


def list_tasks() -> list[TaskSpec]:
    import robolearn.envs  # noqa: F401

    return [_TASKS[name] for name in sorted(_TASKS)]


def make_env(config: EnvConfig, seed: int | None = None, **kwargs: Any) -> "BatchedMujocoEnv":
    """Build the batched env a validated ``env`` config section describes."""
    spec = get_task(config.task)
    return spec.env_cls(config=config, seed=seed, **kwargs)
