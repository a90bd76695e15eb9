"""Checkpoints: written atomically, read back with ``weights_only=True`` and one-line errors.

A checkpoint is one ``torch.save`` file of plain data (tensors, numbers, strings, lists, dicts;
numpy arrays are stored as tensors), so loading one cannot run code. It holds:

* ``format`` (``robolearn.checkpoint/2``), ``config`` (the resolved experiment as a plain dict),
  ``layout`` (task, observation terms per group with widths and shapes, action names, policy class);
* ``obs_dims``, ``obs_shapes`` (group -> term -> shape as a list, ``[H, W]`` for an image) and
  ``action_dim``: what :func:`load_policy` rebuilds the network from;
* ``model`` (the policy's ``state_dict``, normalisers included), ``algorithm`` (optimiser, lr),
  ``iteration``, ``env_steps``, ``wall_s``, ``world_size`` and ``episodes`` (the rolling window of
  finished episodes the logs average over);
* ``policy_average`` (None unless ``trainer.policy_average``): ``updates`` and ``model``, the
  policy's ``state_dict`` with the moving average's weights, which :func:`load_policy` gives eval
  and export (:mod:`robolearn.models.average`);
* ``ranks``: per rank, what continues its run exactly: ``rng`` (torch, numpy, python), ``env``
  (the env's ``state_dict``: simulations, episodes in progress, randomizer), ``obs`` and
  ``policy_state`` (the observation and policy state the next rollout starts from).

Format 1 checkpoints (no ``ranks``, ``algorithm.num_steps`` in the config) still load: their config
is migrated and a resumed run restarts its episodes. Checkpoints without ``obs_shapes`` (written
before image terms existed) load with every group read as one vector.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.config import Config, ConfigError, validate_config
from robolearn.files import write_atomic
from robolearn.models import Policy, build_policy

FORMAT = "robolearn.checkpoint/2"
READABLE_FORMATS = ("robolearn.checkpoint/1", FORMAT)
CHECKPOINT_DIR = "checkpoints"
LATEST = "last.pt"


class CheckpointError(RuntimeError):
    """A missing, unreadable, foreign or incompatible checkpoint (one-line message naming the path)."""


# ------------------------------------------------------------------ plain data
def to_plain(tree: Any) -> Any:
    """``tree`` with numpy arrays as tensors and numpy scalars as Python numbers (torch's
    ``weights_only`` loader reads nothing else)."""
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree).copy())
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        return {key: to_plain(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_plain(value) for value in tree)
    return tree


def to_numpy(tree: Any) -> Any:
    """The inverse of :func:`to_plain` for data that was numpy: tensors back to arrays."""
    if isinstance(tree, torch.Tensor):
        return tree.numpy()
    if isinstance(tree, dict):
        return {key: to_numpy(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_numpy(value) for value in tree)
    return tree


# ------------------------------------------------------------------ files
def seed_everything(seed: int) -> None:
    """Seed the process-wide random streams (Python, NumPy, torch)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The process-wide random streams' state, as checkpoint data (:func:`set_rng_state` restores it)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), position, has_gauss, cached],
            "python": random.getstate(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, position, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), position, has_gauss, cached))
    random.setstate(rng["python"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash mid-write never leaves a truncated file), with
    the usual umask-respecting mode; a file-system error is a one-line :class:`FileWriteError`."""
    plain = to_plain({**state, "format": FORMAT})
    return write_atomic(path, lambda handle: torch.save(plain, handle))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (-> its ``checkpoints/last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / CHECKPOINT_DIR / LATEST, path / LATEST):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{path}: no checkpoint in this directory (expected {CHECKPOINT_DIR}/{LATEST})")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (file or run directory) written by :func:`save_checkpoint`."""
    path = resolve_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower():  # anything but tensors and plain data
            raise CheckpointError(f"{path}: not a readable checkpoint (it holds Python objects, not only tensors and "
                                  "plain data; refused, since loading it could run code)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (UnpicklingError: {_first_line(err)})") from None
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a robolearn checkpoint (format {found!r})")
    missing = [key for key in ("model", "algorithm", "iteration", "config") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if state["format"] != FORMAT:
        _migrate_format_1(state)
    state["path"] = str(path)
    return state


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0][:120]


def _migrate_format_1(state: dict[str, Any]) -> None:
    """Format 1 kept the rollout length in ``algorithm.num_steps``, called the trainer's section
    ``runner`` (with an ``eval_episodes`` key nothing read), and had no per-rank run state."""
    config = state["config"]
    trainer = config.pop("runner", None) or config.setdefault("trainer", {})
    trainer.pop("eval_episodes", None)
    num_steps = config.get("algorithm", {}).pop("num_steps", None)
    if num_steps is not None:
        trainer["num_steps"] = num_steps
    config["trainer"] = trainer
    state.setdefault("ranks", [])


def checkpoint_config(state: dict[str, Any]) -> Config:
    """The experiment a loaded checkpoint was trained with (one-line error if it no longer validates)."""
    try:
        return validate_config(state["config"], source=f"{state['path']} (its config)")
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def load_policy(path: str | Path, device: str | torch.device = "cpu",
                average: bool = True) -> tuple[Policy, Config, dict[str, Any]]:
    """Policy (in eval mode), config and raw state of a checkpoint (file or run directory). The
    policy has the run's averaged weights where it kept an average (``trainer.policy_average``),
    unless ``average`` is False: then, as without one, the last iteration's."""
    state = load_checkpoint(path, map_location=device)
    config = checkpoint_config(state)
    policy = build_policy(config.policy, state["obs_dims"], state["action_dim"], state.get("obs_shapes"))
    load_policy_state(policy, state, average=average)
    return policy.to(device).eval(), config, state


def load_policy_state(policy: Policy, state: dict[str, Any], average: bool = False) -> None:
    """Load the checkpoint's parameters (the average's, with ``average`` and where the run kept
    one); a mismatch is one line, not torch's list of keys."""
    averaged = state.get("policy_average") if average else None
    try:
        policy.load_state_dict(state["model"] if averaged is None else averaged["model"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{state['path']}: the parameters do not fit {type(policy).__name__} ({detail})") from None


# ------------------------------------------------------------------ resuming
def obs_shapes(obs_layout: dict) -> dict[str, dict[str, list[int]]]:
    """An env's observation shapes as plain data: group -> term -> shape (``[w]`` or ``[H, W]``)."""
    return {group: {term: list(shape) for term, shape in layout.shapes.items()} for group, layout in obs_layout.items()}


def run_layout(task: str, obs_layout: dict, action_names: list[str], policy_class: str) -> dict[str, Any]:
    """What a checkpoint's policy was trained for: task, observation terms per group (widths and
    shapes), actions, policy."""
    return {"task": task, "obs": {group: dict(layout.widths) for group, layout in obs_layout.items()},
            "obs_shapes": obs_shapes(obs_layout), "actions": list(action_names), "policy_class": policy_class}


def check_resumable(state: dict[str, Any], config: Config, layout: dict[str, Any]) -> None:
    """Refuse (one line naming what differs) to resume ``state`` with another task, observation or
    action layout, policy architecture, or any setting a resumed run cannot change: only the trainer
    keys of ``TrainerConfig.RESUMABLE``, ``device`` and ``env.nthread`` may differ."""
    where = f"--resume {state['path']}"
    saved = state.get("layout")
    if saved is not None:
        for key, what in (("task", "task"), ("obs", "observation layout"), ("obs_shapes", "observation shapes"),
                          ("actions", "actions"), ("policy_class", "policy.class")):
            if key not in saved or saved[key] == layout[key]:  # obs_shapes: not in checkpoints from before images
                continue
            if key in ("obs", "obs_shapes"):
                term, was, now = _term_difference(saved[key], layout[key])
                raise CheckpointError(f"{where}: the checkpoint's {what} differs at {term}: {_short(was)} in the run, "
                                      f"{_short(now)} here; start a new run instead")
            raise CheckpointError(f"{where}: the checkpoint's {what} is {_short(saved[key])}, this config's is "
                                  f"{_short(layout[key])}; start a new run instead")
    allowed = {f"trainer.{key}" for key in type(config.trainer).RESUMABLE} | {"device", "env.nthread", "experiment"}
    old, new = _flatten(state["config"]), _flatten(config.to_dict())
    for key in sorted(set(old) | set(new)):
        if key not in old and new[key] == _field_default(config, key):  # a key newer than the run, at its default
            continue
        if key not in allowed and old.get(key) != new.get(key):
            raise CheckpointError(f"{where}: {key} is {old.get(key, '<unset>')!r} in the run, {new.get(key, '<unset>')!r} "
                                  f"here; a resumed run keeps its settings (only trainer budgets and intervals, device "
                                  f"and env.nthread may change): start a new run to change it")


_NO_DEFAULT = object()


def _field_default(config: Config, key: str) -> Any:
    """The default of the config field at dotted ``key`` (a sentinel where it has none)."""
    model, *path, name = [config, *key.split(".")]
    for part in path:
        model = getattr(model, part, None)
    field = getattr(type(model), "model_fields", {}).get(name)
    if field is None or field.is_required():
        return _NO_DEFAULT
    return field.get_default(call_default_factory=True)


def _term_difference(saved: dict[str, dict], new: dict[str, dict]) -> tuple[str, Any, Any]:
    """The first ``group.term`` whose entry differs between two group -> term -> value layouts
    (or the group, when only the order of its terms differs), with both entries."""
    for group in dict.fromkeys([*saved, *new]):
        old_terms, new_terms = saved.get(group, {}), new.get(group, {})
        for term in dict.fromkeys([*old_terms, *new_terms]):
            if old_terms.get(term, "<none>") != new_terms.get(term, "<none>"):
                return f"{group}.{term}", old_terms.get(term, "<none>"), new_terms.get(term, "<none>")
        if list(old_terms) != list(new_terms):
            return group, list(old_terms), list(new_terms)
    return "<root>", saved, new


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def adr_ranges(state: dict[str, Any]) -> list[list[float]] | None:
    """The ADR ranges a checkpoint's run had reached (rank 0's), or None without ADR."""
    ranks = state.get("ranks") or []
    randomizer = (ranks[0].get("env") or {}).get("randomizer") if ranks else state.get("randomization")
    ranges = ((randomizer or {}).get("adr") or {}).get("ranges")
    return None if ranges is None else np.asarray(to_numpy(ranges), np.float64).reshape(-1, 2).tolist()
