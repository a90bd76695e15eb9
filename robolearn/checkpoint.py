"""Checkpoints: written atomically (temp file + rename), read back with one-line errors.

A checkpoint is one ``torch.save`` file holding a dict: ``model``, ``algorithm`` (optimiser, lr),
``iteration``, ``env_steps``, ``wall_s``, ``rng`` (torch, numpy env, python), ``config`` (the
resolved experiment as a plain dict) and ``format``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "robolearn.checkpoint/1"
CHECKPOINT_DIR = "checkpoints"
LATEST = "last.pt"


class CheckpointError(RuntimeError):
    """A missing, unreadable or foreign checkpoint (one-line message naming the path)."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({**state, "format": FORMAT}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many types for truncated / foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a robolearn checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    missing = [key for key in ("model", "algorithm", "iteration", "config") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    state["path"] = str(path)
    return state
