"""End-effector actions (``env.action_space: ee_delta``): Jacobians from the step's kinematics equal
MuJoCo's, a commanded end-effector delta moves the end effector by that delta from many random
poses (the bundled arm5, and Fetch when gymnasium-robotics is installed), full-scale random actions
never command a joint outside its range, yaw turns the gripper about its approach axis, a scripted
pick-and-place through the ee_delta actions succeeds, the config and the export contract name the
space, episodes continue bit for bit through state_dict, and a tiny ee_delta run goes through the
CLI (train, export, eval with the behaviour metrics and ``--video --camera``)."""

import copy
import importlib.util

import mujoco
import numpy as np
import pytest

from robolearn.config import ConfigError, load_config
from robolearn.envs.arm import PickPlaceEnv, ReachEnv
from robolearn.envs.mobile import MobilePickEnv
from robolearn.envs.robots.ik import chain_jacobians, ik

HAS_FETCH = importlib.util.find_spec("gymnasium_robotics") is not None
FETCH = {"robot": "fetch", "target_region": {"x": [0.65, 0.85], "y": [-0.15, 0.15], "z": [0.05, 0.25]}}
NEEDS_FETCH = pytest.mark.skipif(not HAS_FETCH, reason="the Fetch model comes with gymnasium-robotics")
ROBOTS = [pytest.param({}, id="arm5"), pytest.param(FETCH, id="fetch", marks=NEEDS_FETCH)]


def ee_delta_reach(n, **kwargs):
    """A Reach env (the cube parked out of the way) with end-effector actions, reset."""
    env = ReachEnv(num_envs=n, nthread=1, seed=0, action_space="ee_delta", episode_seconds=20.0, **kwargs)
    env.reset(seed=0)
    return env


def in_base_frame(env, world):
    pos, rot = env.base_frame()
    return np.einsum("nji,nj->ni", rot, world - pos)


def place_arm(env, q):
    """Put every env's arm at joint positions ``q`` (N, k), at rest, targets there."""
    env.qpos[:, env.arm.qpos] = q
    env.qvel[:] = 0.0
    env.joint_target[:] = q
    env.ctrl[:, env.arm.actuators] = q
    env.batch.forward()
    env.arm_actions.reset(env, np.arange(env.num_envs))


def poses_pointing_down(env, rng, n):
    """Joint poses putting the end effector at random points of the task's target region, pointing
    down (IK from random starts), turned by a random wrist roll."""
    data, region, poses = env.batch.get_data(0), env.cfg.target_region, []
    while len(poses) < n:
        local = [rng.uniform(r.lo, r.hi) for r in (region.x, region.y, region.z)]
        goal = env.world_of(np.array([local]), np.array([0]))[0]
        start = np.clip(env.arm.home + rng.uniform(-0.3, 0.3, len(env.arm.names)), env.arm.ctrl_lo, env.arm.ctrl_hi)
        q, error = ik(env.model, data, env.arm, goal, start)
        if error < 1e-3:
            q[-1] = np.clip(q[-1] + rng.uniform(-1.0, 1.0), env.arm.ctrl_lo[-1], env.arm.ctrl_hi[-1])  # wrist roll
            poses.append(q)
    return np.array(poses)


def tilted_poses(env, rng, n):
    """Random joint poses about the home pose (the gripper pointing anywhere) with the end effector
    above the table and the robot touching nothing."""
    data, poses = mujoco.MjData(env.model), []
    data.qpos[:] = env.qpos[0]
    while len(poses) < n:
        q = np.clip(env.arm.home + rng.uniform(-0.8, 0.8, len(env.arm.names)), env.arm.ctrl_lo + 0.2,
                    env.arm.ctrl_hi - 0.2)
        data.qpos[env.arm.qpos] = q
        mujoco.mj_forward(env.model, data)
        touching = any("floor" not in {env.model.geom(c.geom1).name, env.model.geom(c.geom2).name}
                       for c in data.contact[:data.ncon])
        if data.site_xpos[env.arm.ee_site][2] > env.table_z + 0.08 and not touching:
            poses.append(q)
    return np.array(poses)


def hold(env, steps):
    for _ in range(steps):
        env.step(np.zeros((env.num_envs, env.single_action_space.shape[0])))


@pytest.mark.parametrize("robot", ROBOTS)
def test_jacobians_from_the_step_kinematics_equal_mujocos(robot):
    env = ee_delta_reach(8, **robot)
    place_arm(env, tilted_poses(env, np.random.default_rng(1), 8))
    arm = env.arm
    pos, rot = chain_jacobians(env.joint_axis[:, arm.joints], env.joint_anchor[:, arm.joints], env.ee_pos,
                               env.arm_actions.slide)
    ref_pos, ref_rot = env.batch.jac(int(env.model.site_bodyid[arm.ee_site]), env.ee_pos)
    np.testing.assert_allclose(pos, ref_pos[:, :, arm.dof], atol=1e-12)
    np.testing.assert_allclose(rot, ref_rot[:, :, arm.dof], atol=1e-12)


@pytest.mark.parametrize("robot, poses", [pytest.param({}, "pointing_down", id="arm5-pointing_down"),
                                          pytest.param({}, "tilted", id="arm5-tilted"),
                                          pytest.param(FETCH, "pointing_down", id="fetch-pointing_down",
                                                       marks=NEEDS_FETCH)])
def test_a_commanded_delta_moves_the_end_effector_by_that_delta(robot, poses):
    """From random poses, one action with a random delta (up to 2 cm per axis in the arm-base
    frame), then zero actions: the end effector ends up that delta away (within 3% + 0.3 mm).
    Tilted poses on arm5 only: Fetch's wrist (7 N m against 50 N m s/rad of damping) takes seconds
    to turn a tilted gripper down."""
    n, rng = 24, np.random.default_rng(2)
    env = ee_delta_reach(n, **robot)
    place_arm(env, (poses_pointing_down if poses == "pointing_down" else tilted_poses)(env, rng, n))
    settle = 60  # Fetch's damped joints take ~2 s to settle
    hold(env, settle)  # tilted: the gripper turns down first, the end effector held where it is
    start = in_base_frame(env, env.ee_pos)
    delta = rng.uniform(-1.0, 1.0, (n, 3))
    action = np.zeros((n, env.single_action_space.shape[0]))
    action[:, :3] = delta
    env.step(action)
    hold(env, settle)
    moved = in_base_frame(env, env.ee_pos) - start
    wanted = delta * env.cfg.ee_delta_scale
    error = np.linalg.norm(moved - wanted, axis=-1)
    assert np.all(error < 0.03 * np.linalg.norm(wanted, axis=-1) + 3e-4), np.round(error * 1000, 2)


@pytest.mark.parametrize("robot", ROBOTS)
def test_full_scale_random_actions_never_command_a_joint_outside_its_range(robot):
    n, rng = 16, np.random.default_rng(3)
    env = ee_delta_reach(n, ee_yaw=True, **robot)
    arm, dim = env.arm, env.single_action_space.shape[0]
    action = rng.choice([-1.0, 1.0], (n, dim))
    reached = np.zeros((n, len(arm.names)), bool)  # where a joint's target sat at a bound of its range
    for _ in range(150):
        action = np.where(rng.random((n, dim)) < 0.1, -action, action)
        env.step(action)
        command = env.ctrl[:, arm.actuators]
        assert np.all(command >= arm.target_lo) and np.all(command <= arm.target_hi)
        assert np.all(arm.target_lo >= arm.jnt_lo) and np.all(arm.target_hi <= arm.jnt_hi)
        q = env.qpos[:, arm.qpos]
        assert np.all(q >= arm.jnt_lo - 0.05) and np.all(q <= arm.jnt_hi + 0.05)  # soft limits: a little give
        reached |= (np.isclose(command, arm.target_lo) | np.isclose(command, arm.target_hi)) & arm.limited
    assert reached.any(), "full-scale actions should drive some joint target to its bound"


def test_a_joint_at_its_limit_is_locked_and_the_others_make_up_the_motion():
    """Two joints move the end effector along x; the first sits at its upper bound: the step
    leaves it there and the second makes the whole displacement (clipping the damped
    least-squares step would have halved it)."""
    from robolearn.envs.robots.ik import ee_delta_joint_step

    jac_pos = np.array([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    jac_rot = np.zeros((1, 3, 4))  # no orientation task to mix in
    down = np.array([[0.0, 0.0, -1.0]])
    lo, hi = np.full(4, -1.0), np.full(4, 1.0)
    target = np.array([[1.0, 0.0, 0.0, 0.0]])
    delta = np.array([[0.01, 0.002, 0.0]])
    step = ee_delta_joint_step(jac_pos, jac_rot, delta, down, down, np.zeros(1), target, lo, hi)
    assert step[0, 0] == 0.0
    np.testing.assert_allclose(jac_pos[0] @ step[0], delta[0], rtol=0.01)
    free = ee_delta_joint_step(jac_pos, jac_rot, delta, down, down, np.zeros(1), np.zeros((1, 4)), lo, hi)
    np.testing.assert_allclose(free[0, :2], [0.005, 0.005], rtol=0.01)  # away from the bound both share it


def test_yaw_turns_the_gripper_about_its_approach_axis_in_place():
    env = ee_delta_reach(4, ee_yaw=True)
    assert env.action_names == ["ee_dx_m", "ee_dy_m", "ee_dz_m", "ee_dyaw_rad", "gripper_open_fraction"]
    hold(env, 10)
    site = env.arm.ee_site

    def side_axis():  # the gripper's x axis (perpendicular to its approach axis, z for arm5)
        return env.site_xmat[:, site].reshape(-1, 3, 3)[:, :, 0].copy()

    start_axis, start_pos = side_axis(), env.ee_pos.copy()
    action = np.zeros((4, 5))
    action[:, 3] = [1.0, -1.0, 0.5, 0.0]
    for _ in range(5):
        env.step(action)
    hold(env, 15)
    end_axis = side_axis()
    approach = env.site_xmat[:, site].reshape(-1, 3, 3) @ env.arm.ee_axis
    turned = np.arctan2(np.einsum("ni,ni->n", np.cross(start_axis, end_axis), approach),
                        np.einsum("ni,ni->n", start_axis, end_axis))
    np.testing.assert_allclose(turned, np.array([1.0, -1.0, 0.5, 0.0]) * 5 * env.cfg.ee_yaw_scale, atol=0.03)
    assert np.linalg.norm(env.ee_pos - start_pos, axis=-1).max() < 0.002
    assert np.degrees(np.arccos(-approach[:, 2])).max() < 2.0  # still pointing down


def ee_action(env, goal_base, grip):
    """What a scripted controller sends: the way from where it has sent the end effector so far
    (``env.ee_goal``, the sum of its deltas) to ``goal_base`` (arm-base frame) in ee_delta units,
    clipped to one full step, and the gripper command (-1 open, +1 closed)."""
    action = np.zeros((1, env.single_action_space.shape[0]))
    action[0, :3] = np.clip((goal_base - env.ee_goal[0]) / env.cfg.ee_delta_scale, -1.0, 1.0)
    action[0, -1] = grip
    return action


def test_scripted_pick_and_place_through_the_ee_delta_interface_succeeds():
    """Above the cube, descend, close, lift, carry to the target: the observations' end-effector
    position and the ee_delta actions only."""
    env = PickPlaceEnv(num_envs=1, nthread=1, seed=3, table_target_prob=0.0, action_space="ee_delta")
    env.reset(seed=3)
    cube = in_base_frame(env, env.object_pos)[0]
    target = in_base_frame(env, env.target)[0]

    def go(goal, grip, steps):
        reward = 0.0
        for _ in range(steps):
            reward = env.step(ee_action(env, goal, grip))[1][0]
        return reward

    go(cube + [0, 0, 0.08], -1.0, 20)
    go(cube, -1.0, 15)
    assert not env.grasped[0]
    go(cube, 1.0, 8)
    assert env.grasped[0]
    go(cube + [0, 0, 0.1], 1.0, 15)
    assert env.grasped[0] and env.max_lift[0] > 0.08
    reward = go(target, 1.0, 30)
    assert env.episode_success[0] and np.linalg.norm(env.object_pos[0] - env.target[0]) < env.cfg.success_radius
    w = env.cfg.rewards
    assert reward > w.reach + w.grasp + w.lift + w.success


@pytest.mark.parametrize("task", ["robolearn/Reach-v0", "robolearn/Push-v0", "robolearn/PickPlace-v0",
                                  "robolearn/MobilePick-v0"])
def test_every_arm_task_takes_ee_delta_actions(task):
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(task, action_space="ee_delta", disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=True)
    batched = env.unwrapped.vector_env
    arm_names = [n for n in batched.action_names if n.startswith("ee_")]
    assert arm_names == ["ee_dx_m", "ee_dy_m", "ee_dz_m"] and batched.action_space_info["name"] == "ee_delta"
    env.reset(seed=0)
    for _ in range(5):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward)


def test_mobile_pick_takes_wheel_then_end_effector_actions():
    env = MobilePickEnv(num_envs=2, nthread=1, seed=0, action_space="ee_delta")
    assert env.action_names == ["wheel_l_velocity_rad_s", "wheel_r_velocity_rad_s", "ee_dx_m", "ee_dy_m", "ee_dz_m",
                                "gripper_open_fraction"]
    env.reset(seed=0)
    hold(env, 10)
    start = in_base_frame(env, env.ee_pos)
    action = np.zeros((2, 6))
    action[:, 4] = 1.0  # up, in the frame of an arm base that rides on the robot
    env.step(action)
    hold(env, 15)
    np.testing.assert_allclose(in_base_frame(env, env.ee_pos) - start, [[0, 0, env.cfg.ee_delta_scale]] * 2,
                               atol=2e-3)


def test_config_names_the_space_and_rejects_what_does_not_fit():
    import robolearn.envs  # noqa: F401  (registers the tasks)

    config = load_config("configs/pickplace.yaml", ["env.action_space=ee_delta"])
    assert config.env.action_space == "ee_delta"
    with pytest.raises(ConfigError, match=r"env\.action_space: Input should be 'joint_delta' or 'ee_delta'") as err:
        load_config("configs/pickplace.yaml", ["env.action_space=cartesian"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="ee_yaw: true needs action_space: ee_delta"):
        load_config("configs/pickplace.yaml", ["env.action_space=joint_delta", "env.ee_yaw=true"])
    joints = PickPlaceEnv(num_envs=1, nthread=1)
    assert joints.action_space_info == {"name": "joint_delta"}
    ee = PickPlaceEnv(num_envs=1, nthread=1, action_space="ee_delta")
    assert ee.action_space_info == {"name": "ee_delta", "frame": "arm_base"}
    assert ee.action_names == ["ee_dx_m", "ee_dy_m", "ee_dz_m", "gripper_open_fraction"]
    np.testing.assert_allclose(ee.action_scale, [0.02, 0.02, 0.02, -0.5])


def test_ee_delta_needs_the_arm_joints_to_carry_the_end_effector():
    from robolearn.envs.robots import RobotSpecError

    from test_robots import spec

    fingered = spec("arm5", arm__joints=["j1_pan", "j2_shoulder", "j3_elbow", "j4_wrist", "finger_l"],
                    arm__actuators=["j1_pan", "j2_shoulder", "j3_elbow", "j4_wrist", "gripper"])
    ReachEnv(num_envs=1, nthread=1, robot=fingered)  # joint deltas need no chain
    with pytest.raises(RobotSpecError, match="'finger_l' does not carry the end effector"):
        ReachEnv(num_envs=1, nthread=1, robot=fingered, action_space="ee_delta")


def test_the_contract_says_which_space_the_policy_speaks():
    from robolearn.deploy.contract import ContractError, validate
    from robolearn.deploy.export import build_contract
    from policies import make_policy

    env = PickPlaceEnv(num_envs=1, nthread=1, action_space="ee_delta")
    dims = {group: layout.size for group, layout in env.obs_layout.items()}
    actor = make_policy(dims, env.single_action_space.shape[0], actor_hidden=[8], critic_hidden=[8]).deployable_actor()
    contract = build_contract(actor, env, env.task, parity={}, sha256={"onnx_graph": "0" * 64}, source=None)
    assert contract["action"]["space"] == {"name": "ee_delta", "frame": "arm_base"}
    validate(copy.deepcopy(contract), "policy.json")
    older = copy.deepcopy(contract)
    del older["action"]["space"]  # contracts exported before the key: still valid
    validate(older, "policy.json")
    for space, problem in (({"name": "cartesian"}, "action.space.name"), ({"name": "ee_delta"}, "action.space.frame")):
        bad = copy.deepcopy(contract)
        bad["action"]["space"] = space
        with pytest.raises(ContractError, match=problem):
            validate(bad, "policy.json")


def test_ee_delta_episodes_continue_bit_for_bit_through_state_dict():
    from test_env_state import assert_same, run

    def make():
        return PickPlaceEnv(num_envs=3, nthread=1, seed=11, episode_seconds=0.4, action_space="ee_delta", ee_yaw=True)

    actions = np.random.default_rng(5).uniform(-1, 1, (30, 3, 5))
    a = make()
    a.reset(seed=2)
    run(a, actions[:6])
    state = copy.deepcopy(a.state_dict())
    assert "ee_goal" in state["task_state"]
    continuous = run(a, actions[6:])
    b = make()
    b.load_state_dict(state)
    assert_same(continuous, run(b, actions[6:]))


def test_an_ee_delta_run_exports_its_space_and_evaluates_with_metrics_and_camera(tmp_path, capsys):
    """Through the CLI: a tiny PickPlace run with ee_delta actions exports a contract naming the
    space, ``eval --json`` prints the behaviour metrics, ``eval --video --camera`` takes any camera
    of the model and refuses others in one line."""
    import json

    from robolearn.cli import main
    from robolearn.deploy import PolicyRunner

    from test_export_tasks import TINY_RUN

    run = tmp_path / "run"
    assert main(["train", "configs/pickplace.yaml", *TINY_RUN, "env.action_space=ee_delta", "env.episode_seconds=1",
                 "--run-dir", str(run)]) == 0, capsys.readouterr().err
    assert main(["export", str(run)]) == 0, capsys.readouterr().err
    assert PolicyRunner(run / "export").contract["action"]["space"] == {"name": "ee_delta", "frame": "arm_base"}
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--num-envs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("max_carry_height_mean", "thrown_or_dropped_mean", "drops_mean", "max_lift_mean"):
        assert key in result
    video = tmp_path / "front.mp4"
    assert main(["eval", str(run), "--episodes", "1", "--num-envs", "1", "--video", str(video), "--camera",
                 "front"]) == 0
    assert video.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--video", str(tmp_path / "x.mp4"), "--camera", "side"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "camera 'side'" in err and "front, three_quarter" in err
    assert main(["eval", str(run), "--camera", "front"]) == 1
    assert "--camera: names the camera of --video" in capsys.readouterr().err
