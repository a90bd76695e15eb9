"""Episodes in progress as plain data: what :meth:`BatchedMujocoEnv.state_dict` saves and restores.

A fresh env of the same config that loads the state of another one continues its episodes bit for
bit: same observations, rewards, terminations and infos for the same actions, across episode ends.
The state has five parts:

* ``task``, ``num_envs``: checked on load (a state of another task or size is refused);
* ``physics``: ``batch.state`` (the full integration state of every simulation: time, qpos, qvel,
  act, warmstart, ctrl, applied forces, mocap poses, ...) and every per-simulation model field
  (``Batch.expanded``: randomized physics, per-env geometry, fields ``set_const`` derived);
* ``task_state``: by one rule, every numpy array the env object holds in numpy's own memory, and
  every dict of such arrays (a task's per-env state: goals, distances, counters, ``layout_params``,
  action histories, ... and, harmlessly, its constant index arrays and scratch buffers). Views of
  MuJoCo's memory (``bind``, ``model_field``) are physics and are not repeated here. A task keeps
  per-env state in numpy arrays on the env object; anything else would not be saved (the
  split-vs-continuous test over every task checks this);
* ``rng``: the ``bit_generator.state`` of every ``numpy.random.Generator`` the env holds;
* ``randomizer``: :meth:`Randomizer.state_dict` (ADR state, its RNG streams, per-env samples,
  action history, observation bias), or None without randomization.

Plain data only: numpy arrays, Python scalars and strings, lists and dicts (no MuJoCo objects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np
from mujoco import batch as mjbatch

if TYPE_CHECKING:
    from robolearn.envs.core import BatchedMujocoEnv

_STAGE_VEL = mujoco.mjtStage.mjSTAGE_VEL
_PARTS = ("task", "num_envs", "physics", "task_state", "rng", "randomizer")


def _numpy_owned(value: Any) -> bool:
    """An ndarray whose memory numpy allocated (not a view of MuJoCo's buffers)."""
    if not isinstance(value, np.ndarray):
        return False
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root.flags.owndata


def _is_task_state(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _numpy_owned(v) for k, v in value.items())
    return _numpy_owned(value)


def _task_state(env: "BatchedMujocoEnv") -> dict[str, Any]:
    """The env's task-state attributes (live objects, not copies)."""
    return {name: value for name, value in vars(env).items() if _is_task_state(value)}


def _generators(env: "BatchedMujocoEnv") -> dict[str, np.random.Generator]:
    return {name: value for name, value in vars(env).items() if isinstance(value, np.random.Generator)}


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: np.array(v, copy=True) for k, v in value.items()}
    return np.array(value, copy=True)


def capture(env: "BatchedMujocoEnv") -> dict[str, Any]:
    """The state of ``env`` (copies; see the module docstring for the layout)."""
    fields = {}
    for name in sorted(mjbatch.MODEL_FIELDS):
        value = env.batch.expanded(name)
        if value is not None:
            fields[name] = np.array(value, copy=True)
    return {
        "task": env.task,
        "num_envs": env.num_envs,
        "physics": {"state": np.array(env.batch.state, copy=True), "model_fields": fields},
        "task_state": {name: _copy(value) for name, value in _task_state(env).items()},
        "rng": {name: gen.bit_generator.state for name, gen in _generators(env).items()},
        "randomizer": env.randomizer.state_dict() if env.randomizer is not None else None,
    }


def _check_shape(what: str, saved: Any, current: np.ndarray) -> np.ndarray:
    saved = np.asarray(saved)
    if saved.shape != current.shape:
        raise ValueError(f"env state {what} has shape {saved.shape}, this env's is {current.shape}")
    return saved


def _check(env: "BatchedMujocoEnv", state: dict[str, Any]) -> None:
    """ValueError naming the first thing in ``state`` that does not fit ``env``; changes nothing."""
    if not isinstance(state, dict) or any(part not in state for part in _PARTS):
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not an env state: expected the parts {list(_PARTS)}, got {have}")
    if state["task"] != env.task:
        raise ValueError(f"env state is of task {state['task']!r}, this env is {env.task!r}")
    if state["num_envs"] != env.num_envs:
        raise ValueError(f"env state has num_envs={state['num_envs']}, this env has num_envs={env.num_envs}")
    if (state["randomizer"] is None) != (env.randomizer is None):
        has = "has" if state["randomizer"] is not None else "has no"
        raise ValueError(f"env state {has} randomizer state, this env {'has' if env.randomizer else 'has no'} "
                         f"randomization")
    _check_shape("physics.state", state["physics"]["state"], env.batch.state)
    for name, value in state["physics"]["model_fields"].items():
        if name not in mjbatch.MODEL_FIELDS:
            raise ValueError(f"env state model field {name!r} is not a MuJoCo model field")
        current = env.batch.expanded(name)
        if current is None:  # not expanded here yet: compare with the model's value per env
            nominal = getattr(env.model.opt, name[4:]) if name.startswith("opt.") else getattr(env.model, name)
            current = np.empty((env.num_envs, *np.shape(nominal)))
        _check_shape(f"model field {name!r}", value, current)
    _check_task_state(env, state["task_state"])
    if set(state["rng"]) != set(_generators(env)):
        raise ValueError(f"env state has random streams {sorted(state['rng'])}, this env {sorted(_generators(env))}")


def _check_task_state(env: "BatchedMujocoEnv", saved: dict[str, Any]) -> None:
    current = _task_state(env)
    if set(saved) != set(current):
        missing, extra = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
        raise ValueError(f"env state does not match this {env.task} env: missing {missing}, unknown {extra}")
    for name, value in current.items():
        if isinstance(value, dict):
            if not isinstance(saved[name], dict):
                raise ValueError(f"env state field {name!r} is not a dict of arrays")
            for key, item in saved[name].items():
                if key in value:
                    _check_shape(f"field {name}[{key!r}]", item, value[key])
        else:
            _check_shape(f"field {name!r}", saved[name], value)


def restore(env: "BatchedMujocoEnv", state: dict[str, Any]) -> None:
    """Load ``state`` into ``env`` in place (refused with a ValueError before any change if it
    does not fit), then recompute the derived quantities of the restored physics."""
    _check(env, state)
    if env.randomizer is not None:
        env.randomizer.load_state_dict(state["randomizer"])  # checks its state before changing any
    for name, value in state["physics"]["model_fields"].items():
        env.batch.expand(name)[...] = np.asarray(value)
    env.batch.state[...] = np.asarray(state["physics"]["state"])
    for name, value in _task_state(env).items():
        saved = state["task_state"][name]
        if isinstance(value, dict):
            for key, item in saved.items():
                if key in value:
                    value[key][...] = np.asarray(item)
                else:
                    value[key] = np.array(item, copy=True)
        else:
            value[...] = np.asarray(saved)
    for name, gen in _generators(env).items():
        gen.bit_generator.state = state["rng"][name]
    env.batch.forward(stage=_STAGE_VEL)
