"""``robolearn/Nav-v0``: PointGoal navigation of a differential-drive base among obstacles.

The robot (a differential-drive base spec, ``env.robot``: default the bundled ``diffdrive``, two
velocity-controlled wheels and two casters; any base spec fits, e.g. ``kobuki`` from URDF) starts
at a random collision-free pose in a walled arena with 4-8 randomly placed obstacles (cylinders
and rotated boxes of varied size) and must reach a goal 1.5-5 m away. Obstacles keep a gap wider
than the robot between each other and from the walls, so every layout is solvable.

Observations (``policy``): goal in the robot frame (distance, cos and sin of the bearing), forward
speed and yaw rate, a ring of lidar ranges (batched ray casting against walls and obstacles,
metres, clipped at the range, from the spec's ``sensor_pos``), the previous action. ``critic``
adds the base pose and goal position in the arena frame.
Actions: left and right wheel velocity in [-1, 1] x ``max_wheel_speed``.
Reward terms (``NavRewards``, weighted by ``env.rewards``): success, slack, progress, collision.
Reaching the goal ends the episode, the time limit truncates it. Episode metrics: return, length,
success, SPL, collisions, and each reward term's sum.
"""

from __future__ import annotations

import mujoco
import numpy as np
from pydantic import Field, model_validator

from robolearn.config import EnvConfig, IntRange, Range, StrictModel
from robolearn.envs.core import BatchedMujocoEnv
from robolearn.envs.rewards import count_collisions, reward_collision, reward_progress, reward_slack, reward_success
from robolearn.envs.robots import BaseHandles, RobotSpec, compose, robot_field, scene_mjspec
from robolearn.envs.sampling import first_valid, rejection_sample

NUM_OBSTACLE_SLOTS = 8
#: clearance radius the config checks assume (the bundled base: 0.18 m chassis plus a margin); the
#: env samples layouts with its robot's own footprint plus ``CLEARANCE_MARGIN``
ROBOT_RADIUS = 0.2
CLEARANCE_MARGIN = 0.02
_PARKED_Z = -5.0  # unused obstacle slots sit below the floor, out of reach of robot and lidar


# ---------------------------------------------------------------------------------------------
# config


class NavRewards(StrictModel):
    """Weights of the reward terms (term functions in :mod:`robolearn.envs.rewards`):
    ``success`` on reaching the goal, ``slack`` every step, ``progress`` the decrease of the
    distance to the goal, ``collision`` while the bumper presses on something."""

    success: float = 2.5
    slack: float = -0.01
    progress: float = 1.0
    collision: float = -0.05


class NavObstacles(StrictModel):
    count: IntRange = Field(default_factory=lambda: IntRange(lo=4, hi=8))
    size: Range = Field(default_factory=lambda: Range(lo=0.15, hi=0.35),
                        description="cylinder radius / box half-side, metres")
    gap: float = Field(0.5, ge=0.0, description="min free gap between obstacles and to the walls, metres")

    @model_validator(mode="after")
    def _check(self) -> "NavObstacles":
        if self.count.lo < 0 or self.count.hi > NUM_OBSTACLE_SLOTS:
            raise ValueError(f"count must lie in [0, {NUM_OBSTACLE_SLOTS}], got [{self.count.lo}, {self.count.hi}]")
        if self.size.lo <= 0:
            raise ValueError(f"size must be positive, got [{self.size.lo}, {self.size.hi}]")
        return self


class NavLidar(StrictModel):
    rays: int = Field(16, ge=1)
    range: float = Field(3.0, gt=0.0)


def start_goal_half_width(arena_size: float, robot_radius: float = ROBOT_RADIUS) -> float:
    """Half side (metres) of the square start and goal positions are drawn from: the arena less
    the robot's clearance and a margin. The config check and the sampler both use it."""
    return arena_size / 2 - robot_radius - 0.05


class NavConfig(EnvConfig):
    """``robolearn/Nav-v0`` settings (the ``env`` section of an experiment)."""

    task: str = "robolearn/Nav-v0"
    robot: RobotSpec = robot_field("diffdrive", "the differential-drive base: a bundled robot's name, a robot "
                                   "spec .yaml or the spec itself")
    arena_size: float = Field(6.0, gt=1.0, description="inner side of the square arena, metres")
    obstacles: NavObstacles = Field(default_factory=NavObstacles)
    goal_distance: Range = Field(default_factory=lambda: Range(lo=1.5, hi=5.0))
    success_radius: float = Field(0.3, gt=0.0)
    control_hz: float = Field(20.0, gt=0.0)
    episode_seconds: float = Field(30.0, gt=0.0)
    max_wheel_speed: float = Field(12.0, gt=0.0, description="rad/s at action 1 (wheel radius 0.05 m)")
    lidar: NavLidar = Field(default_factory=NavLidar)
    collision_force: float = Field(1e-3, ge=0.0, description="bumper force (N) above which a step counts as a collision")
    rewards: NavRewards = Field(default_factory=NavRewards)

    @model_validator(mode="after")
    def _geometry(self) -> "NavConfig":
        self.robot.require("base")
        lo, hi = self.goal_distance.lo, self.goal_distance.hi
        if lo <= 0:
            raise ValueError(f"goal_distance must be positive, got [{lo}, {hi}]")
        if lo == hi:
            raise ValueError(f"goal_distance=[{lo}, {hi}]: needs lo < hi (start-goal distances are drawn, never "
                             f"exactly one value)")
        longest = 2 * np.sqrt(2) * start_goal_half_width(self.arena_size)
        if lo > longest:
            raise ValueError(f"goal_distance.lo={lo} m does not fit in a {self.arena_size} m arena "
                             f"(arena_size): the longest start-goal distance is {longest:.2f} m")
        return self


# ---------------------------------------------------------------------------------------------
# helpers


def yaw_of(quat: np.ndarray) -> np.ndarray:
    """Heading of (N, 4) wxyz quaternions."""
    w, x, y, z = quat[:, 0], quat[:, 1], quat[:, 2], quat[:, 3]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class NavEnv(BatchedMujocoEnv):
    """Batched ``robolearn/Nav-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls: type[NavConfig] = NavConfig
    task_metrics = ("spl", "collisions")
    # observations read qpos, qvel and the in-step bumper force; the lidar's ray casting computes
    # the kinematics it needs itself, so the step computes no forward stage after the last substep
    step_stage = mujoco.mjtStage.mjSTAGE_NONE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model, nray = self.model, self.cfg.lidar.rays
        n = self.num_envs
        obstacle_names = [f"obstacle_{i}" for i in range(NUM_OBSTACLE_SLOTS)]
        self._obstacle_geoms = np.array([model.geom(name).id for name in obstacle_names])
        self._obstacle_mocap = np.array([model.body_mocapid[model.body(name).id] for name in obstacle_names])
        self._obstacle_is_box = model.geom_type[self._obstacle_geoms] == mujoco.mjtGeom.mjGEOM_BOX
        self._goal_mocap = model.body_mocapid[model.body("goal").id]
        base = self.base
        self._bumper = base.bumper
        self._lidar_height = base.rest_height + base.sensor_offset[2]
        self._base_body = base.body
        #: clearance kept around the robot when sampling layouts: its footprint plus a margin
        self.robot_radius = base.footprint + CLEARANCE_MARGIN
        angles = np.linspace(0.0, 2.0 * np.pi, nray, endpoint=False)
        self._ray_cos, self._ray_sin = np.cos(angles), np.sin(angles)
        self._ray_groups = np.array([1, 1, 0, 0, 0, 0], np.uint8)  # walls and obstacles
        self._ray_pnt = np.zeros((n, nray, 3))
        self._ray_vec = np.zeros((n, nray, 3))
        self._geom_size = self.model_field("geom_size")
        self._geom_rbound = self.model_field("geom_rbound")
        self._geom_aabb = self.model_field("geom_aabb")

        # per-env task state
        self.goal = np.zeros((n, 2))
        self.distance = np.zeros(n)
        self.start_distance = np.ones(n)
        self.path_length = np.zeros(n)
        self.collisions = np.zeros(n, np.int64)
        self.in_collision = np.zeros(n, bool)
        self.obstacle_xy = np.zeros((n, NUM_OBSTACLE_SLOTS, 2))
        self.obstacle_radius = np.zeros((n, NUM_OBSTACLE_SLOTS))  # bounding radius; 0 = parked
        self._prev_xy = np.zeros((n, 2))
        self.lidar = np.zeros((n, nray))

    def robot_specs(self) -> list[RobotSpec]:
        """The robot specs composed into the scene: the base."""
        return [self.cfg.robot]

    def _add_sensors(self, scene: mujoco.MjSpec) -> None:
        """Sensors the task adds to the composed scene before it compiles (none here: the lidar's
        rays are cast after the step)."""

    def _build_model(self) -> mujoco.MjModel:
        scene = "nav_arena.xml"
        model = compose(scene_mjspec("robolearn.envs.diffdrive", scene), self.robot_specs(), scene,
                        edit=self._add_sensors)
        self._size_arena(model, self.cfg.arena_size)
        #: the base's indices in the model (robolearn.envs.robots.handles)
        self.base = BaseHandles(model, self.cfg.robot)
        return model

    def _obs_terms(self) -> dict[str, dict[str, int]]:
        """Observation groups: term name -> width."""
        policy_terms = {"goal": 3, "velocity": 2, "lidar": self.cfg.lidar.rays, "last_action": 2}
        return {"policy": policy_terms, "critic": {**policy_terms, "base_pose": 4, "goal_position": 2}}

    @property
    def obs_term_info(self) -> dict[str, dict]:
        """What the export contract tells the robot side about each policy observation term."""
        rays, lidar = self.cfg.lidar.rays, self.cfg.lidar
        return {
            "goal": {"units": "m, unitless", "frame": "robot (x forward, y left, z up)",
                     "elements": ["distance_m", "cos_bearing", "sin_bearing"],
                     "meaning": "the goal's distance and the unit vector toward it (x / distance, y / distance) "
                                "in the robot frame"},
            "velocity": {"units": "m/s, rad/s", "frame": "robot", "elements": ["forward_speed", "yaw_rate"],
                         "meaning": "the base's forward speed and yaw rate (counter-clockwise positive)"},
            "lidar": {"units": "m", "frame": "robot, in the plane of the sensor",
                      "meaning": f"{rays} ranges, ray i at i x {360 / rays:g} deg counter-clockwise from straight "
                                 f"ahead; no return reads the maximum range {lidar.range:g} m",
                      "range_m": lidar.range, "angles_deg": [round(360.0 * i / rays, 6) for i in range(rays)]},
            "last_action": {"units": "normalised [-1, 1]", "frame": "action",
                            "meaning": "the policy's previous action (before scaling), zeros at an episode's start"},
        }

    def _action_spec(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        return ([f"{w}_velocity_rad_s" for w in self.cfg.robot.base.wheels], np.full(2, self.cfg.max_wheel_speed),
                np.zeros(2))

    def _layout_nominal(self) -> dict[str, float]:
        cfg = self.cfg
        return {"obstacle_count": cfg.obstacles.count.hi, "obstacle_size": 1.0, "goal_distance": cfg.goal_distance.hi}

    @staticmethod
    def _size_arena(model: mujoco.MjModel, arena_size: float) -> None:
        """Move the walls so their inner faces bound an ``arena_size`` square."""
        half = arena_size / 2
        for name, axis, sign in (("wall_n", 1, 1), ("wall_s", 1, -1), ("wall_e", 0, 1), ("wall_w", 0, -1)):
            g = model.geom(name)
            thick = g.size[axis]
            g.pos[axis] = sign * (half + thick)
            g.size[1 - axis] = half + 2 * thick
            g.rbound = np.linalg.norm(g.size)
            model.geom_aabb[g.id, 3:] = g.size
        model.geom("floor").size[:2] = half + 1.0

    # ------------------------------------------------------------------ reset: layout sampling
    def _sample_start_goal(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and goal positions (k, 2) inside the arena, ``goal_distance`` apart (the upper end
        per env from the ``goal_distance`` layout parameter), 32 candidate pairs per round."""
        rng, half = self.np_random, start_goal_half_width(self.cfg.arena_size, self.robot_radius)
        hi = self.layout_params["goal_distance"][ids, None]
        lo = np.minimum(self.cfg.goal_distance.lo, hi)

        def draw(rows: np.ndarray):
            cand_s = rng.uniform(-half, half, (rows.size, 32, 2))
            cand_g = rng.uniform(-half, half, (rows.size, 32, 2))
            d = np.linalg.norm(cand_g - cand_s, axis=-1)
            return (cand_s, cand_g), (d >= lo[rows]) & (d <= hi[rows])

        def failure(row: int, tries: int) -> str:
            return (f"no start/goal pair {lo[row, 0]:g}-{hi[row, 0]:g} m apart fits in the {self.cfg.arena_size:g} m "
                    f"arena after {tries} tries (env.goal_distance, env.arena_size, layout parameter goal_distance)")

        start, goal = rejection_sample(ids.size, [(2,), (2,)], draw, failure)
        return start, goal

    def _sample_obstacles(self, ids: np.ndarray, start: np.ndarray, goal: np.ndarray):
        """Obstacle slots for k envs: centres, half sizes, yaw and bounding radius (0 = parked).

        Slot by slot (a loop over 8 slots, vectorised over envs), 32 candidate centres each; a
        slot with no candidate keeping the gaps to the walls, earlier obstacles, start and goal is
        parked.
        """
        rng, cfg = self.np_random, self.cfg.obstacles
        k, half = start.shape[0], self.cfg.arena_size / 2
        most = np.clip(np.round(self.layout_params["obstacle_count"][ids]).astype(np.int64), 0, NUM_OBSTACLE_SLOTS)
        count = rng.integers(np.minimum(cfg.count.lo, most), most + 1)
        size = rng.uniform(cfg.size.lo, cfg.size.hi, (k, NUM_OBSTACLE_SLOTS, 2))
        size *= self.layout_params["obstacle_size"][ids, None, None]
        size[:, ~self._obstacle_is_box, 1] = size[:, ~self._obstacle_is_box, 0]
        bound = np.where(self._obstacle_is_box, np.linalg.norm(size, axis=-1), size[..., 0])
        yaw = rng.uniform(-np.pi, np.pi, (k, NUM_OBSTACLE_SLOTS))
        xy = np.zeros((k, NUM_OBSTACLE_SLOTS, 2))
        radius = np.zeros((k, NUM_OBSTACLE_SLOTS))
        keep_clear = self.robot_radius + 0.1
        for j in range(NUM_OBSTACLE_SLOTS):
            r = bound[:, j, None]  # (k, 1)
            lim = np.maximum(half - cfg.gap - r, 0.0)
            cand = rng.uniform(-1.0, 1.0, (k, 32, 2)) * lim[..., None]
            valid = (j < count)[:, None] & (lim > 0)
            valid = valid & (np.linalg.norm(cand - start[:, None], axis=-1) >= r + keep_clear)
            valid &= np.linalg.norm(cand - goal[:, None], axis=-1) >= r + keep_clear
            if j:
                gaps = np.linalg.norm(cand[:, :, None] - xy[:, None, :j], axis=-1) - radius[:, None, :j] - r[..., None]
                valid &= np.all((gaps >= cfg.gap) | (radius[:, None, :j] == 0), axis=-1)
            idx, ok = first_valid(valid)
            xy[ok, j] = cand[np.flatnonzero(ok), idx[ok]]
            radius[ok, j] = bound[ok, j]
        return xy, size, yaw, radius

    def _reset_envs(self, ids: np.ndarray) -> None:
        k, rng = ids.size, self.np_random
        start, goal = self._sample_start_goal(ids)
        xy, size, yaw, radius = self._sample_obstacles(ids, start, goal)
        heading = rng.uniform(-np.pi, np.pi, k)

        # robot: free joint at the start pose (resting on the floor), wheels at rest
        qpos, b = self.qpos[ids], self.base.qpos
        qpos[:, b:b + 2] = start
        qpos[:, b + 2] = self.base.rest_height
        qpos[:, b + 3], qpos[:, b + 6] = np.cos(heading / 2), np.sin(heading / 2)
        qpos[:, b + 4:b + 6] = 0.0
        qpos[:, self.base.joint_qpos] = 0.0
        self.qpos[ids] = qpos
        self.qvel[ids] = 0.0
        self.ctrl[ids] = 0.0

        # obstacles: pose through mocap, shape through per-env geom fields
        placed = radius > 0
        pos = np.zeros((k, NUM_OBSTACLE_SLOTS, 3))
        pos[..., :2] = xy
        pos[..., 2] = np.where(placed, 0.2, _PARKED_Z)
        quat = np.zeros((k, NUM_OBSTACLE_SLOTS, 4))
        quat[..., 0], quat[..., 3] = np.cos(yaw / 2), np.sin(yaw / 2)
        self.mocap_pos[ids[:, None], self._obstacle_mocap] = pos
        self.mocap_quat[ids[:, None], self._obstacle_mocap] = quat
        geoms = self._obstacle_geoms
        gsize = self._geom_size[ids[:, None], geoms]
        gsize[..., 0] = size[..., 0]
        gsize[..., 1] = np.where(self._obstacle_is_box, size[..., 1], 0.2)  # cylinder: half-height
        gsize[..., 2] = np.where(self._obstacle_is_box, 0.2, 0.0)
        self._geom_size[ids[:, None], geoms] = gsize
        self._geom_rbound[ids[:, None], geoms] = np.linalg.norm(
            np.where(self._obstacle_is_box[:, None], gsize, gsize[..., [0, 1, 1]] * [1, 0, 1]), axis=-1)
        aabb = np.zeros((k, NUM_OBSTACLE_SLOTS, 6))
        aabb[..., 3] = size[..., 0]
        aabb[..., 4] = size[..., 1]
        aabb[..., 5] = 0.2
        self._geom_aabb[ids[:, None], geoms] = aabb
        self.mocap_pos[ids, self._goal_mocap, :2] = goal
        self.mocap_pos[ids, self._goal_mocap, 2] = 0.0

        self.goal[ids] = goal
        self.obstacle_xy[ids] = xy
        self.obstacle_radius[ids] = radius
        self.distance[ids] = np.linalg.norm(goal - start, axis=-1)
        self.start_distance[ids] = self.distance[ids]
        self.path_length[ids] = 0.0
        self.collisions[ids] = 0
        self.in_collision[ids] = False
        self._prev_xy[ids] = start

    # ------------------------------------------------------------------ step
    def _apply_actions(self, actions: np.ndarray) -> None:
        self.ctrl[:, self.base.wheel_actuators] = actions * self.action_scale + self.action_offset

    def _reward_and_termination(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        xy = self.base_xy
        distance = np.linalg.norm(self.goal - xy, axis=-1)
        reached = distance < self.cfg.success_radius
        collision = reward_collision(self.sensordata[:, self._bumper], self.cfg.collision_force)
        terms = {"success": reward_success(reached), "slack": reward_slack(self.num_envs),
                 "progress": reward_progress(self.distance, distance), "collision": collision}
        count_collisions(collision > 0, self.in_collision, self.collisions)
        self.path_length += np.linalg.norm(xy - self._prev_xy, axis=-1)
        self._prev_xy[:] = xy
        self.distance = distance
        self.episode_success |= reached
        return terms, reached

    def _task_metrics(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        shortest = self.start_distance[ids]  # straight line: a lower bound of the shortest path
        spl = self.episode_success[ids] * shortest / np.maximum(self.path_length[ids], shortest)
        return {"spl": spl, "collisions": self.collisions[ids].astype(np.float64)}

    @property
    def base_xy(self) -> np.ndarray:
        return self.qpos[:, self.base.qpos:self.base.qpos + 2]

    @property
    def base_yaw(self) -> np.ndarray:
        return yaw_of(self.qpos[:, self.base.qpos + 3:self.base.qpos + 7])

    def _scan_lidar(self) -> np.ndarray:
        """Ranges (N, rays) of the lidar ring at the robot's heading, clipped at the range."""
        yaw = self.base_yaw
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        ox, oy = self.base.sensor_offset[:2]
        xy = self.base_xy
        self._ray_pnt[:, :, 0] = xy[:, 0, None] + c * ox - s * oy
        self._ray_pnt[:, :, 1] = xy[:, 1, None] + s * ox + c * oy
        self._ray_pnt[:, :, 2] = self._lidar_height
        self._ray_vec[:, :, 0] = c * self._ray_cos - s * self._ray_sin
        self._ray_vec[:, :, 1] = s * self._ray_cos + c * self._ray_sin
        dist, _ = self.batch.ray(self._ray_pnt, self._ray_vec, geomgroup=self._ray_groups,
                                 bodyexclude=self._base_body)
        rng = self.cfg.lidar.range
        self.lidar = np.where((dist < 0) | (dist > rng), rng, dist)
        return self.lidar

    def _observe(self) -> dict[str, np.ndarray]:
        xy, yaw, v = self.base_xy, self.base_yaw, self.base.dof
        c, s = np.cos(yaw), np.sin(yaw)
        delta = self.goal - xy
        goal_x = c * delta[:, 0] + s * delta[:, 1]  # goal in the robot frame
        goal_y = -s * delta[:, 0] + c * delta[:, 1]
        distance = np.hypot(goal_x, goal_y)
        safe = np.maximum(distance, 1e-6)
        forward_speed = c * self.qvel[:, v] + s * self.qvel[:, v + 1]
        terms = {
            "goal": np.stack([distance, goal_x / safe, goal_y / safe], axis=-1),
            "velocity": np.stack([forward_speed, self.qvel[:, v + 5]], axis=-1),
            "lidar": self._scan_lidar(),
            "last_action": self.last_action,
            "base_pose": np.stack([xy[:, 0], xy[:, 1], c, s], axis=-1),
            "goal_position": self.goal,
        }
        return terms
