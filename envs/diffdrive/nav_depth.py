"""``robolearn/NavDepth-v0``: PointGoal navigation with a depth camera instead of a lidar.

Nav-v0's base, arenas and rewards; the policy sees what Habitat's PointNav agents see: a forward
depth image and the goal from GPS + compass (distance and bearing in the robot frame), plus the
base's velocity and its previous action.

The depth camera is a MuJoCo camera on the base (resolution, vertical field of view, mount and
pitch from ``env.camera``) read by a camera rangefinder (``data="depth"``): an H x W image of
z-depth in metres computed inside the physics step on the ``mujoco.batch`` thread pool, no
OpenGL. It is computed once per control step: sensors are disabled on the first ``frame_skip -
1`` physics substeps and enabled on the last, so the image shows the state at the start of the
step's last substep (one physics step, 10 ms, before the observation) and costs one image per
control step instead of ``frame_skip``. Pixels with no return, nearer than ``near`` or farther
than ``far`` read ``invalid_value`` (0, as most depth cameras report them); the image is stored
row-major in its slice of the policy vector, row 0 at the top.

Observations: ``policy`` = depth (H, W) metres, goal (distance, cos and sin of the bearing),
velocity (forward speed, yaw rate), last_action; ``critic`` = the same vectors without the image
plus the privileged 16-ray lidar ring, base pose and goal position (an asymmetric critic reads no
pixels). ``obs_term_info`` documents the image for the export contract (units, invalid value,
near / far, layout). Depth sensor randomization (range-dependent noise, dropout, holes at edges,
camera pitch jitter, latency) is in :mod:`robolearn.randomization` (targets ``depth_*``).
"""

from __future__ import annotations

import mujoco
import numpy as np
from pydantic import Field, model_validator

from robolearn.config import StrictModel
from robolearn.envs.diffdrive.nav import NavConfig, NavEnv
from robolearn.envs.robots.spec import Vec3

CAMERA = "depth_camera"


class DepthCamera(StrictModel):
    """A forward-looking depth camera on the base."""

    width: int = Field(32, ge=2, le=256, description="pixels")
    height: int = Field(24, ge=2, le=256, description="pixels")
    fovy: float = Field(60.0, gt=0.0, lt=170.0, description="vertical field of view, degrees")
    near: float = Field(0.1, ge=0.0, description="metres: nearer returns are invalid")
    far: float = Field(4.0, gt=0.0, description="metres: farther returns (and none) are invalid")
    pos: Vec3 | None = Field(None, description="camera position in the base frame, metres (default: the robot "
                             "spec's sensor_pos)")
    pitch: float = Field(0.0, ge=-1.5, le=1.5, description="rad, positive tilts the camera down")
    invalid_value: float = Field(0.0, description="what a pixel without a valid return reads")

    @model_validator(mode="after")
    def _range(self) -> DepthCamera:
        if self.near >= self.far:
            raise ValueError(f"near ({self.near}) must be below far ({self.far})")
        return self

    @property
    def fovx(self) -> float:
        """Horizontal field of view, degrees."""
        return float(np.degrees(2 * np.arctan(np.tan(np.radians(self.fovy) / 2) * self.width / self.height)))


class NavDepthConfig(NavConfig):
    """``robolearn/NavDepth-v0`` settings: Nav-v0's plus the depth camera (``lidar`` stays, for
    the critic only)."""

    task: str = "robolearn/NavDepth-v0"
    camera: DepthCamera = Field(default_factory=DepthCamera)


def camera_quat(pitch: float) -> np.ndarray:
    """Orientation in the base frame of a camera looking along the base's +x, image up along +z,
    tilted down by ``pitch`` (MuJoCo cameras look along their -z, with +y up)."""
    c, s = np.cos(pitch), np.sin(pitch)
    forward = np.array([c, 0.0, -s])
    up = np.array([s, 0.0, c])
    right = np.cross(forward, up)
    mat = np.stack([right, up, -forward], axis=1)  # columns: camera x, y, z in the base frame
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat


class NavDepthEnv(NavEnv):
    """Batched ``robolearn/NavDepth-v0`` (the gymnasium ``vector_entry_point``)."""

    config_cls = NavDepthConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        m, cam = self.model, self.cfg.camera
        self._depth_adr = int(m.sensor_adr[m.sensor(CAMERA).id])
        self._depth_size = cam.height * cam.width
        self._sensor_bit = int(mujoco.mjtDisableBit.mjDSBL_SENSOR)
        self._disable = self.model_field("opt.disableflags")
        self.depth = np.full((self.num_envs, self._depth_size), cam.invalid_value)

    @property
    def obs_term_info(self) -> dict[str, dict]:
        """What the export contract tells the robot side about each policy term (the image's layout)."""
        cam = self.cfg.camera
        return {**super().obs_term_info, "depth": {
            "units": "m", "kind": "depth (z-distance along the optical axis)",
            "meaning": "the forward camera's depth image, as the camera's driver gives it (no normalisation)",
            "layout": "row-major, row 0 at the top, column 0 at the left", "invalid_value": cam.invalid_value,
            "near": cam.near, "far": cam.far, "fovy_deg": cam.fovy, "fovx_deg": round(cam.fovx, 3),
            "camera": CAMERA, "frame": "camera (optical axis forward, row 0 up)"}}

    # ------------------------------------------------------------------ model
    def _add_sensors(self, scene: mujoco.MjSpec) -> None:
        cam, robot = self.cfg.camera, self.cfg.robot
        body = scene.body(robot.prefix + robot.base.body)
        pos = cam.pos if cam.pos is not None else robot.base.sensor_pos
        body.add_camera(name=CAMERA, pos=list(pos), quat=list(camera_quat(cam.pitch)), fovy=cam.fovy,
                        resolution=[cam.width, cam.height])
        scene.add_sensor(name=CAMERA, type=mujoco.mjtSensor.mjSENS_RANGEFINDER, objtype=mujoco.mjtObj.mjOBJ_CAMERA,
                         objname=CAMERA, intprm=[1 << int(mujoco.mjtRayDataField.mjRAYDATA_DEPTH), 0, 0])

    def _obs_terms(self) -> dict[str, dict[str, int | tuple[int, ...]]]:
        cam, rays = self.cfg.camera, self.cfg.lidar.rays
        policy = {"depth": (cam.height, cam.width), "goal": 3, "velocity": 2, "last_action": 2}
        critic = {"goal": 3, "velocity": 2, "last_action": 2, "lidar": rays, "base_pose": 4, "goal_position": 2}
        return {"policy": policy, "critic": critic}

    # ------------------------------------------------------------------ step
    def _step_physics(self) -> None:
        """Sensors (the camera, the bumper) only on the last substep: one image per control step."""
        substeps = self.control_substeps()
        if substeps > 1:
            self._disable[:] |= self._sensor_bit
            self.batch.step(nstep=substeps - 1, stage=mujoco.mjtStage.mjSTAGE_NONE)
            self._disable[:] &= ~self._sensor_bit
        self.batch.step(nstep=1, stage=self.step_stage)

    def _read_depth(self) -> np.ndarray:
        """The camera's image (N, H*W) with out-of-range pixels set to the invalid value."""
        cam = self.cfg.camera
        raw = self.sensordata[:, self._depth_adr:self._depth_adr + self._depth_size]
        valid = (raw >= cam.near) & (raw <= cam.far)
        np.copyto(self.depth, np.where(valid, raw, cam.invalid_value))
        return self.depth

    def _observe(self) -> dict[str, np.ndarray]:
        terms = super()._observe()
        terms["depth"] = self._read_depth()
        return terms
