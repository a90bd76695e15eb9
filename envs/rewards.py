"""Reward terms as data: small named term functions, and the weights that turn them into a reward.

A task's ``_reward_and_termination`` returns its terms *unweighted*, name -> (N,) float64; the env
core multiplies each by its weight from ``env.rewards`` and sums them (:class:`RewardWeights`), and
reports each term's weighted episode sum as ``reward/<term>``. The task's ``rewards`` config model
is the one list of its terms: field names are the term names, field defaults the default weights.

The term functions are shared between tasks wherever they compute the same thing (progress toward
a goal, shaped closeness, a success bonus, penalties).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from pydantic import BaseModel

# ---------------------------------------------------------------------------------------------
# term functions (unweighted; a weight from config scales each)


def reward_success(success: np.ndarray) -> np.ndarray:
    """1 on the step the task's success condition is met."""
    return success.astype(np.float64)


def reward_slack(num_envs: int) -> np.ndarray:
    """1 every step (a negative weight makes the robot hurry)."""
    return np.ones(num_envs)


def reward_progress(prev_distance: np.ndarray, distance: np.ndarray,
                    gate: np.ndarray | float = 1.0) -> np.ndarray:
    """Decrease of a distance over the step (metres), times ``gate`` (e.g. only while grasped)."""
    return (prev_distance - distance) * gate


def reward_velocity_toward(velocity_xy: np.ndarray, position_xy: np.ndarray, goal_xy: np.ndarray,
                           gate: np.ndarray | float = 1.0) -> np.ndarray:
    """Planar velocity (m/s) along the direction from ``position_xy`` to ``goal_xy``, times ``gate``."""
    direction = goal_xy - position_xy
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-6)
    return (velocity_xy * direction).sum(-1) * gate


def reward_collision(bumper_force: np.ndarray, threshold: float) -> np.ndarray:
    """1 while the bumper presses against something with more than ``threshold`` newtons."""
    return (bumper_force > threshold).astype(np.float64)


def reward_contact(touching: np.ndarray) -> np.ndarray:
    """1 while a body touches what it must not (MobilePick: the chassis and the table or a wall)."""
    return touching.astype(np.float64)


def reward_reach(distance: np.ndarray, std: float) -> np.ndarray:
    """Shaped closeness in [0, 1]: ``1 - tanh(distance / std)``."""
    return 1.0 - np.tanh(distance / std)


def reward_grasp(grasped: np.ndarray) -> np.ndarray:
    """1 while the object is grasped."""
    return grasped.astype(np.float64)


def reward_lift(height: np.ndarray, grasped: np.ndarray, lift_height: float) -> np.ndarray:
    """Height of the object above its resting height, saturating at ``lift_height``, only while
    grasped (a cube knocked upward earns nothing)."""
    return grasped * np.clip(height / lift_height, 0.0, 1.0)


def reward_square_pads(yaw_in_hand: np.ndarray, closeness: np.ndarray) -> np.ndarray:
    """How square the finger pads stand to the object's sides, ``(1 + cos 4 yaw) / 2`` (1 square, 0 at
    45 degrees, where a pinch closes on edges and the object turns out of it), for ``yaw_in_hand`` the
    object's yaw about the hand's approach axis, times the hand's ``closeness`` to the object (MobilePick:
    until the grasp; paid while holding too, it slowed the carry)."""
    return 0.5 * (1.0 + np.cos(4.0 * yaw_in_hand)) * closeness


def reward_centred_grip(offset: np.ndarray, height: np.ndarray, grasped: np.ndarray, lift_height: float,
                        std: float) -> np.ndarray:
    """How centred a lifted object sits in the grip: ``1 - tanh(offset / std)`` for ``offset``, the
    metres from the object's centre to the middle of the finger pads, times the lift term's
    saturating height (0 on the table or when not held). A pinch through the centre holds; one near
    an edge or the fingertips lets the object pivot out."""
    return reward_lift(height, grasped, lift_height) * (1.0 - np.tanh(offset / std))


def reward_carry_height(height: np.ndarray, grasped: np.ndarray, limit: float) -> np.ndarray:
    """Metres the held object is above ``limit`` over its resting height (0 at or below it, or
    when not held): weighted negative, it keeps a carried object low."""
    return grasped * np.maximum(height - limit, 0.0)


def reward_carry_speed(speed: np.ndarray, grasped: np.ndarray, limit: float) -> np.ndarray:
    """m/s the held object moves faster than ``limit`` (0 at or below it, or when not held):
    weighted negative, it keeps a carry gentle (arm swings fling the object out of the grip)."""
    return grasped * np.maximum(speed - limit, 0.0)


def reward_object_push(speed_xy: np.ndarray, free_on_table: np.ndarray) -> np.ndarray:
    """Horizontal speed (m/s) of an object sliding on the table outside the grasp (``free_on_table``:
    not grasped, at its resting height): weighted negative, it charges pushing the object along the
    table, which is how fumbled grasps knock it off."""
    return free_on_table * speed_xy


def reward_drop(lost: np.ndarray, in_zone: np.ndarray) -> np.ndarray:
    """1 at the step a lifted object leaves the gripper outside the target zone (weighted negative:
    let go only where it belongs)."""
    return (lost & ~in_zone).astype(np.float64)


def reward_object_lost(lost: np.ndarray) -> np.ndarray:
    """1 at the step the object is lost for the episode (the ``thrown_or_dropped`` metric's event:
    come to rest outside the target zone after leaving the gripper, or knocked off the table)."""
    return lost.astype(np.float64)


def reward_place(distance: np.ndarray, std: float, gate: np.ndarray | float = 1.0) -> np.ndarray:
    """Object-target closeness ``1 - tanh(distance / std)``, times ``gate`` (PickPlace: grasped)."""
    return gate * (1.0 - np.tanh(distance / std))


def reward_action_rate(action: np.ndarray, prev_action: np.ndarray) -> np.ndarray:
    """Squared change of the normalised action since the previous step."""
    return np.square(action - prev_action).sum(axis=-1)


def reward_joint_limit(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    """How far (rad) joints sit inside ``margin`` of their limits, summed over the joints."""
    return (np.maximum(lo + margin - q, 0.0) + np.maximum(q - (hi - margin), 0.0)).sum(axis=-1)


# ---------------------------------------------------------------------------------------------
# contact bookkeeping that goes with the collision term


def count_collisions(touching: np.ndarray, in_collision: np.ndarray, collisions: np.ndarray) -> None:
    """Count a collision where contact starts (``touching`` now, not at the previous step), in
    place: ``collisions`` += new contacts, ``in_collision`` := ``touching``."""
    collisions += touching & ~in_collision
    in_collision[:] = touching


# ---------------------------------------------------------------------------------------------
# weights


class RewardWeights:
    """The weights of a task's reward terms, in the order of its ``rewards`` config model.

    :meth:`weigh` checks the task's terms against the weights (a term without a weight, or a
    weight without a term, is a programming error), and returns the weighted terms in that order.
    """

    def __init__(self, rewards: BaseModel, task: str):
        self.task = task
        self.weights = {name: float(getattr(rewards, name)) for name in type(rewards).model_fields}
        self.names = tuple(self.weights)

    def check(self, terms: Mapping[str, np.ndarray], num_envs: int) -> None:
        """RuntimeError unless ``terms`` has exactly the weighted names, each of shape (num_envs,)."""
        if terms.keys() != self.weights.keys():
            missing = [n for n in self.names if n not in terms]
            unknown = [n for n in terms if n not in self.weights]
            raise RuntimeError(f"{self.task}: reward terms {sorted(terms)} do not match the weights {list(self.names)} "
                               f"(no term for {missing}, no weight for {unknown})")
        for name, value in terms.items():
            if np.shape(value) != (num_envs,):
                raise RuntimeError(f"{self.task}: reward term {name!r} has shape {np.shape(value)}, "
                                   f"expected ({num_envs},)")

    def set_weight(self, name: str, weight: float) -> None:
        """Change one term's weight from the next step on (a constraint's multiplier)."""
        if name not in self.weights:
            raise KeyError(f"{self.task}: no reward term {name!r} (terms: {', '.join(self.names)})")
        self.weights[name] = float(weight)

    def weigh(self, terms: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """``weight * term`` for every term, in weight order."""
        return [weight * terms[name] for name, weight in self.weights.items()]

    @staticmethod
    def total(weighted: list[np.ndarray], num_envs: int) -> np.ndarray:
        """The reward: the weighted terms summed left to right (the first one is not added to 0,
        so the sum is bit for bit ``w1 * t1 + w2 * t2 + ...``)."""
        if not weighted:
            return np.zeros(num_envs)
        reward = weighted[0]
        for value in weighted[1:]:
            reward = reward + value
        return reward
