"""Planar geometry of the MobilePick layout: points from polar coordinates and the length of a
route that keeps out of a disc (the carry route around the table)."""

from __future__ import annotations

import numpy as np


def route_length(start: np.ndarray, goal: np.ndarray, centre: np.ndarray, radius: float,
                 exit_toward: np.ndarray) -> np.ndarray:
    """Length of the shortest planar path (k,) from ``start`` to ``goal`` (k, 2) that keeps out of
    the disc of ``radius`` around ``centre`` (k, 2): the straight segment where it clears the disc,
    else the tangent from each end and the arc between the tangent points. A start inside the disc
    (a cube over the table) first goes straight to the disc's edge on the side of ``exit_toward``
    (k, 2: the arm mount, the side the robot holds it from); ``goal`` lies outside."""
    u, w = start - centre, goal - centre
    inside = np.linalg.norm(u, axis=-1) < radius
    side = exit_toward - centre
    edge = radius * side / np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-9)
    out = np.where(inside, np.linalg.norm(edge - u, axis=-1), 0.0)
    u = np.where(inside[:, None], edge, u)
    du, dw = np.linalg.norm(u, axis=-1), np.linalg.norm(w, axis=-1)
    segment = w - u
    along = np.clip(-(u * segment).sum(-1) / np.maximum((segment ** 2).sum(-1), 1e-12), 0.0, 1.0)
    clears = np.linalg.norm(u + along[:, None] * segment, axis=-1) >= radius - 1e-9
    angle = np.arccos(np.clip((u * w).sum(-1) / np.maximum(du * dw, 1e-12), -1.0, 1.0))
    tangents = (np.arccos(np.minimum(radius / np.maximum(du, 1e-9), 1.0))
                + np.arccos(np.minimum(radius / np.maximum(dw, 1e-9), 1.0)))
    around = (np.sqrt(np.maximum(du ** 2 - radius ** 2, 0.0)) + np.sqrt(np.maximum(dw ** 2 - radius ** 2, 0.0))
              + radius * np.maximum(angle - tangents, 0.0))
    return out + np.where(clears, np.linalg.norm(segment, axis=-1), around)


def polar(radius: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points (..., 2) at ``radius`` (...) and ``angle`` (..., rad) from the origin."""
    return radius[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


__all__ = ["polar", "route_length"]
