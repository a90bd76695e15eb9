"""``robolearn/MobilePick-v0``: drive to a table, pick the cube, bring it to a drop zone.

The mobile manipulator (a differential-drive base spec, ``env.base``, default the bundled
``diffdrive_large``, carrying the arm spec ``env.robot`` at its ``arm_mount`` site) starts at a
random pose in a walled 4 m x 4 m arena; a table with the cube on it and a drop zone
on the floor are placed at random, ``table_distance`` and ``zone_distance`` away.
Success: the cube held in the gripper with its centre over the drop zone (within ``zone_radius`` in
the floor plane) for ``hold_steps`` consecutive steps; the zone never overlaps the table. The
episode runs on to its time limit, except that a cube off the table (its centre more than 5 cm
below the table top while not in the gripper: knocked or dropped to the floor, from where the arm
cannot pick it up) ends it at once as a failure, counted as a drop.

Actions: left and right wheel velocity (``max_wheel_speed`` rad/s at 1), then the arm's actions
(``env.action_space``: joint deltas, or end-effector deltas in the arm-base frame, which moves with
the base) and gripper command as in the table-top tasks. Observations: the arm terms in the arm-base
frame (the ``target`` term is the drop zone relative to the cube), plus ``object_in_hand`` (the
cube's centre minus the grasp point, in the end effector's frame), the base's forward speed and
yaw rate and the table's centre in the base frame; ``critic`` adds the base pose and bumper
force. Reward terms (``MobilePickRewards``): the navigation terms of DESIGN section 2 (decrease
of the distance from the arm mount to the cube, velocity toward it, both until the cube is
grasped and only beyond ``reach_standoff``, where the arm reaches it: nothing to gain by pushing
into the table), then the pick terms (reach; square_pads, how square the pads stand to the cube's sides
times the reach closeness, until the grasp; grasp, lift gated by the grasp; centred_grip, lift times the
closeness of the cube's centre to the middle of the finger pads, where a pinch holds it), then carrying
(decrease of the cube's route to the zone, around the table where the straight line crosses it,
as PointNav rewards the geodesic distance; the straight cube-zone closeness; both gated by a
lifted grasp, the cube held over 2 cm above its resting height, so that sliding it over the table
top earns nothing; penalties on a held cube's height above ``carry_height_limit`` and its speed above
``carry_speed_limit``; ``object_push``, the speed of a free cube sliding on the table (fumbled
grasps push it off); one for letting a lifted cube go outside the zone; ``object_lost`` at the step
the episode becomes ``thrown_or_dropped``: the cube at rest outside the zone or knocked off the
table), success bonus, action-rate, joint-limit, collision (the bumper pressing on anything), bump
(the chassis touching the table or a wall, per step) and bump_onset (per bump the ``bumps`` metric
counts: the cost a constraint on that metric should adapt) penalties.

Episode metrics: the arm tasks' (:mod:`robolearn.envs.arm.base`; the target zone is the drop zone,
so a cube let go over it is not ``thrown_or_dropped``) and

==============  ==========================================================================
``collisions``  bumper contacts with anything (the collision term's), counted at their onset
``bumps``       contacts of the base's chassis with the table or a wall (contact sensors),
                counted at their onset after at least ``BUMP_CLEAR_STEPS`` clear of them
==============  ==========================================================================

The video camera (``follow``) keeps its offset from the robot and looks at it from above, from a
fixed direction in the world (the arena's -x, -y side), so the view does not spin as it turns.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robolearn.envs.arm.base import ArmTaskEnv, to_frame
from robolearn.envs.arm.object_metrics import LIFTED
from robolearn.envs.diffdrive.nav import yaw_of
from robolearn.envs.mobile.config import (
    CLOSEST_START,
    MAX_LAYOUT_DISTANCE,
    ROBOT_RADIUS,
    TABLE_HALF,
    MobilePickConfig,
    closest_zone,
)
from robolearn.envs.mobile.geometry import polar, route_length, route_point
from robolearn.envs.rewards import (
    count_collisions,
    reward_collision,
    reward_contact,
    reward_drop,
    reward_object_lost,
    reward_carry_height,
    reward_carry_speed,
    reward_centred_grip,
    reward_object_push,
    reward_grasp,
    reward_lift,
    reward_place,
    reward_progress,
    reward_reach,
    reward_square_pads,
    reward_success,
    reward_velocity_toward,
)
from robolearn.envs.robots import BaseHandles, RobotSpec, RobotSpecError, add_look_at_camera
from robolearn.envs.sampling import rejection_sample

#: the scene's geoms a bump of the base is counted against: the table and the arena's walls
BUMP_GEOMS = ("table", "wall_n", "wall_s", "wall_e", "wall_w")
#: control steps clear of them before a contact counts as a new bump (a bounce while pushing does not)
BUMP_CLEAR_STEPS = 3
#: metres from its resting height within which a free cube counts as on the table (the object_push term)
ON_TABLE = 0.01
#: rad off facing the table for an episode that starts beside it holding the cube (``carry_start``)
CARRY_START_HEADING = 0.3
#: metres from the table centre: the disc the carry route goes around (how close the base's centre
#: comes to the middle of a table side), so that a zone behind the table is not reached through it
ROUTE_RADIUS = TABLE_HALF + ROBOT_RADIUS


class MobilePickEnv(ArmTaskEnv):
    """Batched ``robolearn/MobilePick-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = MobilePickConfig
    scene = ("robolearn.envs.mobile", "mobile_arena.xml")
    task_metrics = ArmTaskEnv.task_metrics + ("collisions", "bumps")
    video_camera = "follow"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        m, n = self.model, self.num_envs
        self.base = base = BaseHandles(m, self.cfg.base)
        if base.footprint > ROBOT_RADIUS:
            raise RobotSpecError(f"env.base: robot {self.cfg.base.name!r} has a {base.footprint:.2f} m footprint "
                                 f"radius; MobilePick's layout makes room for {ROBOT_RADIUS:.2f} m")
        self._base_qpos = base.qpos
        self._base_dof = base.dof
        self._wheel_act = base.wheel_actuators
        self._table_mocap = m.body_mocapid[m.body("table").id]
        self._bumper = base.bumper
        self._mount_site = m.site(self.cfg.robot.mount.site).id
        self.table = np.zeros((n, 2))
        self.nav_distance = np.zeros(n)
        self.carry_route = np.zeros(n)
        self.collisions = np.zeros(n, np.int64)
        self.in_collision = np.zeros(n, bool)
        self._bump_sensors = np.array([m.sensor_adr[m.sensor(f"bump_{g}").id] for g in BUMP_GEOMS])
        self.bumps = np.zeros(n, np.int64)
        self.steps_clear = np.full(n, BUMP_CLEAR_STEPS)  # control steps since the chassis last touched table or wall
        self.carry_started = np.zeros(n, bool)  # the episode started beside the table holding the cube

    def robot_specs(self) -> list[RobotSpec]:
        return [self.cfg.base, self.cfg.robot]

    def _edit_scene(self, spec) -> None:
        """The video camera follows the base (its subtree's centre of mass) at a fixed world
        orientation; a contact sensor per table and wall geom finds the chassis touching it (``bumps``)."""
        chassis = spec.body(self.cfg.base.prefix + self.cfg.base.base.body)
        add_look_at_camera(chassis, self.video_camera, [-1.4, -1.0, 1.9], [0.3, 0.0, 0.3], fovy=60.0,
                           mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM)
        for geom in BUMP_GEOMS:
            spec.add_sensor(name=f"bump_{geom}", type=mujoco.mjtSensor.mjSENS_CONTACT,
                            objtype=mujoco.mjtObj.mjOBJ_BODY, objname=chassis.name, reftype=mujoco.mjtObj.mjOBJ_GEOM,
                            refname=geom, intprm=[1, 0, 1])  # data "found", no reduction, one contact

    def in_target_zone(self) -> np.ndarray:
        """The cube over the drop zone (within ``zone_radius`` in the floor plane)."""
        return np.linalg.norm((self.target - self.object_pos)[:, :2], axis=-1) < self.cfg.zone_radius

    def task_regions(self) -> dict:
        """None: the base drives to the cube and the zone, so no region is fixed in the arm's frame."""
        return {}

    def _action_spec(self):
        names, scale, offset = super()._action_spec()
        wheels = [f"{w}_velocity_rad_s" for w in self.cfg.base.base.wheels]
        return ([*wheels, *names],
                np.concatenate([[self.cfg.max_wheel_speed] * 2, scale]), np.concatenate([[0.0, 0.0], offset]))

    @property
    def obs_term_info(self) -> dict[str, dict]:
        info, masked = super().obs_term_info, ""
        if self.cfg.zone_observed == "when_grasped":
            masked = (f"; zeros while the object is not grasped (the finger pads pressing it with over "
                      f"{self.cfg.grasp_force:g} N together, each touching it, its centre within its half side + 2 cm "
                      "of the end effector)")
            info["target"] = {**info["target"], "meaning": info["target"]["meaning"] + masked}
        if self.cfg.route_point:
            info["route_point"] = {"units": "m", "frame": "base (x forward, y left)", "elements": ["x", "y"],
                                   "meaning": f"the point {self.cfg.route_point:g} m ahead of the object along the "
                                              f"shortest way to the zone's centre that keeps {ROUTE_RADIUS:g} m from "
                                              "the table's centre, relative to the base" + masked}
        return {**info,
                "object_in_hand": {"units": "m", "frame": "end effector (its site's axes)", "elements": ["x", "y", "z"],
                                   "meaning": "the object's centre minus the grasp point (the middle of the finger "
                                              "pads): zero when the object is held centred in the pinch"},
                "base_velocity": {"units": "m/s, rad/s", "frame": "base", "elements": ["forward_speed", "yaw_rate"],
                                  "meaning": "the base's forward speed and yaw rate (counter-clockwise positive)"},
                "table": {"units": "m", "frame": "base (x forward, y left)", "elements": ["x", "y"],
                          "meaning": "the table's centre relative to the base"}}

    def _obs_terms(self):
        groups = super()._obs_terms()
        extra = {"object_in_hand": 3, "base_velocity": 2, "table": 2}
        if self.cfg.route_point:
            extra["route_point"] = 2
        policy = {**groups["policy"], **extra}
        critic = {**groups["critic"], **extra, "base_pose": 4, "bumper": 1}
        return {"policy": policy, "critic": critic}

    # ------------------------------------------------------------------ reset
    def _layout_nominal(self) -> dict[str, float]:
        """Besides the cube's size and offset (``object_size``, ``workspace``), four layout
        parameters a curriculum (ADR, ``op: set``) can grow toward the full task: the upper end of
        the start-table distance (``table_distance``, metres), of the table-zone distance
        (``zone_distance``, metres), the most the zone's bearing from the table centre differs from
        the start's (``zone_bearing``, rad: small keeps the zone on the robot's side of the table,
        pi puts it anywhere, behind the table too), and the start heading's deviation from facing
        the table (``heading_noise``, rad). And ``carry_start``: the probability that an episode
        starts where a grasp leaves the robot, with the cube in the closed gripper (the carry and
        place half of the task alone: :meth:`_beside_table`). Nominal values are the full task: the
        configured upper ends, pi, pi and 0."""
        cfg = self.cfg
        return {**super()._layout_nominal(), "table_distance": cfg.table_distance.hi,
                "zone_distance": cfg.zone_distance.hi, "zone_bearing": np.pi, "heading_noise": np.pi,
                "carry_start": 0.0}

    def _sample_layout(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Robot start, table centre and zone centre (k, 2): the table with room to drive around it,
        the start ``table_distance`` from the table centre and clear of the table, the zone
        ``zone_distance`` from the table centre, both inside the arena (the upper ends per env from
        the layout parameters, the lower ends ``min(configured lo, upper end)``)."""
        rng, cfg, lp = self.np_random, self.cfg, self.layout_params
        k, half = ids.size, cfg.arena_size / 2
        # layout parameters outside what fits are clipped (a curriculum's range may be written loosely)
        start_hi = np.clip(lp["table_distance"][ids, None], CLOSEST_START, MAX_LAYOUT_DISTANCE)
        start_lo = np.minimum(cfg.table_distance.lo, start_hi)
        zone_hi = np.clip(lp["zone_distance"][ids, None], closest_zone(cfg.zone_radius), MAX_LAYOUT_DISTANCE)
        zone_lo = np.minimum(cfg.zone_distance.lo, zone_hi)
        bearing = lp["zone_bearing"][ids, None]

        def draw(rows: np.ndarray):
            c = rows.size
            t = rng.uniform(-1, 1, (c, 32, 2)) * (half - TABLE_HALF - 0.6)  # room to drive around the table
            start_bearing = rng.uniform(-np.pi, np.pi, (c, 32))
            zone_bearing = start_bearing + rng.uniform(-1.0, 1.0, (c, 32)) * bearing[rows]
            s = t + polar(rng.uniform(start_lo[rows], start_hi[rows], (c, 32)), start_bearing)
            z = t + polar(rng.uniform(zone_lo[rows], zone_hi[rows], (c, 32)), zone_bearing)
            clear = np.linalg.norm(np.maximum(np.abs(s - t) - TABLE_HALF, 0.0), axis=-1) >= ROBOT_RADIUS - 1e-9
            ok = (clear & (np.abs(s) <= half - ROBOT_RADIUS - 0.05).all(-1)
                  & (np.abs(z) <= half - cfg.zone_radius - 0.1).all(-1)
                  & (np.linalg.norm(z - s, axis=-1) > 0.3))
            return (s, t, z), ok

        def failure(row: int, tries: int) -> str:
            return (f"no MobilePick layout fits a {cfg.arena_size:g} m arena with table_distance "
                    f"{start_hi[row, 0]:.2f} m and zone_distance {zone_hi[row, 0]:.2f} m after {tries} tries "
                    f"(env.arena_size, env.table_distance, env.zone_distance, env.zone_radius, layout parameters)")

        start, table, zone = rejection_sample(k, [(2,), (2,), (2,)], draw, failure)
        return start, table, zone

    def _reset_robot(self, ids: np.ndarray) -> None:
        k, rng = ids.size, self.np_random
        start, table, zone = self._sample_layout(ids)
        holding = self.carry_started[ids] = rng.uniform(size=k) < self.layout_params["carry_start"][ids]
        if holding.any():
            start[holding] = self._beside_table(table[holding], start[holding])
        self._layout = (table, zone)
        to_table = np.arctan2(table[:, 1] - start[:, 1], table[:, 0] - start[:, 0])
        noise = np.where(holding, CARRY_START_HEADING, self.layout_params["heading_noise"][ids])
        heading = to_table + rng.uniform(-1.0, 1.0, k) * noise
        qpos = self.qpos[ids]
        b = self._base_qpos
        qpos[:, b:b + 2] = start
        qpos[:, b + 2] = self.base.rest_height
        qpos[:, b + 3], qpos[:, b + 6] = np.cos(heading / 2), np.sin(heading / 2)
        qpos[:, b + 4:b + 6] = 0.0
        qpos[:, self.base.wheel_qpos] = 0.0
        self.qpos[ids] = qpos
        self.mocap_pos[ids, self._table_mocap, :2] = table
        self.mocap_pos[ids, self._table_mocap, 2] = self.table_z / 2
        self.table[ids] = table
        self._reset_arm(ids)
        self.ctrl[ids[:, None], self._wheel_act] = 0.0

    def _beside_table(self, table: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Where a grasp leaves the base (k, 2): at the side of the table nearest ``start`` that has
        room for it (the arena's wall may be closer than a footprint beyond a side), a few
        centimetres off the table edge and within 10 cm of the side's middle; the caller turns it
        toward the table, so the arm at rest holds the cube above the table top."""
        rng, k = self.np_random, table.shape[0]
        normals = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        off = TABLE_HALF + self.base.footprint + rng.uniform(0.05, 0.15, (k, 1, 1))
        along = rng.uniform(-0.1, 0.1, (k, 1, 1)) * normals[None, :, ::-1]
        spots = table[:, None] + normals[None] * off + along  # (k, 4, 2)
        room = (np.abs(spots) <= self.cfg.arena_size / 2 - self.base.footprint - 0.05).all(-1)
        distance = np.where(room, np.linalg.norm(spots - start[:, None], axis=-1), np.inf)
        return spots[np.arange(k), distance.argmin(-1)]

    def _reset_object(self, ids: np.ndarray) -> None:
        """The cube on the table, within ``cube_offset`` of its centre, random yaw."""
        k, rng, cfg = ids.size, self.np_random, self.cfg
        half = self._resize_object(ids)
        offset = rng.uniform(-1, 1, (k, 2)) * cfg.cube_offset * self.layout_params["workspace"][ids, None]
        yaw = rng.uniform(-np.pi, np.pi, k)
        qpos = self.qpos[ids]
        a = self._obj_qpos
        qpos[:, a:a + 2] = self._layout[0] + offset
        qpos[:, a + 2] = self.table_z + half
        qpos[:, a + 3], qpos[:, a + 4:a + 6], qpos[:, a + 6] = np.cos(yaw / 2), 0.0, np.sin(yaw / 2)
        self.qpos[ids] = qpos
        self.object_rest_z[ids] = self.table_z + half
        holding = self.carry_started[ids]
        if holding.any():
            self._place_in_gripper(ids[holding], half[holding])

    def _place_in_gripper(self, ids: np.ndarray, half: np.ndarray) -> None:
        """Start ``ids`` with the cube (half sides ``half``) centred between the finger pads (the grasp
        point), its faces along the hand's axes, and the fingers closed on it (``carry_start``)."""
        gripper, a = self.gripper, self._obj_qpos
        quat = np.zeros((ids.size, 4))
        for i, rot in enumerate(self.site_xmat[ids, self.arm.ee_site]):
            mujoco.mju_mat2Quat(quat[i], rot)
        qpos = self.qpos[ids]
        qpos[:, a:a + 3] = self.grasp_point[ids]
        qpos[:, a + 3:a + 7] = quat
        closed_on = np.clip(half / (gripper.opening / 2), 0.0, 1.0)  # the open fraction of a gap 2 * half
        qpos[:, gripper.qpos] = gripper.targets(closed_on)
        self.qpos[ids] = qpos
        ctrl = self.ctrl[ids]
        ctrl[:, gripper.actuators] = gripper.ctrl(np.zeros(ids.size))
        self.ctrl[ids] = ctrl

    def _sample_target(self, ids: np.ndarray) -> np.ndarray:
        target = np.zeros((ids.size, 3))
        target[:, :2] = self._layout[1]
        target[:, 2] = 0.001
        return target

    def _reset_task_state(self, ids: np.ndarray) -> None:
        super()._reset_task_state(ids)
        # a carry start holds the cube aloft from its first step: letting it go is a drop like any other
        # (counted as neither, policies learned to open the gripper at once, regrasp the cube on the
        # table and hold it there for the rest of the episode, without penalty: 0% success)
        held = ids[self.carry_started[ids]]
        self.grasped[held] = True
        self.lifted_grasp[held] = self.object_pos[held, 2] - self.object_rest_z[held] > LIFTED
        self.nav_distance[ids] = self._nav_distance()[ids]
        self.carry_route[ids] = self._carry_route()[ids]
        self.collisions[ids] = 0
        self.in_collision[ids] = False
        self.bumps[ids] = 0
        self.steps_clear[ids] = BUMP_CLEAR_STEPS

    # ------------------------------------------------------------------ step
    def _nav_distance(self) -> np.ndarray:
        """Floor-plane distance from the arm mount to the cube beyond ``reach_standoff`` (0 within it)."""
        distance = np.linalg.norm((self.object_pos - self.site_xpos[:, self._mount_site])[:, :2], axis=-1)
        return np.maximum(distance - self.cfg.reach_standoff, 0.0)

    def _carry_route(self) -> np.ndarray:
        """The cube's way to the drop zone (metres): around the table (:func:`route_length`,
        :data:`ROUTE_RADIUS`), as the base must go, where the straight line would cross it."""
        return route_length(self.object_pos[:, :2], self.target[:, :2], self.table, ROUTE_RADIUS,
                            exit_toward=self.site_xpos[:, self._mount_site, :2])

    def _apply_actions(self, actions: np.ndarray) -> None:
        self.ctrl[:, self._wheel_act] = actions[:, :2] * self.cfg.max_wheel_speed
        self._apply_arm_actions(actions[:, 2:])

    def _reward_and_termination(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        state = self._update_grasp()
        cfg, grasped = self.cfg, state["grasped"]
        nav = self._nav_distance()  # navigation: toward the cube until it is grasped
        carry = np.linalg.norm((self.target - self.object_pos)[:, :2], axis=-1)  # then the cube to the zone
        route = self._carry_route()
        success = self._held_success((carry < cfg.zone_radius) & self.grasped)
        base_xy = self.qpos[:, self._base_qpos:self._base_qpos + 2]
        base_velocity = self.qvel[:, self._base_dof:self._base_dof + 2]
        object_velocity = self.qvel[:, self._obj_dof:self._obj_dof + 3]
        collision = reward_collision(self.sensordata[:, self._bumper], cfg.collision_force)
        bumping = self.sensordata[:, self._bump_sensors].max(axis=-1) > 0
        bump_onset = bumping & (self.steps_clear >= BUMP_CLEAR_STEPS)
        closeness = reward_reach(state["ee_obj"], cfg.reach_std)  # of the hand to the cube
        # carrying pays a lifted grasp only (this step's, as _update_grasp leaves it): gated by the grasp
        # alone, a grasped cube slid over the table top toward a zone past it earned carry_progress until
        # it went over the far edge
        carried = self.lifted_grasp.astype(np.float64)
        terms = {
            "nav_progress": reward_progress(self.nav_distance, nav, 1.0 - grasped),
            "nav_velocity": reward_velocity_toward(base_velocity, base_xy, self.object_pos[:, :2],
                                                   (1.0 - grasped) * (nav > 0.0)),
            "reach": closeness,
            "square_pads": reward_square_pads(self._yaw_in_hand(), closeness * (1.0 - grasped)),
            "grasp": reward_grasp(grasped),
            "lift": reward_lift(state["lift"], grasped, cfg.lift_height),
            "centred_grip": reward_centred_grip(np.linalg.norm(self.object_pos - self.grasp_point, axis=-1),
                                                state["lift"], grasped, cfg.lift_height, cfg.centred_grip_std),
            "carry_progress": reward_progress(self.carry_route, route, carried),
            "carry": reward_place(carry, cfg.carry_std, carried),
            "carry_height": reward_carry_height(state["lift"], grasped, cfg.carry_height_limit),
            "carry_speed": reward_carry_speed(np.linalg.norm(object_velocity, axis=-1), grasped,
                                              cfg.carry_speed_limit),
            "object_push": reward_object_push(np.linalg.norm(object_velocity[:, :2], axis=-1),
                                              (1.0 - grasped) * (np.abs(state["lift"]) < ON_TABLE)),
            "drop": reward_drop(self.lost_grasp, carry < cfg.zone_radius),
            "object_lost": reward_object_lost(self.object_lost),
            "success": reward_success(success),
            **self._penalty_terms(actions),
            "collision": collision,
            "bump": reward_contact(bumping),
            "bump_onset": reward_contact(bump_onset),
        }
        count_collisions(collision > 0, self.in_collision, self.collisions)
        self.bumps += bump_onset
        self.steps_clear = np.where(bumping, 0, np.minimum(self.steps_clear + 1, BUMP_CLEAR_STEPS))
        self.nav_distance = nav
        self.carry_route = route
        return terms, self._terminated(success)

    def _yaw_in_hand(self) -> np.ndarray:
        """The cube's yaw about the end effector's approach axis (N,), rad: the angle in the hand's
        x-y plane of the cube's axis that lies most across the approach (a cube on the table or
        tipped over alike), from the hand's x axis; 0 (mod pi/2) with the pads square to its sides."""
        ee_rot = self.site_xmat[:, self.arm.ee_site].reshape(-1, 3, 3)
        cube_rot = self.xmat[:, self._obj_body].reshape(-1, 3, 3)
        axes = np.einsum("nji,njk->nik", ee_rot, cube_rot)  # the cube's axes (columns) in the hand frame
        across = np.abs(axes[:, 2, :]).argmin(axis=-1)
        axis = axes[np.arange(axes.shape[0]), :, across]
        return np.arctan2(axis[:, 1], axis[:, 0])

    def _task_metrics(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {**super()._task_metrics(ids), "collisions": self.collisions[ids].astype(np.float64),
                "bumps": self.bumps[ids].astype(np.float64)}

    def _observe(self) -> dict[str, np.ndarray]:
        terms = super()._observe()
        b, v = self._base_qpos, self._base_dof
        xy, yaw = self.qpos[:, b:b + 2], yaw_of(self.qpos[:, b + 3:b + 7])
        c, s = np.cos(yaw), np.sin(yaw)
        forward = c * self.qvel[:, v] + s * self.qvel[:, v + 1]

        def in_base(vec: np.ndarray) -> np.ndarray:  # floor-plane world vectors (N, 2) in the base frame
            return np.stack([c * vec[:, 0] + s * vec[:, 1], -s * vec[:, 0] + c * vec[:, 1]], axis=-1)

        ee_rot = self.site_xmat[:, self.arm.ee_site].reshape(-1, 3, 3)
        terms["object_in_hand"] = to_frame(self.object_pos - self.grasp_point, ee_rot)
        # the zone's terms: zeros until the grasp with zone_observed when_grasped (the critic reads target_position)
        seen = self.grasped[:, None] if self.cfg.zone_observed == "when_grasped" else True
        terms["target"] = terms["target"] * seen
        if self.cfg.route_point:
            point = route_point(self.object_pos[:, :2], self.target[:, :2], self.table, ROUTE_RADIUS,
                                self.site_xpos[:, self._mount_site, :2], self.cfg.route_point)
            terms["route_point"] = in_base(point - xy) * seen
        terms["base_velocity"] = np.stack([forward, self.qvel[:, v + 5]], axis=-1)
        terms["table"] = in_base(self.table - xy)
        terms["base_pose"] = np.stack([xy[:, 0], xy[:, 1], c, s], axis=-1)
        terms["bumper"] = self.sensordata[:, self._bumper]
        return terms


__all__ = ["MobilePickConfig", "MobilePickEnv"]
