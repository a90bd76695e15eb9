"""NavDepth-v0: the depth image against independent ray casts, invalid pixels, shapes through the
observation layout, one image per control step, and the depth-camera randomization targets."""

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robolearn.config import ConfigError, RandomizationConfig
from robolearn.envs.diffdrive import NavDepthEnv
from robolearn.envs.diffdrive.nav_depth import CAMERA
from robolearn.randomization.depth import depth_edges

EMPTY = {"obstacles": {"count": [0, 0]}, "nthread": 1}


def facing_east_wall(env, x: float) -> None:
    """Every env's base at (x, 0) heading +x (the east wall's inner face is at +3 m), at rest."""
    b = env.base.qpos
    env.qpos[:, b:b + 2] = [x, 0.0]
    env.qpos[:, b + 3:b + 7] = [1.0, 0.0, 0.0, 0.0]
    env.qvel[:] = 0.0
    env.batch.forward()


def image(env, obs, i=0):
    layout = env.obs_layout["policy"]
    return obs["policy"][i, layout.slices["depth"]].reshape(layout.shapes["depth"])


def test_depth_equals_independent_ray_casts_corrected_for_the_pixel_angle():
    cam = {"width": 16, "height": 12, "fovy": 50.0, "pos": [0.15, 0.0, 0.1], "pitch": 0.0, "far": 6.0}
    env = NavDepthEnv(num_envs=1, seed=0, camera=cam, **EMPTY)
    env.reset(seed=0)
    facing_east_wall(env, 1.0)
    for _ in range(20):  # settle on the wheels and caster
        obs, *_ = env.step(np.zeros((1, 2)))
    depth = image(env, obs)

    model, data = env.model, env.batch.get_data(0)
    mujoco.mj_forward(model, data)
    c = model.camera(CAMERA).id
    origin, rot = data.cam_xpos[c], data.cam_xmat[c].reshape(3, 3)  # camera looks along its -z
    h, w = depth.shape
    f = 0.5 * h / np.tan(np.radians(50.0) / 2)  # focal length in pixels
    geomid = np.zeros(1, np.int32)
    expected = np.zeros((h, w))
    base_body = env.base.body
    for r in range(h):
        for col in range(w):
            ray_cam = np.array([col + 0.5 - w / 2, h / 2 - (r + 0.5), -f])
            direction = rot @ (ray_cam / np.linalg.norm(ray_cam))
            dist = mujoco.mj_ray(model, data, origin, direction, None, 1, base_body, geomid, None)
            cos = -ray_cam[2] / np.linalg.norm(ray_cam)  # depth = distance x cos(angle to the axis)
            expected[r, col] = dist * cos if 0.1 <= dist * cos <= 6.0 else 0.0
    np.testing.assert_allclose(depth, expected, atol=2e-3)
    # the wall (inner face at x = 3, the camera at x = 1.15) fills the middle rows: 1.85 m everywhere
    wall = depth[h // 2 - 1:h // 2 + 1]
    np.testing.assert_allclose(wall, 3.0 - 1.15, atol=0.02)


def test_pixels_without_a_valid_return_read_the_invalid_value():
    env = NavDepthEnv(num_envs=1, seed=0, camera={"far": 1.5, "invalid_value": -1.0, "pitch": 0.0}, **EMPTY)
    env.reset(seed=0)
    facing_east_wall(env, 0.0)  # the wall is ~3 m away: beyond far
    obs, *_ = env.step(np.zeros((1, 2)))
    depth = image(env, obs)
    assert np.all(depth[: depth.shape[0] // 2] == -1.0)  # sky and the far wall
    floor = depth[-1]
    assert np.all((floor > 0.1) & (floor < 1.5))  # the floor just ahead is valid
    info = env.obs_term_info["depth"]
    assert info["invalid_value"] == -1.0 and info["units"] == "m" and info["far"] == 1.5


def test_shapes_through_the_layout_and_the_critic_reads_no_pixels():
    env = NavDepthEnv(num_envs=2, seed=0, camera={"width": 40, "height": 30}, **EMPTY)
    policy, critic = env.obs_layout["policy"], env.obs_layout["critic"]
    assert policy.shapes["depth"] == (30, 40) and policy.widths["depth"] == 1200
    assert policy.images == {"depth": (30, 40)} and critic.images == {}
    assert policy.size == 1200 + 3 + 2 + 2 and "lidar" in critic.widths
    obs, _ = env.reset(seed=0)
    assert obs["policy"].shape == (2, policy.size) and np.isfinite(obs["policy"]).all()
    single = gymnasium.make("robolearn/NavDepth-v0", disable_env_checker=True, nthread=1)
    check_env(single.unwrapped, skip_render_check=True)


def test_the_image_is_taken_once_per_control_step_at_its_last_substep():
    env = NavDepthEnv(num_envs=1, seed=0, camera={"pos": [0.15, 0.0, 0.1], "pitch": 0.0}, **EMPTY)
    env.reset(seed=0)
    facing_east_wall(env, -1.6)
    assert env.frame_skip == 5
    b, dt = env.base.qpos, env.model.opt.timestep
    x = []
    for _ in range(25):
        obs, *_ = env.step(np.ones((1, 2)))  # toward the wall at a steady top speed (no pitching)
        x.append(env.qpos[0, b])
    flags = env.model_field("opt.disableflags")
    assert not np.any(flags & int(mujoco.mjtDisableBit.mjDSBL_SENSOR))  # sensors are on between steps
    # the centre pixel sees the wall (inner face at x = 3) from the camera 0.15 m ahead of the base;
    # the image shows the base where it was at the start of the last substep: one substep of motion
    # (~5 mm here) before the observation, not at the control step's start (~25 mm) nor its end
    centre = image(env, obs)[11, 16]  # just above the optical axis: the wall
    speed = (x[-1] - x[-2]) / env.control_dt
    assert speed > 0.45  # one substep of motion: > 4.5 mm
    np.testing.assert_allclose(centre, 3.0 - (x[-1] - speed * dt + 0.15), atol=1.5e-3)
    assert abs(centre - (3.0 - (x[-1] + 0.15))) > 3e-3


# ---------------------------------------------------------------------------------------------
# randomization of the depth camera


def randomization(**params):
    return RandomizationConfig.model_validate({"params": {
        name: {"target": target, "select": {"obs_terms": ["depth"]}, "op": op, "init_range": [v, v],
               **({"type": "int"} if target == "depth_latency" else {})}
        for name, (target, op, v) in params.items()}})


def run_pair(rand, steps=4, **env_kwargs):
    """The same episodes with and without ``rand``: (randomized images, clean images), per step."""
    kwargs = {**EMPTY, "num_envs": 2, "seed": 3, **env_kwargs}
    noisy, clean = NavDepthEnv(randomization=rand, **kwargs), NavDepthEnv(**kwargs)
    out = []
    for env in (noisy, clean):
        obs, _ = env.reset(seed=3)
        frames = [image(env, obs).copy()]
        for k in range(steps):
            obs, *_ = env.step(np.full((2, 2), 0.3))
            frames.append(image(env, obs).copy())
        out.append(frames)
    return out


def test_nominal_depth_randomization_changes_nothing():
    rand = randomization(n=("depth_noise", "set", 0.0), d=("depth_dropout", "set", 0.0),
                         h=("depth_edge_holes", "set", 0.0), lat=("depth_latency", "set", 0),
                         p=("camera_pitch", "add", 0.0))
    noisy, clean = run_pair(rand)
    for a, b in zip(noisy, clean):
        np.testing.assert_array_equal(a, b)


def test_noise_grows_with_range_and_clips_to_the_sensor_range():
    noisy, clean = run_pair(randomization(n=("depth_noise", "set", 0.02)), steps=1)
    a, b = noisy[1], clean[1]
    valid = (a != 0) & (b != 0)
    err = np.abs(a - b)[valid]
    d = b[valid]
    near, far = err[d < 0.6], err[d > 1.5]
    assert near.size and far.size and far.mean() > 3 * near.mean()
    z = (a - b)[valid] / (0.02 * d ** 2)  # standard normal where sigma = 0.02 d^2
    assert abs(z.mean()) < 0.15 and abs(z.std() - 1.0) < 0.15
    assert np.all((a == 0) | ((a >= 0.1) & (a <= 4.0)))


def test_dropout_edges_latency_and_pitch():
    noisy, clean = run_pair(randomization(d=("depth_dropout", "set", 1.0)), steps=1)
    assert np.all(noisy[1] == 0.0)
    noisy, clean = run_pair(randomization(lat=("depth_latency", "set", 2)), steps=4)
    np.testing.assert_array_equal(noisy[0], clean[0])  # a fresh episode repeats its first image
    np.testing.assert_array_equal(noisy[4], clean[2])  # two control steps late
    noisy, clean = run_pair(randomization(h=("depth_edge_holes", "set", 1.0)), steps=1)
    edges = depth_edges(clean[1].reshape(1, -1), clean[1].shape, 0.0).reshape(clean[1].shape)
    assert edges.any()
    np.testing.assert_array_equal(noisy[1], np.where(edges, 0.0, clean[1]))
    # a camera pitched 0.2 rad further down by randomization sees what a camera mounted so sees
    noisy, _ = run_pair(randomization(p=("camera_pitch", "add", 0.2)), steps=1, camera={"pitch": 0.1})
    _, mounted = run_pair(randomization(p=("camera_pitch", "add", 0.0)), steps=1, camera={"pitch": 0.3})
    np.testing.assert_allclose(noisy[1], mounted[1], atol=1e-9)


def test_depth_targets_need_a_depth_image_and_an_additive_value():
    with pytest.raises(ConfigError, match="is not a depth-image term"):
        NavDepthEnv(num_envs=1, nthread=1, randomization=RandomizationConfig.model_validate({"params": {
            "n": {"target": "depth_noise", "select": {"obs_terms": ["goal"]}, "op": "set", "init_range": [0.1, 0.1]}}}))
    with pytest.raises(ValueError, match="use op add or set"):
        RandomizationConfig.model_validate({"params": {
            "n": {"target": "depth_dropout", "select": {"obs_terms": ["depth"]}, "init_range": [1.0, 1.0]}}})


def test_the_video_shows_the_depth_image_beside_the_view(tmp_path):
    import cv2

    from robolearn.evaluation import run_episodes
    from policies import make_policy

    env = NavDepthEnv(num_envs=1, seed=0, episode_seconds=0.5, **EMPTY)
    dims = {group: layout.size for group, layout in env.obs_layout.items()}
    policy = make_policy(dims, 2, actor_hidden=[8], critic_hidden=[8])
    result = run_episodes(policy, env, 1, video=tmp_path / "depth.mp4")
    assert result["video_frames"] == 11  # 10 steps and the final frame
    capture = cv2.VideoCapture(str(tmp_path / "depth.mp4"))
    ok, frame = capture.read()
    assert ok and frame.shape == (480, 480 + 640, 3)  # the 32x24 image scaled to the view's height
    panel = frame[:, 480:]
    assert panel[:40].max() < 40  # the top rows see over the walls: invalid, drawn black
    assert panel[-40:].max(axis=-1).mean() > 100  # the floor just ahead: coloured (near: red)
