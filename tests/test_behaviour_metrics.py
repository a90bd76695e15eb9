"""Behaviour metrics in ``info["episode"]`` on scripted episodes that produce each: the cube lifted
to a known height (``max_carry_height``), placed on a table target (no drop), let go over the table
and over the floor (``thrown_or_dropped``, ``drops``), knocked off the table, and MobilePick's base
driven into the table (``bumps``). The scripts act through the ee_delta actions."""

import numpy as np
import pytest

from robolearn.config import RandomizationConfig
from robolearn.envs.arm import PickPlaceEnv, PushEnv, ReachEnv
from robolearn.envs.mobile import MobilePickEnv

from test_ee_actions import ee_action, in_base_frame

LIFT = 0.12  # metres the scripts raise the end effector above the cube's centre after the grasp


def pickplace(seed, **kwargs):
    env = PickPlaceEnv(num_envs=1, nthread=1, seed=seed, action_space="ee_delta", **kwargs)
    env.reset(seed=seed)
    return env


def go(env, goal, grip, steps):
    """Act toward ``goal`` (arm-base frame) for ``steps``, within the episode."""
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(ee_action(env, goal, grip))
        assert not (terminated[0] or truncated[0]), "the episode ended before the script"


def grasp_and_lift(env):
    """Open above the cube, descend, close, lift ``LIFT``: the cube's position (arm-base frame)."""
    cube = in_base_frame(env, env.object_pos)[0]
    for goal, grip, steps in ((cube + [0, 0, 0.08], -1.0, 20), (cube, -1.0, 15), (cube, 1.0, 8),
                              (cube + [0, 0, LIFT], 1.0, 20)):
        go(env, goal, grip, steps)
    assert env.grasped[0]
    return cube


def run_out(env, goal, grip):
    """Act toward ``goal`` until the episode ends; its metrics."""
    while True:
        _, _, terminated, truncated, info = env.step(ee_action(env, goal, grip))
        if terminated[0] or truncated[0]:
            return {name: float(values[0]) for name, values in info["episode"].items()}


def test_the_carry_height_is_how_high_the_cube_was_held():
    env = pickplace(4, table_target_prob=0.0, episode_seconds=4.0)
    cube = grasp_and_lift(env)
    held = env.object_pos[0, 2] - env.object_rest_z[0]  # the cube's rise where the gripper holds it
    assert abs(held - LIFT) < 0.03
    metrics = run_out(env, cube + [0, 0, LIFT], 1.0)
    assert metrics["max_carry_height"] == pytest.approx(held, abs=0.003)
    assert metrics["max_lift"] >= metrics["max_carry_height"]
    assert metrics["drops"] == 0 and metrics["thrown_or_dropped"] == 0
    assert metrics["time_to_grasp"] < 2.0


def test_a_cube_placed_on_its_table_target_is_not_dropped():
    env = pickplace(6, table_target_prob=1.0, episode_seconds=7.0)
    target = in_base_frame(env, env.target)[0]
    grasp_and_lift(env)
    go(env, target + [0, 0, LIFT], 1.0, 25)
    go(env, target, 1.0, 20)  # set it down at the target
    go(env, target, -1.0, 10)  # open
    go(env, target + [0, 0, 0.1], -1.0, 15)  # back off
    assert not env.grasped[0] and np.linalg.norm(env.object_pos[0] - env.target[0]) < env.cfg.success_radius
    metrics = run_out(env, target + [0, 0, 0.1], -1.0)
    assert metrics["success"] == 1.0
    assert metrics["drops"] == 0 and metrics["thrown_or_dropped"] == 0 and metrics["max_carry_height"] > 0.08


def test_a_cube_let_go_over_the_table_is_dropped():
    env = pickplace(4, table_target_prob=0.0, episode_seconds=5.0)
    cube = grasp_and_lift(env)
    aside = cube + [0, 0.08, LIFT]
    go(env, aside, 1.0, 10)
    lost_at = []  # the steps object_lost marks (the event a reward term can charge): once, where it landed
    for step in range(30):  # open: the cube falls to the table and comes to rest there
        was_dropped = bool(env.thrown_or_dropped[0])
        go(env, aside, -1.0, 1)
        if env.object_lost[0]:
            assert not was_dropped and env.thrown_or_dropped[0]
            lost_at.append(step)
    assert len(lost_at) == 1 and lost_at[0] > 2  # it fell first, then came to rest
    assert not env.off_table[0] and env.thrown_or_dropped[0] and not env.released[0]
    metrics = run_out(env, aside, -1.0)
    assert metrics["length"] == env.max_episode_steps  # on the table: the episode runs on
    assert metrics["thrown_or_dropped"] == 1 and metrics["drops"] == 1 and metrics["success"] == 0
    assert metrics["knocked_off"] == 0  # let go, not knocked


def test_a_cube_the_pads_still_press_at_the_end_is_not_dropped():
    """The grasp indicator can let go of a cube the gripper still holds (here: a grasp force no
    touch reaches); at the episode's end that cube is not counted thrown or dropped."""
    env = pickplace(4, table_target_prob=0.0, episode_seconds=3.0)
    cube = grasp_and_lift(env)
    go(env, cube + [0, 0, LIFT], 1.0, env.max_episode_steps - env.episode_step[0] - 3)
    env.cfg.grasp_force = 1.0e6
    metrics = run_out(env, cube + [0, 0, LIFT], 1.0)
    assert metrics["drops"] == 1  # the indicator's loss
    assert metrics["thrown_or_dropped"] == 0 and metrics["max_carry_height"] > 0.08


def test_a_cube_let_go_over_the_floor_is_dropped_and_ends_the_episode():
    env = pickplace(5, table_target_prob=0.0, episode_seconds=8.0)
    grasp_and_lift(env)
    for waypoint in ([0.2, 0.35, 0.2], [-0.05, 0.4, 0.2], [-0.25, 0.3, 0.2]):  # round the arm's base, behind it
        go(env, np.array(waypoint), 1.0, 25)
    assert env.grasped[0]
    opened = env.episode_step[0]
    metrics = run_out(env, np.array([-0.25, 0.3, 0.2]), -1.0)  # open over the floor behind the table
    assert metrics["length"] < opened + 30 < env.max_episode_steps  # off the table: ended at once
    assert metrics["thrown_or_dropped"] == 1
    assert metrics["drops"] == 2  # lost from the grasp while lifted, then off the table
    assert metrics["knocked_off"] == 0  # it fell from the gripper


def test_a_cube_knocked_off_the_table_counts_and_a_parked_one_does_not():
    env = PushEnv(num_envs=2, nthread=1, seed=0, episode_seconds=2.0)
    assert "max_carry_height" not in env.task_metrics and "thrown_or_dropped" in env.task_metrics
    env.reset(seed=0)
    qpos = env.qpos[0].copy()
    qpos[env._obj_qpos:env._obj_qpos + 2] = [0.9, 0.0]  # just past the table's far edge (x 0.8): it falls
    env.qpos[0] = qpos
    env.batch.forward([0])
    for _ in range(env.max_episode_steps):
        _, _, terminated, truncated, info = env.step(np.zeros((2, 5)))
        if terminated[0]:
            break
    assert terminated[0] and info["episode"]["thrown_or_dropped"].tolist() == [1.0, 0.0]
    assert info["episode"]["drops"][0] == 1 and info["episode"]["knocked_off"].tolist() == [1.0, 0.0]
    reach = ReachEnv(num_envs=1, nthread=1, seed=0)
    assert reach.task_metrics == ("time_to_grasp", "max_lift", "drops")  # its cube lies on the floor, unused


def _layout(**values):
    params = {name: {"target": "layout", "select": {"layout": name}, "op": "set", "init_range": [v, v]}
              for name, v in values.items()}
    return RandomizationConfig.model_validate({"params": params})


def test_mobile_pick_counts_bumps_into_the_table_once_per_contact():
    """Facing the table 0.6 m away: drive into it and keep pushing (one bump, bounces included),
    back off, drive in again (a second bump). The bump reward term costs every step of contact, the
    bump_onset term each bump the metric counts."""
    env = MobilePickEnv(num_envs=1, nthread=1, seed=1, episode_seconds=4.0, rewards={"bump_onset": -3.0},
                        randomization=_layout(table_distance=0.6, zone_distance=0.7, zone_bearing=1.5,
                                              heading_noise=0.0))
    env.reset(seed=1)
    touching = []

    def drive(speed, steps):
        info = {}
        for _ in range(steps):
            action = np.zeros((1, env.single_action_space.shape[0]))
            action[0, :2] = speed
            info = env.step(action)[4]
            touching.append(bool(env.sensordata[0, env._bump_sensors].max() > 0))
        return info

    drive(1.0, 40)
    assert env.bumps[0] == 1 and sum(touching) > 20  # pressed against the table most of the time
    drive(-1.0, 15)
    assert env.bumps[0] == 1 and not touching[-1]
    drive(1.0, 25)
    assert env.bumps[0] == 2
    info = drive(0.0, env.max_episode_steps - env.episode_step[0])
    assert info["episode"]["bumps"][0] == 2 and info["episode"]["collisions"][0] >= 2
    np.testing.assert_allclose(info["episode"]["reward/bump"][0], env.cfg.rewards.bump * sum(touching))
    np.testing.assert_allclose(info["episode"]["reward/bump_onset"][0], -3.0 * 2)
    assert {"bumps", "collisions", "max_carry_height", "thrown_or_dropped"} <= set(env.episode_metrics)


def test_mobile_pick_object_push_charges_a_cube_sliding_on_the_table():
    """A cube set sliding along the table top costs object_push (its horizontal speed) until it
    stops; a cube at rest costs (next to) nothing."""
    env = MobilePickEnv(num_envs=2, nthread=1, seed=3, rewards={"object_push": -1.0})
    env.reset(seed=3)
    qvel = env.qvel[0].copy()
    qvel[env._obj_dof:env._obj_dof + 2] = [1.0, 0.0]
    env.qvel[0] = qvel
    env.batch.forward([0])
    column = env.reward_weights.names.index("object_push")
    action = np.zeros((2, env.single_action_space.shape[0]))
    env.step(action)
    speed = np.linalg.norm(env.qvel[0, env._obj_dof:env._obj_dof + 2])
    assert speed > 0.1  # still sliding after one step
    pushed, resting = env.episode_reward_terms[:, column]
    assert pushed == pytest.approx(-speed) and resting == pytest.approx(0.0, abs=1e-6)  # settled to rest
    for _ in range(25):
        env.step(action)
    assert np.linalg.norm(env.qvel[0, env._obj_dof:env._obj_dof + 2]) < 1e-3  # friction stopped it
    assert env.episode_reward_terms[1, column] == pytest.approx(0.0, abs=1e-4)
