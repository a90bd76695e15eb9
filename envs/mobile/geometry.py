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


def route_point(start: np.ndarray, goal: np.ndarray, centre: np.ndarray, radius: float, exit_toward: np.ndarray,
                ahead: float) -> np.ndarray:
    """The point (k, 2) ``ahead`` metres along the route :func:`route_length` measures (a carrot to
    steer by, as pure pursuit does): on the straight segment where it clears the disc, else on the
    tangent, the arc (the shorter way around) or the final segment; ``goal`` where the route is
    shorter than ``ahead``. A start inside the disc steers by its exit point on the disc's edge."""
    u, w = start - centre, goal - centre
    side = exit_toward - centre
    edge = radius * side / np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-9)
    inside = np.linalg.norm(u, axis=-1) < radius
    u = np.where(inside[:, None], edge, u)
    du, dw = np.linalg.norm(u, axis=-1), np.linalg.norm(w, axis=-1)
    segment = w - u
    along = np.clip(-(u * segment).sum(-1) / np.maximum((segment ** 2).sum(-1), 1e-12), 0.0, 1.0)
    clears = np.linalg.norm(u + along[:, None] * segment, axis=-1) >= radius - 1e-9

    def toward(a: np.ndarray, b: np.ndarray, length: np.ndarray) -> np.ndarray:
        gap = np.linalg.norm(b - a, axis=-1, keepdims=True)
        return a + (b - a) * np.clip(length[:, None] / np.maximum(gap, 1e-12), 0.0, 1.0)

    sense = np.where(u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0] >= 0.0, 1.0, -1.0)  # +1: around counter-clockwise
    alpha_u = np.arccos(np.minimum(radius / np.maximum(du, 1e-9), 1.0))
    alpha_w = np.arccos(np.minimum(radius / np.maximum(dw, 1e-9), 1.0))
    angle = np.arccos(np.clip((u * w).sum(-1) / np.maximum(du * dw, 1e-12), -1.0, 1.0))
    leg = np.sqrt(np.maximum(du ** 2 - radius ** 2, 0.0))
    arc = radius * np.maximum(angle - alpha_u - alpha_w, 0.0)
    theta_a = np.arctan2(u[:, 1], u[:, 0]) + sense * alpha_u
    theta_b = np.arctan2(w[:, 1], w[:, 0]) - sense * alpha_w
    on_arc = theta_a + sense * np.clip(ahead - leg, 0.0, arc) / radius
    point = np.where((ahead <= leg)[:, None], toward(u, polar(np.full_like(du, radius), theta_a), np.full_like(du, ahead)),
                     np.where((ahead <= leg + arc)[:, None], polar(np.full_like(du, radius), on_arc),
                              toward(polar(np.full_like(du, radius), theta_b), w, ahead - leg - arc)))
    point = np.where(clears[:, None], toward(u, w, np.full_like(du, ahead)), point)
    return centre + point


def polar(radius: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points (..., 2) at ``radius`` (...) and ``angle`` (..., rad) from the origin."""
    return radius[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


__all__ = ["polar", "route_length", "route_point"]
