"""Arm tasks (Reach, Push, PickPlace) and MobilePick: model sanity, scripted grasp, reward terms on
hand-built states, success detection, randomization of the object."""

import gymnasium
import mujoco
import numpy as np
import pytest
import robolearn.envs  # noqa: F401  (registers the tasks)
from gymnasium.utils.env_checker import check_env
from robolearn.envs.arm import PickPlaceEnv, PushEnv, ReachEnv
from robolearn.envs.arm.base import grasp_indicator
from robolearn.envs.arm.object_metrics import LIFTED
from robolearn.envs.robots.ik import ik as robot_ik
from robolearn.envs.diffdrive.nav import yaw_of
from robolearn.envs.mobile.mobile_pick import CLOSEST_START, TABLE_HALF, MobilePickEnv
from robolearn.envs.rewards import (reward_carry_height, reward_carry_speed, reward_centred_grip, reward_drop,
                                    reward_lift, reward_object_push, reward_place, reward_reach, reward_square_pads)

from robolearn.config import ConfigError, RandomizationConfig

ARM_TASKS = ["robolearn/Reach-v0", "robolearn/Push-v0", "robolearn/PickPlace-v0", "robolearn/MobilePick-v0"]
ARM_BODIES = ("arm_base", "link1", "link2", "link3", "link4", "hand", "finger_l", "finger_r")
ARM_JOINTS = ("j1_pan", "j2_shoulder", "j3_elbow", "j4_wrist", "j5_roll")


def ik(env, data, goal, q0, iters=40):
    """Arm joint positions putting the end effector at ``goal`` with the gripper pointing down."""
    return robot_ik(env.model, data, env.arm, goal, q0, iters=iters)[0]


@pytest.mark.parametrize("env_cls", [ReachEnv, MobilePickEnv])
def test_model_sanity(env_cls):
    model = env_cls(num_envs=1, nthread=1).model
    for name in ARM_BODIES + ("object",):
        assert model.body(name).mass[0] > 0, name
    assert model.body_subtreemass[model.body("arm_base").id] > 4.0  # a ~5 kg arm
    for i in range(model.nu):
        joint = model.actuator_trnid[i, 0]
        if model.actuator_trntype[i] != mujoco.mjtTrn.mjTRN_JOINT or not model.jnt_limited[joint]:
            continue  # wheels: velocity servos on unlimited joints
        lo, hi = model.jnt_range[joint]
        clo, chi = model.actuator_ctrlrange[i]
        assert lo <= clo < chi <= hi, model.actuator(i).name
        assert model.actuator_forcerange[i, 1] > 0
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # arm links do not collide with each other: only the hand and finger pads have contype
    collide = [model.geom(g).name for g in range(model.ngeom) if model.geom_contype[g] & 2]
    assert sorted(collide) == ["finger_l", "finger_r", "palm"]


def test_scripted_sequence_grasps_and_lifts_the_cube():
    env = PickPlaceEnv(num_envs=1, nthread=1, seed=0)
    env.reset(seed=0)
    model, arm, gripper = env.model, env.arm, env.gripper
    data = env.batch.get_data(0)
    cube = data.body("object").xpos.copy()
    pads = gripper.touch
    assert [model.sensor(model.sensor_adr.tolist().index(a)).name for a in pads] == ["finger_l_grasp", "finger_r_grasp"]
    FINGER_OPEN = 1.0  # open fraction

    def move(goal, grip, seconds):
        data.ctrl[arm.actuators] = ik(env, data, goal, data.qpos[arm.qpos])
        data.ctrl[gripper.actuators] = gripper.ctrl(np.array([grip]))[0]
        for _ in range(int(seconds / model.opt.timestep)):
            mujoco.mj_step(model, data)

    move(cube + [0, 0, 0.1], FINGER_OPEN, 0.8)
    move(cube, FINGER_OPEN, 0.8)
    assert np.linalg.norm(data.site("ee").xpos - cube) < 0.01
    move(cube, 0.0, 0.5)  # close
    forces = data.sensordata[pads]
    assert np.all(forces > 1.0)
    move(cube + [0, 0, 0.15], 0.0, 1.2)  # lift
    assert data.body("object").xpos[2] > cube[2] + 0.12
    assert np.all(data.sensordata[pads] > 1.0)
    move(cube + [0.1, 0.1, 0.15], 0.0, 1.0)  # carry
    assert data.body("object").xpos[2] > cube[2] + 0.1
    assert np.linalg.norm(data.body("object").xpos[:2] - (cube[:2] + 0.1)) < 0.03


@pytest.mark.parametrize("task", ARM_TASKS)
def test_check_env_single_view(task):
    env = gymnasium.make(task, disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and "critic" in info
    for _ in range(5):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward)


@pytest.mark.parametrize("task", ARM_TASKS)
def test_make_vec_entry_point_and_episode_metrics(task):
    env = gymnasium.make_vec(task, num_envs=3, vectorization_mode="vector_entry_point", episode_seconds=0.4,
                             nthread=1)
    assert env.num_envs == 3 and env.max_episode_steps == 10
    obs, _ = env.reset(seed=0)
    assert obs["policy"].shape == (3, env.obs_layout["policy"].size)
    for name in ("joint_pos", "joint_vel", "gripper", "ee_pose", "object_pos", "object_vel", "target", "last_action"):
        assert name in env.obs_layout["policy"].slices
    assert "contact_forces" in env.obs_layout["critic"].slices
    info = {}
    for _ in range(10):
        obs, reward, term, trunc, info = env.step(np.zeros((3, env.single_action_space.shape[0])))
    assert trunc.all() and "episode" in info
    for key in ("success", "time_to_grasp", "max_lift", "drops"):
        assert key in env.episode_metrics and key in info["episode"]
    np.testing.assert_allclose(info["episode"]["time_to_grasp"], 0.4)  # never grasped: the episode's duration


def test_reward_terms_on_values():
    forces = np.array([[3.0, 2.0], [3.0, 0.0], [0.2, 0.3], [3.0, 2.0]])
    near = np.array([True, True, True, False])
    np.testing.assert_array_equal(grasp_indicator(forces, near, 1.0), [1, 0, 0, 0])
    np.testing.assert_allclose(reward_lift(np.array([0.05, 0.05, 0.3]), np.array([1.0, 0.0, 1.0]), 0.1), [0.5, 0, 1])
    assert reward_reach(np.array([0.0]), 0.1)[0] == 1.0 and reward_reach(np.array([1.0]), 0.1)[0] < 1e-6
    np.testing.assert_allclose(reward_place(np.zeros(2), 0.1, np.array([1.0, 0.0])), [1.0, 0.0])
    held = np.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(reward_carry_height(np.array([0.2, 0.4, 0.4]), held, 0.25), [0.0, 0.15, 0.0])
    np.testing.assert_allclose(reward_carry_speed(np.array([0.5, 1.25, 1.25]), held, 0.75), [0.0, 0.5, 0.0])
    np.testing.assert_allclose(reward_object_push(np.array([0.3, 0.3, 0.0]), np.array([True, False, True])), [0.3, 0, 0])
    lost, in_zone = np.array([True, True, False]), np.array([False, True, False])
    np.testing.assert_array_equal(reward_drop(lost, in_zone), [1.0, 0.0, 0.0])
    # lift's saturating height times 1 - tanh(offset / std): centred and aloft 1, 2 cm off 1 - tanh(1),
    # half the lift height half that, on the table or not held 0
    offset, height = np.array([0.0, 0.02, 0.02, 0.0, 0.0]), np.array([0.2, 0.2, 0.05, 0.0, 0.2])
    np.testing.assert_allclose(reward_centred_grip(offset, height, np.array([1.0, 1, 1, 1, 0]), 0.1, 0.02),
                               [1.0, 1 - np.tanh(1), (1 - np.tanh(1)) / 2, 0.0, 0.0])


def _grasp_pose(env, i):
    """Hand-build env i: gripper around its cube, fingers closed on it, joint targets there."""
    model = env.model
    data = env.batch.get_data(i)
    q = ik(env, data, env.object_pos[i].copy(), env.arm.home)
    env.qpos[i, env.arm.qpos] = q
    env.qpos[i, env.gripper.qpos] = env.object_half[i]
    env.qvel[i] = 0.0
    env.joint_target[i] = q
    env.batch.forward([i])


def test_grasp_indicator_and_lift_gate_on_hand_built_states():
    env = PickPlaceEnv(num_envs=2, nthread=1, seed=0, table_target_prob=0.0)
    env.reset(seed=0)
    _grasp_pose(env, 0)
    # env 1: the cube floats 8 cm above its resting place, the gripper far away (no grasp)
    a = env._obj_qpos
    env.qpos[1, a + 2] = env.object_rest_z[1] + 0.08
    env.batch.forward([1])
    close = np.zeros((2, 6))
    close[:, 5] = 1.0
    w = env.cfg.rewards
    _, reward, _, _, _ = env.step(close)
    assert env.grasped[0] and not env.grasped[1]
    forces = env.pad_forces()[0]
    assert forces.sum() > env.cfg.grasp_force and forces.min() > 0
    # env 1 earns no grasp, lift or place reward although its cube is above the table
    lift = env.object_pos[1, 2] - env.object_rest_z[1]
    assert lift > 0.05
    assert reward[1] < w.reach + 0.01
    # keep closing and raise the arm: the grasped cube lifts and the lift term pays
    for _ in range(15):
        act = close.copy()
        act[0, 1] = -0.5  # shoulder back: the gripper rises
        _, reward, _, _, _ = env.step(act)
    assert env.grasped[0] and env.max_lift[0] > 0.03
    assert reward[0] > w.grasp + w.lift * 0.3


def test_reach_success_within_2cm_held():
    env = ReachEnv(num_envs=2, nthread=1, seed=0, episode_seconds=0.4)
    env.reset(seed=0)
    env.target[0] = env.ee_pos[0] + [0.005, 0, 0]
    env.target[1] = env.ee_pos[1] + [0.03, 0, 0]  # 3 cm: not a success
    for step in range(env.cfg.hold_steps):
        _, reward, term, trunc, info = env.step(np.zeros((2, 6)))
        assert env.episode_success.tolist() == [step == env.cfg.hold_steps - 1, False]
    assert not term.any() and reward[0] > env.cfg.rewards.success
    for _ in range(10 - env.cfg.hold_steps):
        _, _, term, trunc, info = env.step(np.zeros((2, 6)))
    assert trunc.all() and info["episode"]["success"].tolist() == [1.0, 0.0]
    ended = ReachEnv(num_envs=1, nthread=1, seed=0, terminate_on_success=True, hold_steps=1)
    ended.reset(seed=0)
    ended.target[0] = ended.ee_pos[0]
    assert ended.step(np.zeros((1, 6)))[2][0]


def test_push_success_when_cube_on_target():
    env = PushEnv(num_envs=2, nthread=1, seed=0)
    env.reset(seed=0)
    env.target[0] = env.object_pos[0] + [0.01, 0.0, 0.0]
    env.target[1] = env.object_pos[1] - [0.0, 0.0, 0.05]  # right below a lifted cube: not a success
    for _ in range(env.cfg.hold_steps):
        _, _, term, _, info = env.step(np.zeros((2, 5)))
    assert env.episode_success.tolist() == [True, False] and not term.any()


def test_push_has_five_arm_actions_and_holds_the_gripper_closed():
    env = PushEnv(num_envs=1, nthread=1, seed=0)
    env.reset(seed=0)
    assert env.single_action_space.shape == (5,)
    assert env.action_names == [f"{j}_delta_rad" for j in ARM_JOINTS]
    assert env.action_scale.tolist() == [env.cfg.delta_scale] * 5 and env.action_offset.tolist() == [0.0] * 5
    assert env.fixed_commands == {"gripper_open_fraction": 0.0}
    assert env.obs_layout["policy"].widths["last_action"] == 5
    for _ in range(5):
        env.step(-np.ones((1, 5)))
    assert np.all(env.ctrl[0, env.gripper.actuators] == 0.0)
    assert np.all(env.qpos[0, env.gripper.qpos] < 2e-3)


@pytest.mark.parametrize("task", ["robolearn/Nav-v0", "robolearn/NavPO-v0", "robolearn/Reach-v0",
                                  "robolearn/PickPlace-v0", "robolearn/MobilePick-v0"])
def test_other_tasks_fix_no_command_and_no_action_has_scale_zero(task):
    from robolearn.envs import get_task

    env = get_task(task).env_cls(num_envs=1, nthread=1, seed=0)
    assert env.fixed_commands == {}
    assert len(env.action_names) == env.single_action_space.shape[0] == len(env.action_scale)
    assert np.all(env.action_scale != 0)


def test_pickplace_success_needs_the_hold():
    env = PickPlaceEnv(num_envs=2, nthread=1, seed=0)
    env.reset(seed=0)
    env.target[0] = env.object_pos[0].copy()  # the cube already sits on the target (on the table)
    k = env.cfg.hold_steps
    assert k > 1
    for step in range(k):
        _, reward, term, _, info = env.step(np.zeros((2, 6)))
        assert env.episode_success[0] == (step == k - 1) and not term.any()
    assert not env.episode_success[1]


def test_object_size_and_mass_randomization_apply():
    rand = RandomizationConfig.model_validate({"params": {
        "object_size": {"target": "layout", "select": {"layout": "object_size"}, "op": "scale",
                        "init_range": [0.8, 0.8], "limits": [0.7, 1.2]},
        "object_mass": {"target": "body_mass", "select": {"bodies": ["object"]}, "op": "scale",
                        "init_range": [2.0, 2.0], "limits": [0.5, 3.0]},
        "pad_friction": {"target": "geom_friction", "select": {"geoms": ["finger_l", "finger_r"]}, "op": "scale",
                         "init_range": [0.5, 0.5], "limits": [0.5, 1.5]},
    }})
    env = PickPlaceEnv(num_envs=4, nthread=1, seed=0, randomization=rand)
    plain = PickPlaceEnv(num_envs=4, nthread=1, seed=0)
    env.reset(seed=0)
    plain.reset(seed=0)
    geom, body = env._obj_geom, env._obj_body
    np.testing.assert_allclose(env.object_half, plain.object_half * 0.8)
    np.testing.assert_allclose(env.model_field("geom_size")[:, geom, 0], env.object_half)
    np.testing.assert_allclose(env.object_pos[:, 2], env.table_z + env.object_half)  # resting on the table
    np.testing.assert_allclose(env.model_field("body_mass")[:, body], 2 * env.model.body_mass[body])
    finger = env.model.geom("finger_l").id
    np.testing.assert_allclose(env.model_field("geom_friction")[:, finger, 0], 0.5 * env.model.geom_friction[finger, 0])
    assert "randomization" in env.obs_layout["critic"].slices


@pytest.mark.parametrize("name", ["reach", "push", "pickplace", "mobile_pick"])
def test_bundled_configs_build_their_env_with_adr(name):
    from pathlib import Path

    from robolearn.config import load_config
    from robolearn.envs import make_env

    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    config = load_config(path, ["env.num_envs=4", "env.nthread=1"])
    assert config.randomization.adr.enabled
    env = make_env(config.env, seed=0, randomization=config.randomization)
    obs, _ = env.reset(seed=0)
    assert obs["critic"].shape[1] == env.obs_layout["critic"].size
    for _ in range(3):
        obs, reward, *_ = env.step(np.zeros((4, env.single_action_space.shape[0])))
    assert np.isfinite(obs["critic"]).all() and np.isfinite(reward).all()


def test_scripted_pick_and_place_through_the_action_interface_succeeds():
    """Joint-delta actions toward IK solutions and the gripper command: reach, close, lift, carry."""
    env = PickPlaceEnv(num_envs=1, nthread=1, seed=3, table_target_prob=0.0)
    env.reset(seed=3)

    def go(goal, grip, steps):
        reward = 0.0
        for _ in range(steps):
            q = ik(env, env.batch.get_data(0), goal, env.joint_target[0])
            action = np.zeros((1, 6))
            action[0, :5] = np.clip((q - env.joint_target[0]) / env.cfg.delta_scale, -1, 1)
            action[0, 5] = grip
            reward = env.step(action)[1][0]
        return reward

    cube, target = env.object_pos[0].copy(), env.target[0].copy()
    go(cube + [0, 0, 0.08], -1.0, 15)
    go(cube, -1.0, 15)
    assert not env.grasped[0]
    go(cube, 1.0, 8)
    assert env.grasped[0] and env.grasp_step[0] > 0
    go(cube + [0, 0, 0.1], 1.0, 15)
    assert env.grasped[0] and env.max_lift[0] > 0.08
    reward = go(target, 1.0, 25)
    assert env.episode_success[0] and np.linalg.norm(env.object_pos[0] - target) < env.cfg.success_radius
    w = env.cfg.rewards
    assert reward > w.reach + w.grasp + w.lift + w.success


# ---------------------------------------------------------------------------------------------
# MobilePick


def _layout_randomization(**values):
    """Fixed layout parameters through the randomization config (what the ADR curriculum sets)."""
    params = {name: {"target": "layout", "select": {"layout": name}, "op": "set", "init_range": [v, v]}
              for name, v in values.items()}
    return RandomizationConfig.model_validate({"params": params})


EASY = dict(table_distance=0.6, zone_distance=0.7, zone_bearing=1.5, heading_noise=0.3)


def _mobile_layout(env):
    b = env._base_qpos
    start, table, zone = env.qpos[:, b:b + 2], env.table, env.target[:, :2]
    bearing = lambda p: np.arctan2(p[:, 1] - table[:, 1], p[:, 0] - table[:, 0])  # noqa: E731
    zone_vs_start = np.abs((bearing(zone) - bearing(start) + np.pi) % (2 * np.pi) - np.pi)
    to_table = np.arctan2(table[:, 1] - start[:, 1], table[:, 0] - start[:, 0])
    heading_error = np.abs((yaw_of(env.qpos[:, b + 3:b + 7]) - to_table + np.pi) % (2 * np.pi) - np.pi)
    clearance = np.linalg.norm(np.maximum(np.abs(start - table) - TABLE_HALF, 0.0), axis=-1)
    return (np.linalg.norm(start - table, axis=-1), np.linalg.norm(zone - table, axis=-1), zone_vs_start,
            heading_error, clearance)


def test_mobile_pick_layout_parameters_set_the_curriculum():
    env = MobilePickEnv(num_envs=256, nthread=1, seed=0, randomization=_layout_randomization(**EASY))
    env.reset(seed=0)
    start_d, zone_d, zone_vs_start, heading_error, clearance = _mobile_layout(env)
    np.testing.assert_allclose(start_d, 0.6, atol=1e-9)  # upper end 0.6 < configured lo 0.8: exactly 0.6
    np.testing.assert_allclose(zone_d, 0.7, atol=1e-9)
    assert zone_vs_start.max() <= 1.5 + 1e-9 and heading_error.max() <= 0.3 + 1e-6
    assert clearance.min() >= 0.3 - 1e-9  # the base (radius 0.25) starts clear of the table
    # nominal (no randomization): the full task
    env = MobilePickEnv(num_envs=256, nthread=1, seed=0)
    env.reset(seed=0)
    start_d, zone_d, zone_vs_start, heading_error, clearance = _mobile_layout(env)
    cfg = env.cfg
    assert cfg.table_distance.lo <= start_d.min() and start_d.max() <= cfg.table_distance.hi
    assert cfg.zone_distance.lo <= zone_d.min() and zone_d.max() <= cfg.zone_distance.hi
    assert zone_vs_start.max() > 2.8 and heading_error.max() > 2.8  # zone behind the table, robot facing away
    assert clearance.min() >= 0.3 - 1e-9


def test_mobile_pick_carry_start_opened_at_once_is_a_drop():
    """A carry start holds the cube aloft from its first step: opening the gripper at once is a
    drop, charged the drop penalty (not a free way to put the cube on the table)."""
    env = MobilePickEnv(num_envs=4, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0))
    env.reset(seed=0)
    assert env.grasped.all() and env.lifted_grasp.all()
    act = np.zeros((4, 8))
    act[:, 7] = -1.0  # open from the first step on
    drop = list(env.reward_weights.names).index("drop")
    charged = np.zeros(4)
    for _ in range(10):
        env.step(act)
        charged += env.lost_grasp
    assert (charged == 1).all() and (env.drops >= 1).all()
    np.testing.assert_allclose(env.episode_reward_terms[:, drop], env.cfg.rewards.drop)


def test_mobile_pick_config_rejects_layouts_that_do_not_fit():
    with pytest.raises(ValueError, match="table_distance.lo=0.5"):
        MobilePickEnv(num_envs=1, table_distance=[0.5, 1.0])
    with pytest.raises(ValueError, match="zone_distance.lo=0.4"):
        MobilePickEnv(num_envs=1, zone_distance=[0.4, 1.0])
    assert CLOSEST_START == pytest.approx(0.6)


def test_mobile_pick_cube_in_the_zone_without_a_grasp_is_no_success():
    env = MobilePickEnv(num_envs=1, nthread=1, seed=0)
    env.reset(seed=0)
    zone = env.target[0, :2].copy()
    env.mocap_pos[0, env._table_mocap, :2] = zone  # move the table under the zone, the cube onto it
    env.table[0] = zone
    qpos = env.qpos[0].copy()
    qpos[env._obj_qpos:env._obj_qpos + 3] = [zone[0], zone[1], env.object_rest_z[0]]
    env.qpos[0] = qpos
    for _ in range(env.cfg.hold_steps + 2):
        _, _, term, _, _ = env.step(np.zeros((1, 8)))
        assert not term[0]
    assert np.linalg.norm(env.object_pos[0, :2] - zone) < env.cfg.zone_radius
    assert not env.grasped[0] and not env.episode_success[0]


def test_mobile_pick_carry_start_puts_the_cube_in_the_closed_gripper():
    """``carry_start`` 1: every episode starts where a grasp leaves the robot, beside the table and
    facing it, holding the cube above the table top (it stays held while the base turns away and the
    gripper stays closed, and falls when it opens); nominal 0: on the table."""
    env = MobilePickEnv(num_envs=8, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0))
    env.reset(seed=0)
    np.testing.assert_allclose(env.object_pos, env.grasp_point, atol=1e-9)  # between the pads' centres,
    np.testing.assert_allclose(np.linalg.norm(env.object_pos - env.ee_pos, axis=-1), 0.024, atol=1e-6)  # not at the tips
    b = env._base_qpos
    edge_gap = np.abs(env.qpos[:, b:b + 2] - env.table).max(-1) - 0.25 - env.base.footprint
    assert ((edge_gap >= 0.05 - 1e-9) & (edge_gap <= 0.15 + 1e-9)).all()  # a few cm off the table edge
    assert (np.abs(env.object_pos[:, :2] - env.table).max(-1) < 0.25).all()  # over the table
    assert (env.object_pos[:, 2] > env.object_rest_z + 0.05).all()
    hold = np.zeros((8, 8))
    hold[:, :2], hold[:, 7] = [-0.4, 0.4], 1.0  # turn on the spot (~65 deg), gripper closed, arm still
    for _ in range(60):
        _, reward, terminated, _, _ = env.step(hold)
        assert env.grasped.all() and not terminated.any()
    assert (np.abs(env.object_pos[:, :2] - env.table).max(-1) > 0.25).all()  # carried off the table
    assert (env.bumps == 0).all()
    carry_height = env.episode_reward_terms[:, list(env.reward_weights.names).index("carry_height")]
    assert (carry_height == 0.0).all()  # held below carry_height_limit: no penalty
    hold[:, :2], hold[:, 7] = 0.0, -1.0  # open: the cube falls below the table top, which ends the episode
    dropped = np.zeros(8, bool)
    for _ in range(15):
        _, _, terminated, _, info = env.step(hold)
        first = terminated & ~dropped  # (the next episodes start holding, and the gripper opens at once)
        dropped |= terminated
        if first.any():
            episode = {k: v[first] for k, v in info["episode"].items()}
            assert (episode["drops"] >= 1).all() and (episode["success"] == 0).all()
            np.testing.assert_allclose(episode["reward/drop"], env.cfg.rewards.drop)  # let go outside the zone, once
    assert dropped.all()
    env = MobilePickEnv(num_envs=64, nthread=1, seed=0, randomization=_layout_randomization(carry_start=0.5))
    env.reset(seed=0)
    held = np.linalg.norm(env.object_pos - env.grasp_point, axis=-1) < 1e-6
    assert 0.25 < held.mean() < 0.75
    np.testing.assert_allclose(env.object_pos[~held, 2], env.object_rest_z[~held])  # the others on the table


def test_mobile_pick_carry_terms_pay_a_lifted_grasp_only():
    """``carry_progress`` and ``carry`` pay a held cube that is lifted (over LIFTED above its resting
    height), not one grasped on the table top: env 1's resting height is raised to the held cube's
    height, so it reads grasped and unlifted, as a cube slid over the table in the gripper."""
    env = MobilePickEnv(num_envs=2, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0),
                        rewards={"carry_progress": 1.0, "carry": 1.0})
    env.reset(seed=0)
    env.object_rest_z[1] = env.object_pos[1, 2] - 0.5 * LIFTED
    drive = np.zeros((2, env.single_action_space.shape[0]))
    drive[:, :2], drive[:, -1] = [-0.4, 0.4], 1.0  # turn on the spot, carrying the cube off the table
    for _ in range(30):
        env.step(drive)
        assert env.grasped.all()
    paid = env.episode_reward_terms[:, [env.reward_weights.names.index(n) for n in ("carry_progress", "carry")]]
    assert (paid[0] != 0.0).all() and (paid[0, 1] > 0.0)
    np.testing.assert_array_equal(paid[1], 0.0)


def test_mobile_pick_centred_grip_pays_a_cube_held_between_the_pads_middles():
    """A carry start holds the cube centred between the pads: centred_grip pays (nearly) its lift
    fraction; the same start with the cube 2 cm toward the fingertips pays 1 - tanh(1) of that."""
    paid = []
    for shift in (0.0, 0.02):
        env = MobilePickEnv(num_envs=2, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0),
                            rewards={"centred_grip": 1.0})
        env.reset(seed=0)
        if shift:
            tips = env.ee_pos - env.grasp_point
            qpos = env.qpos.copy()
            qpos[:, env._obj_qpos:env._obj_qpos + 3] += shift * tips / np.linalg.norm(tips, axis=-1, keepdims=True)
            env.qpos[:] = qpos
            env.batch.forward([0, 1])
        column = env.reward_weights.names.index("centred_grip")
        hold = np.zeros((2, env.single_action_space.shape[0]))
        hold[:, -1] = 1.0  # the gripper closed, all else still
        env.step(hold)
        assert env.grasped.all()
        lift = np.clip((env.object_pos[:, 2] - env.object_rest_z) / env.cfg.lift_height, 0, 1)
        offset = np.linalg.norm(env.object_pos - env.grasp_point, axis=-1)
        np.testing.assert_allclose(env.episode_reward_terms[:, column], lift * (1 - np.tanh(offset / 0.02)), rtol=1e-9)
        paid.append(env.episode_reward_terms[:, column] / lift)
    assert (paid[0] > 0.9).all() and (np.abs(paid[1] - (1 - np.tanh(1))) < 0.15).all()


def test_mobile_pick_object_in_hand_reads_the_cubes_offset_from_the_pads_middle_in_the_hand_frame():
    """The ``object_in_hand`` observation: zero for a carry start's centred cube; the cube moved 1 cm
    across the pads (the hand's x axis) and 2 cm toward the fingertips (its z axis) reads (0.01, 0, 0.02)."""
    env = MobilePickEnv(num_envs=2, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0))
    env.reset(seed=0)
    np.testing.assert_allclose(env._observe()["object_in_hand"], 0.0, atol=1e-9)
    hand = env.site_xmat[:, env.arm.ee_site].reshape(-1, 3, 3)
    qpos = env.qpos.copy()
    qpos[:, env._obj_qpos:env._obj_qpos + 3] += 0.01 * hand[:, :, 0] + 0.02 * hand[:, :, 2]
    env.qpos[:] = qpos
    env.batch.forward([0, 1])
    np.testing.assert_allclose(env._observe()["object_in_hand"], [[0.01, 0.0, 0.02]] * 2, atol=1e-9)
    assert "object_in_hand" in env.obs_layout["policy"].shapes and "object_in_hand" in env.obs_term_info


def test_mobile_pick_square_pads_reads_the_cubes_yaw_against_the_pads():
    """The cube's yaw in the hand is 0 (mod 90 degrees) for a carry start's cube, whose faces lie along the
    hand's axes; turned 30 degrees about the approach axis it reads +-30 (mod 90), and so does the cube
    turned 120 (a quarter turn more: the same sides). ``square_pads`` is (1 + cos 4 yaw) / 2 times the
    reach closeness: all of it square, 1/4 of it at 30 degrees; nothing while the cube is held."""
    env = MobilePickEnv(num_envs=2, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0),
                        rewards={"square_pads": 1.0})
    env.reset(seed=0)
    closeness = reward_reach(np.linalg.norm(env.object_pos - env.ee_pos, axis=-1), env.cfg.reach_std)
    np.testing.assert_allclose(np.cos(4.0 * env._yaw_in_hand()), 1.0, atol=1e-9)
    np.testing.assert_allclose(reward_square_pads(env._yaw_in_hand(), closeness), closeness, atol=1e-9)
    hand = env.site_xmat[:, env.arm.ee_site].reshape(-1, 3, 3)
    quat = env.qpos[:, env._obj_qpos + 3:env._obj_qpos + 7].copy()
    for degrees in (30.0, 120.0):
        turned = np.zeros((2, 4))
        for i in range(2):
            turn = np.zeros(4)
            mujoco.mju_axisAngle2Quat(turn, hand[i, :, 2], np.radians(degrees))
            mujoco.mju_mulQuat(turned[i], turn, quat[i])
        qpos = env.qpos.copy()
        qpos[:, env._obj_qpos + 3:env._obj_qpos + 7] = turned
        env.qpos[:] = qpos
        env.batch.forward([0, 1])
        off_square = np.abs((np.degrees(env._yaw_in_hand()) + 45.0) % 90.0 - 45.0)
        np.testing.assert_allclose(off_square, 30.0, atol=1e-6)
        np.testing.assert_allclose(reward_square_pads(env._yaw_in_hand(), closeness), 0.25 * closeness, atol=1e-9)
    square = list(env.reward_weights.names).index("square_pads")
    hold = np.zeros((2, env.action_space.shape[1]))
    hold[:, -1] = 1.0  # the gripper closed: held, so the term pays nothing (it is shaping for the grasp)
    env.step(hold)
    assert env.grasped.all() and (env.episode_reward_terms[:, square] == 0.0).all()


def test_mobile_pick_zone_observed_when_grasped_hides_the_zone_until_the_grasp():
    """``zone_observed: when_grasped``: the policy's target term reads zeros for a cube on the table and
    the zone relative to the cube (as ``always`` does) for a carry start's held cube; the critic keeps
    the zone (``target_position``) either way, and the export contract says when the term is zero."""
    layouts = _layout_randomization(carry_start=0.5)
    always = MobilePickEnv(num_envs=16, nthread=1, seed=3, randomization=layouts)
    masked = MobilePickEnv(num_envs=16, nthread=1, seed=3, randomization=layouts, zone_observed="when_grasped")
    obs_always, _ = always.reset(seed=3)
    obs_masked, _ = masked.reset(seed=3)
    held = masked.grasped.copy()
    assert 0 < held.sum() < 16
    target = lambda obs: obs["policy"][:, masked.obs_layout["policy"].slices["target"]]  # noqa: E731
    np.testing.assert_array_equal(target(obs_masked)[~held], 0.0)
    np.testing.assert_allclose(target(obs_masked)[held], target(obs_always)[held])
    assert (np.abs(target(obs_always)[~held]).sum(-1) > 0.5).all()  # the zone is 0.8 m or more from the cube
    zone = masked.obs_layout["critic"].slices["target_position"]
    np.testing.assert_allclose(obs_masked["critic"][:, zone], obs_always["critic"][:, zone])
    assert "zeros while the object is not grasped" in masked.obs_term_info["target"]["meaning"]
    assert "zeros" not in always.obs_term_info["target"]["meaning"]


def test_grasp_timeconst_stiffens_the_pads_and_the_randomizer_moves_it_per_env():
    """``env.grasp_timeconst`` sets the grasp geoms' contact time constant (the damping ratio kept);
    the ``contact_timeconst`` randomization target writes values into the per-env model fields the
    physics reads: the same value steps a held cube bit for bit as the stiff model does, the soft
    default differently, and every env gets its own sample."""
    def pads_param(lo, hi):
        return {"target": "contact_timeconst", "select": {"geoms": ["finger_l", "finger_r"]}, "op": "set",
                "init_range": [lo, hi]}

    carry = {"carry": {"target": "layout", "select": {"layout": "carry_start"}, "op": "set", "init_range": [1.0, 1.0]}}
    stiff = MobilePickEnv(num_envs=4, nthread=1, seed=0, grasp_timeconst=0.01,
                          randomization={"params": carry})
    soft = MobilePickEnv(num_envs=4, nthread=1, seed=0, randomization={"params": carry})
    moved = MobilePickEnv(num_envs=4, nthread=1, seed=0,
                          randomization={"params": {**carry, "pads": pads_param(0.01, 0.01)}})
    pads = [stiff.model.geom(name).id for name in ("finger_l", "finger_r")]
    np.testing.assert_array_equal(stiff.model.geom_solref[pads], [[0.01, 1.0], [0.01, 1.0]])
    np.testing.assert_array_equal(soft.model.geom_solref[pads], [[0.02, 1.0], [0.02, 1.0]])  # arm5.xml's (MuJoCo's default)
    np.testing.assert_array_equal(moved.model.geom_solref[pads], soft.model.geom_solref[pads])  # nominal model untouched
    turn = np.zeros((4, 8))
    turn[:, :2], turn[:, 4], turn[:, 7] = [-1.0, 1.0], 0.5, 1.0  # spin on the spot, raise the hand, gripper closed
    trajectories = []
    for env in (stiff, soft, moved):
        env.reset(seed=0)
        for _ in range(40):
            env.step(turn)
        assert env.grasped.all()
        trajectories.append(env.qpos.copy())
    np.testing.assert_array_equal(trajectories[2], trajectories[0])
    assert np.abs(trajectories[1] - trajectories[0]).max() > 1e-6
    spread = MobilePickEnv(num_envs=16, nthread=1, seed=0, randomization={"params": {"pads": pads_param(0.01, 0.02)}})
    spread.reset(seed=0)
    sampled = spread.randomizer.values[:, spread.randomizer.names.index("pads")]
    assert sampled.min() < 0.0125 and sampled.max() > 0.0175
    live = spread.model_field("geom_solref")
    np.testing.assert_array_equal(live[:, pads, 0], np.stack([sampled, sampled], axis=1))
    np.testing.assert_array_equal(live[:, pads, 1], 1.0)
    with pytest.raises(ConfigError, match=r"^env\.grasp_timeconst: 0\.005 s is under two physics timesteps \(0\.01 s\)"):
        MobilePickEnv(num_envs=1, nthread=1, grasp_timeconst=0.005)


@pytest.mark.parametrize("noslip", [None, 0])
def test_mobile_pick_held_cube_does_not_creep_out_of_the_gripper(noslip):
    """The scene's noslip pass holds a cube still in the closed gripper for a 10 s carry; without it
    MuJoCo's soft contacts let it creep out along the fingers under its own weight (~3 mm/s with
    the scene's pyramidal cones) until it slips out."""
    physics = None if noslip is None else {"noslip_iterations": noslip}
    env = MobilePickEnv(num_envs=4, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0),
                        physics=physics)
    env.reset(seed=0)
    assert env.batch.get_model(0).opt.noslip_iterations == (2 if noslip is None else noslip)
    hold = np.zeros((4, 8))
    hold[:, :2], hold[:, 7] = [0.3, 0.5], 1.0  # drive while turning, arm still, gripper closed

    def along_fingers():  # the cube's offset from the end effector along the hand's axis, metres
        axis = env.site_xmat[:, env.arm.ee_site].reshape(-1, 3, 3)[:, :, 2]
        return ((env.object_pos - env.ee_pos) * axis).sum(-1)

    for _ in range(10):  # settle
        env.step(hold)
    start, held = along_fingers(), np.ones(4, bool)
    for _ in range(250):
        env.step(hold)
        held &= env.grasped
    slip_mm = 1000 * (along_fingers() - start)
    if noslip is None:
        assert held.all() and (np.abs(slip_mm) < 1.0).all(), slip_mm
    else:
        assert (~held | (slip_mm > 5.0)).all(), slip_mm


def test_scripted_mobile_pick_drives_grasps_and_delivers_the_cube():
    """The easiest curriculum layout through the action interface: drive up to the table, grasp and
    lift the cube with IK-guided joint deltas, turn and drive until the held cube is over the zone."""
    env = MobilePickEnv(num_envs=1, nthread=1, seed=1, randomization=_layout_randomization(**EASY))
    env.reset(seed=1)
    b = env._base_qpos

    def step(wheels, grip, arm_goal=None):
        action = np.zeros((1, 8))
        action[0, :2], action[0, 7] = wheels, grip
        if arm_goal is not None:
            q = ik(env, env.batch.get_data(0), arm_goal, env.joint_target[0])
            action[0, 2:7] = np.clip((q - env.joint_target[0]) / env.cfg.delta_scale, -1, 1)
        return env.step(action)[1][0]

    def drive_toward(point, done, grip, steps):
        for _ in range(steps):
            if done():
                return True
            d = point - env.qpos[0, b:b + 2]
            err = (np.arctan2(d[1], d[0]) - yaw_of(env.qpos[:, b + 3:b + 7])[0] + np.pi) % (2 * np.pi) - np.pi
            forward, turn = 0.6 * max(np.cos(err), 0.0) ** 4, np.clip(1.5 * err, -0.6, 0.6)
            step([forward - turn, forward + turn], grip)
        return done()

    cube = env.object_pos[0].copy()
    mount = lambda: env.site_xpos[0, env._mount_site, :2]  # noqa: E731
    assert drive_toward(cube[:2], lambda: np.linalg.norm(cube[:2] - mount()) < 0.47, -1.0, 150)
    for _ in range(10):
        step([0, 0], -1.0)
    cube = env.object_pos[0].copy()
    for goal, grip, steps in ((cube + [0, 0, 0.08], -1.0, 15), (cube, -1.0, 15), (cube, 1.0, 8),
                              (cube + [0, 0, 0.12], 1.0, 15)):
        for _ in range(steps):
            step([0, 0], grip, goal)
    assert env.grasped[0] and env.max_lift[0] > 0.1 and not env.episode_success[0]
    assert drive_toward(env.target[0, :2], lambda: env.episode_success[0], 1.0, 150)
    assert env.grasped[0] and np.linalg.norm(env.object_pos[0, :2] - env.target[0, :2]) < env.cfg.zone_radius
    assert env.episode_step[0] < env.max_episode_steps  # within the episode


def test_mobile_pick_carry_route_goes_around_the_table():
    """The carry progress distance: straight where the line clears the table's disc, tangents and
    arc where it would cross it (a zone behind the table), out on the holding robot's side from a
    cube over the table, and continuous where the cube leaves the disc."""
    from robolearn.envs.mobile.geometry import route_length

    r, centre, mount = 0.55, np.zeros((1, 2)), np.array([[1.0, 0.0]])

    def route(start, goal):
        return route_length(np.array([start], float), np.array([goal], float), centre, r, exit_toward=mount)[0]

    assert route([1.0, 1.0], [1.0, -1.0]) == pytest.approx(2.0)  # clears the disc: straight
    around = (np.sqrt(0.6 ** 2 - r ** 2) + np.sqrt(1.2 ** 2 - r ** 2)
              + r * (np.pi - np.arccos(r / 0.6) - np.arccos(r / 1.2)))
    assert route([0.6, 0.0], [-1.2, 0.0]) == pytest.approx(around)  # behind the table: around it
    assert route([-0.05, 0.0], [1.5, 0.0]) == pytest.approx(0.6 + 0.95)  # over the table: out toward the robot
    edge = np.array([route([x, 0.0], [-1.5, 0.0]) for x in (0.549999, 0.550001)])
    assert abs(edge[1] - edge[0]) < 1e-4
    tangent = [route([-1.0, y], [1.0, y]) for y in (0.549, 0.551)]  # grazing the disc: the straight length
    np.testing.assert_allclose(tangent, 2.0, atol=1e-5)


def test_mobile_pick_route_point_lies_ahead_along_the_carry_route():
    """``route_point``: ahead metres along the route route_length measures (its length from there is
    that much shorter), on the straight line, the tangent or the arc; the goal when nearer; and the
    policy's ``route_point`` term is that point from the held cube, relative to the base in its frame."""
    from robolearn.envs.mobile.geometry import route_length, route_point

    r, centre, mount = 0.55, np.zeros((1, 2)), np.array([[1.0, 0.0]])

    def point(start, goal, ahead):
        return route_point(np.array([start], float), np.array([goal], float), centre, r, mount, ahead)[0]

    np.testing.assert_allclose(point([1.0, 1.0], [1.0, -1.0], 0.5), [1.0, 0.5])  # clears the disc: straight
    np.testing.assert_allclose(point([1.0, 1.0], [1.0, -1.0], 5.0), [1.0, -1.0])  # the goal is nearer
    a = np.arccos(r / 0.6)  # behind the table: toward the tangent point, then along the arc
    leg = np.sqrt(0.6 ** 2 - r ** 2)
    np.testing.assert_allclose(point([0.6, 0.0], [-1.2, 0.0], 0.1),
                               [0.6, 0.0] + 0.1 * (r * np.array([np.cos(a), np.sin(a)]) - [0.6, 0.0]) / leg)
    np.testing.assert_allclose(point([0.6, 0.0], [-1.2, 0.0], leg + 0.2),
                               r * np.array([np.cos(a + 0.2 / r), np.sin(a + 0.2 / r)]))
    rng = np.random.default_rng(0)
    start, goal = rng.uniform(-1.5, 1.5, (400, 2)), rng.uniform(-1.5, 1.5, (400, 2))
    keep = (np.linalg.norm(start, axis=-1) > r) & (np.linalg.norm(goal, axis=-1) > r)
    start, goal, ahead = start[keep], goal[keep], 0.4
    k = len(start)
    ahead_of = route_point(start, goal, np.zeros((k, 2)), r, np.ones((k, 2)), ahead)
    length = lambda s: route_length(s, goal, np.zeros((k, 2)), r, exit_toward=np.ones((k, 2)))  # noqa: E731
    np.testing.assert_allclose(length(ahead_of), np.maximum(length(start) - ahead, 0.0), atol=1e-7)
    assert (np.linalg.norm(ahead_of, axis=-1) >= r - 1e-9).all()
    env = MobilePickEnv(num_envs=4, nthread=1, seed=0, randomization=_layout_randomization(carry_start=1.0),
                        route_point=0.3, zone_observed="when_grasped")
    obs, _ = env.reset(seed=0)
    world = route_point(env.object_pos[:, :2], env.target[:, :2], env.table, 0.55,
                        env.site_xpos[:, env._mount_site, :2], 0.3)
    b = env._base_qpos
    yaw = yaw_of(env.qpos[:, b + 3:b + 7])
    rel = world - env.qpos[:, b:b + 2]
    expected = np.stack([np.cos(yaw) * rel[:, 0] + np.sin(yaw) * rel[:, 1],
                         -np.sin(yaw) * rel[:, 0] + np.cos(yaw) * rel[:, 1]], axis=-1)
    np.testing.assert_allclose(obs["policy"][:, env.obs_layout["policy"].slices["route_point"]], expected, atol=1e-6)
    assert "route_point" in env.obs_term_info and "route_point" not in MobilePickEnv(num_envs=1).obs_layout["policy"].slices
