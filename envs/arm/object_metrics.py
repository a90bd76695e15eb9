"""What the arm tasks' episodes did with the object: grasp, lift, carry, drops, throws.

:class:`ObjectMetrics` is a part of :class:`~robolearn.envs.arm.base.ArmTaskEnv`: it keeps the
per-env bookkeeping (numpy arrays on the env, so ``state_dict`` saves them), updates it once per
control step from the grasp indicator and reports ``time_to_grasp``, ``max_lift``,
``max_carry_height``, ``drops``, ``thrown_or_dropped`` and ``knocked_off`` (the table in
:mod:`robolearn.envs.arm.base` says what each means). The terms they use: "lifted" is the
object's centre more than :data:`LIFTED` above its resting height on the table; "off the table"
its centre more than :data:`OFF_TABLE` below the table top while not in the gripper (the episode
then ends: the arm cannot pick it up from the floor); "at rest" slower than :data:`AT_REST_SPEED`
and touching no grasp geom; a "release" the object leaving the gripper while lifted, settled where
it comes to rest (a grasp regained first cancels it); the target zone is the task's
(:meth:`~ObjectMetrics.in_target_zone`): within the success radius of the target (Push,
PickPlace), the drop zone (MobilePick).
"""

from __future__ import annotations

import numpy as np

#: metres above its resting height at which the object counts as lifted
LIFTED = 0.02
#: metres below the table top at which an object not in the gripper is off the table
OFF_TABLE = 0.05
#: m/s below which a released object has come to rest
AT_REST_SPEED = 0.05
#: every metric :class:`ObjectMetrics` can report, in order (a task lists those it reports in ``task_metrics``)
OBJECT_METRICS = ("time_to_grasp", "max_lift", "drops", "max_carry_height", "thrown_or_dropped", "knocked_off")


class ObjectMetrics:
    """The object's episode metrics (a base class of ``ArmTaskEnv``; see the module docstring)."""

    def _init_object_metrics(self) -> None:
        n = self.num_envs
        self.grasp_step = np.full(n, -1, np.int64)
        self.max_lift = np.zeros(n)
        self.max_carry_height = np.zeros(n)
        self.drops = np.zeros(n, np.int64)
        self.lifted_grasp = np.zeros(n, bool)  # grasped and lifted at the last step
        self.off_table = np.zeros(n, bool)
        self.released = np.zeros(n, bool)  # left the gripper while lifted, not at rest yet
        self.thrown_or_dropped = np.zeros(n, bool)
        self.knocked_off = np.zeros(n, bool)  # off the table without having left the gripper in the air
        self.lost_grasp = np.zeros(n, bool)  # this step: the object left the gripper while lifted
        self.object_lost = np.zeros(n, bool)  # this step: the episode became ``thrown_or_dropped``

    def _reset_object_metrics(self, ids: np.ndarray) -> None:
        self.grasp_step[ids] = -1
        self.max_lift[ids] = 0.0
        self.max_carry_height[ids] = 0.0
        self.drops[ids] = 0
        self.lifted_grasp[ids] = False
        self.off_table[ids] = False
        self.released[ids] = False
        self.thrown_or_dropped[ids] = False
        self.knocked_off[ids] = False
        self.lost_grasp[ids] = False
        self.object_lost[ids] = False

    def in_target_zone(self) -> np.ndarray:
        """Whether each env's object is in the task's target zone (N,): within the success radius
        of the target (MobilePick: its drop zone)."""
        return np.linalg.norm(self.target - self.object_pos, axis=-1) < self.cfg.success_radius

    def _track_object(self, grasped: np.ndarray, lift: np.ndarray, pad_forces: np.ndarray) -> None:
        """One control step of bookkeeping: ``grasped`` (N,) bool, ``lift`` (N,) metres above the
        resting height, ``pad_forces`` (N, k) the grasp geoms' contact forces."""
        first = grasped & (self.grasp_step < 0)
        self.grasp_step[first] = self.episode_step[first]
        self.max_lift = np.maximum(self.max_lift, lift)
        self.max_carry_height = np.maximum(self.max_carry_height, np.where(grasped, lift, 0.0))
        lost = self.lifted_grasp & ~grasped & (lift > LIFTED)
        self.lost_grasp = lost
        fell = (self.object_pos[:, 2] < self.table_z - OFF_TABLE) & ~grasped & ~self.off_table & self.uses_object
        self.drops += lost | fell
        self.off_table |= fell
        self.lifted_grasp = grasped & (lift > LIFTED)
        # a release is settled where the object comes to rest; caught again, it is no release
        self.released = (self.released | lost) & ~grasped
        speed = np.linalg.norm(self.qvel[:, self._obj_dof:self._obj_dof + 3], axis=-1)
        landed = self.released & (speed < AT_REST_SPEED) & (pad_forces.max(axis=-1) <= 0.0)
        was_lost = self.thrown_or_dropped.copy()
        self.thrown_or_dropped |= landed & ~self.in_target_zone()
        self.released &= ~landed
        knocked = fell & ~self.released  # knocked off, not fallen from the gripper
        self.knocked_off |= knocked
        self.thrown_or_dropped |= knocked
        self.object_lost = self.thrown_or_dropped & ~was_lost

    def _object_metrics(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics of :data:`OBJECT_METRICS` that the task lists in ``task_metrics``, for the
        finished envs ``ids`` (a release still in the air is settled where the object is, unless every
        grasp geom still presses it: the indicator let go of an object the gripper holds)."""
        steps = np.where(self.grasp_step[ids] >= 0, self.grasp_step[ids], self.max_episode_steps)
        held = self.pad_forces()[ids].min(axis=-1) > 0.0
        outcome = self.thrown_or_dropped[ids] | (self.released[ids] & ~held & ~self.in_target_zone()[ids])
        values = {"time_to_grasp": steps * self.control_dt, "max_lift": np.maximum(self.max_lift[ids], 0.0),
                  "drops": self.drops[ids].astype(np.float64), "max_carry_height": self.max_carry_height[ids],
                  "thrown_or_dropped": outcome.astype(np.float64),
                  "knocked_off": self.knocked_off[ids].astype(np.float64)}
        return {name: value for name, value in values.items() if name in self.task_metrics}
