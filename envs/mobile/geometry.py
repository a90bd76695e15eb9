"""Planar geometry of the MobilePick layout: points from polar coordinates, and the route that keeps
out of a disc (the carry route around the table): its length and the point a given distance along it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class _Route(NamedTuple):
    out: np.ndarray      # (k,) metres from a start inside the disc to its exit point (0 outside)
    u: np.ndarray        # (k, 2) the start (or its exit point) relative to the centre
    w: np.ndarray        # (k, 2) the goal relative to the centre
    clears: np.ndarray   # (k,) the straight segment u -> w keeps out of the disc
    leg_u: np.ndarray    # (k,) tangent length from u to the disc
    arc: np.ndarray      # (k,) arc length between the two tangent points (the shorter way around)
    leg_w: np.ndarray    # (k,) tangent length from the disc to w
    alpha_u: np.ndarray  # (k,) angle at the centre between u and its tangent point
    alpha_w: np.ndarray  # (k,) the same for w


def _route(start: np.ndarray, goal: np.ndarray, centre: np.ndarray, radius: float, exit_toward: np.ndarray) -> _Route:
    """The pieces of the shortest path from ``start`` to ``goal`` that keeps out of the disc."""
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
    alpha_u = np.arccos(np.minimum(radius / np.maximum(du, 1e-9), 1.0))
    alpha_w = np.arccos(np.minimum(radius / np.maximum(dw, 1e-9), 1.0))
    leg_u = np.sqrt(np.maximum(du ** 2 - radius ** 2, 0.0))
    leg_w = np.sqrt(np.maximum(dw ** 2 - radius ** 2, 0.0))
    arc = radius * np.maximum(angle - alpha_u - alpha_w, 0.0)
    return _Route(out, u, w, clears, leg_u, arc, leg_w, alpha_u, alpha_w)


def route_length(start: np.ndarray, goal: np.ndarray, centre: np.ndarray, radius: float,
                 exit_toward: np.ndarray) -> np.ndarray:
    """Length of the shortest planar path (k,) from ``start`` to ``goal`` (k, 2) that keeps out of
    the disc of ``radius`` around ``centre`` (k, 2): the straight segment where it clears the disc,
    else the tangent from each end and the arc between the tangent points. A start inside the disc
    (a cube over the table) first goes straight to the disc's edge on the side of ``exit_toward``
    (k, 2: the arm mount, the side the robot holds it from); ``goal`` lies outside."""
    r = _route(start, goal, centre, radius, exit_toward)
    return r.out + np.where(r.clears, np.linalg.norm(r.w - r.u, axis=-1), r.leg_u + r.arc + r.leg_w)


def route_point(start: np.ndarray, goal: np.ndarray, centre: np.ndarray, radius: float, exit_toward: np.ndarray,
                ahead: float) -> np.ndarray:
    """The point (k, 2) ``ahead`` metres along the route :func:`route_length` measures (a carrot to
    steer by, as pure pursuit does): on the straight segment where it clears the disc, else on the
    tangent, the arc (the shorter way around) or the final tangent; ``goal`` where the route is
    shorter than ``ahead``. A start inside the disc steers from its exit point on the disc's edge."""
    r = _route(start, goal, centre, radius, exit_toward)
    k = r.u.shape[0]

    def toward(a: np.ndarray, b: np.ndarray, length: np.ndarray) -> np.ndarray:
        gap = np.linalg.norm(b - a, axis=-1)
        return a + (b - a) * np.clip(length / np.maximum(gap, 1e-12), 0.0, 1.0)[:, None]

    sense = np.where(r.u[:, 0] * r.w[:, 1] - r.u[:, 1] * r.w[:, 0] >= 0.0, 1.0, -1.0)  # +1: counter-clockwise
    theta_a = np.arctan2(r.u[:, 1], r.u[:, 0]) + sense * r.alpha_u  # where the route meets the disc
    theta_b = np.arctan2(r.w[:, 1], r.w[:, 0]) - sense * r.alpha_w  # and leaves it
    rim = np.full(k, radius)
    on_arc = polar(rim, theta_a + sense * np.clip(ahead - r.leg_u, 0.0, r.arc) / radius)
    around = np.where((ahead <= r.leg_u)[:, None], toward(r.u, polar(rim, theta_a), np.full(k, ahead)),
                      np.where((ahead <= r.leg_u + r.arc)[:, None], on_arc,
                               toward(polar(rim, theta_b), r.w, ahead - r.leg_u - r.arc)))
    return centre + np.where(r.clears[:, None], toward(r.u, r.w, np.full(k, ahead)), around)


def polar(radius: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points (..., 2) at ``radius`` (...) and ``angle`` (..., rad) from the origin."""
    return radius[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


__all__ = ["polar", "route_length", "route_point"]
