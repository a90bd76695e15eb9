"""Bounded rejection sampling of scene layouts, batched over envs.

Every layout sampler (Nav's start and goal, the arm tasks' table targets, MobilePick's table,
start and zone) draws a block of candidates per env, keeps the first one that satisfies its
constraints and draws again only for the envs that had none. :func:`rejection_sample` runs that
loop with a bound: a layout that cannot be sampled (an impossible config, or layout parameters
that randomization pushed out of what fits) raises a one-line error naming the config keys instead
of spinning forever.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

#: rounds of candidates per env before a sampler gives up
MAX_ROUNDS = 1000


class LayoutError(RuntimeError):
    """No layout satisfying the constraints was found within the bound (message names the keys)."""


def first_valid(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True per row of (n, c) and whether the row has one."""
    return valid.argmax(axis=1), valid.any(axis=1)


def rejection_sample(k: int, shapes: Sequence[tuple[int, ...]],
                     draw: Callable[[np.ndarray], tuple[Sequence[np.ndarray], np.ndarray]],
                     failure: Callable[[int, int], str], rounds: int = MAX_ROUNDS) -> list[np.ndarray]:
    """Sample one layout per env for ``k`` envs.

    ``draw(rows)`` gets the indices (into 0..k-1) of the envs still without a layout and returns
    candidate arrays, one per output, each (len(rows), c, *shape), and ``valid`` (len(rows), c).
    Each env keeps its first valid candidate. After ``rounds`` rounds the envs still without one
    raise :class:`LayoutError` with ``failure(row, tries)`` (``row``: the first such env,
    ``tries``: candidates drawn for it).
    """
    out = [np.zeros((k, *shape)) for shape in shapes]
    todo = np.arange(k)
    tries = 0
    for _ in range(rounds):
        if not todo.size:
            return out
        candidates, valid = draw(todo)
        tries += valid.shape[1]
        idx, ok = first_valid(valid)
        rows = np.arange(todo.size)
        for target, cand in zip(out, candidates):
            target[todo[ok]] = cand[rows, idx][ok]
        todo = todo[~ok]
    if not todo.size:
        return out
    raise LayoutError(failure(int(todo[0]), tries))
