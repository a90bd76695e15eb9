"""robolearn/Nav-v0 and the batched core: determinism, SAME_STEP autoreset, rewards, layouts."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robolearn.envs  # noqa: F401  (registers the tasks)
from robolearn.envs.diffdrive.nav import NUM_OBSTACLE_SLOTS, ROBOT_RADIUS, NavEnv, yaw_of


def rollout(env, steps, seed):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs["critic"].copy()]
    rewards, dones = [], []
    for _ in range(steps):
        obs, reward, term, trunc, _ = env.step(rng.uniform(-1, 1, (env.num_envs, 2)))
        trace.append(obs["critic"].copy())
        rewards.append(reward)
        dones.append(term | trunc)
    return np.array(trace), np.array(rewards), np.array(dones)


def place(env, i, xy, heading, goal, obstacles=()):
    """Hand-build env i's state: robot pose, goal and (x, y) of the first obstacle slots."""
    env.qpos[i, 0:2] = xy
    env.qpos[i, 3:7] = [np.cos(heading / 2), 0, 0, np.sin(heading / 2)]
    env.qvel[i] = 0.0
    env.goal[i] = goal
    env.distance[i] = np.linalg.norm(np.subtract(goal, xy))
    env._prev_xy[i] = xy
    for slot in range(NUM_OBSTACLE_SLOTS):
        mocap = env._obstacle_mocap[slot]
        if slot < len(obstacles):
            env.mocap_pos[i, mocap] = [*obstacles[slot], 0.2]
        else:
            env.mocap_pos[i, mocap, 2] = -5.0
    env.batch.forward([i])


def test_same_seed_same_trajectory_and_seed_matters():
    a, b, c = (NavEnv(num_envs=8, episode_seconds=2.0, seed=0) for _ in range(3))
    ta, ra, da = rollout(a, 60, seed=3)
    tb, rb, db = rollout(b, 60, seed=3)
    tc, _, _ = rollout(c, 60, seed=4)
    assert da.any(), "the rollout should cross episode ends"
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(ra, rb)
    assert not np.allclose(ta[0], tc[0])


def test_spaces_and_obs_layout():
    env = NavEnv(num_envs=3, seed=0)
    obs, _ = env.reset()
    policy = env.obs_layout["policy"]
    assert list(policy.widths) == ["goal", "velocity", "lidar", "last_action"]
    assert policy.widths["lidar"] == env.cfg.lidar.rays >= 16
    assert obs["policy"].shape == (3, policy.size) and obs["policy"].dtype == np.float32
    assert obs["critic"].shape == (3, env.obs_layout["critic"].size)
    assert env.observation_space["policy"].shape == (3, policy.size)
    assert env.single_action_space.shape == (2,)
    # the critic group starts with the policy terms (noise-free), then privileged ones
    np.testing.assert_array_equal(obs["critic"][:, : policy.size], obs["policy"])
    lidar = obs["policy"][:, policy.slices["lidar"]]
    assert np.all((lidar > 0) & (lidar <= env.cfg.lidar.range))
    assert env.control_dt == pytest.approx(0.05)
    assert env.max_episode_steps == 600


def test_same_step_autoreset_semantics():
    env = NavEnv(num_envs=4, seed=1)
    env.reset(seed=1)
    # env 0 sits 0.5 m behind its goal facing it; one step at full speed does not reach it,
    # so put it inside the success radius instead: it succeeds on the next step
    place(env, 0, [0.0, 0.0], 0.0, [0.1, 0.0])
    before = env.qpos[1:, :2].copy()
    steps_before = env.episode_step.copy()
    obs, reward, term, trunc, info = env.step(np.zeros((4, 2)))
    assert term.tolist() == [True, False, False, False] and not trunc.any()
    assert info["_final_obs"].tolist() == [True, False, False, False]
    goal = env.obs_layout["policy"].slices["goal"]
    final_distance = info["final_obs"]["policy"][0, goal][0]
    assert final_distance < env.cfg.success_radius  # pre-reset observation
    assert obs["policy"][0, goal][0] >= env.cfg.goal_distance.lo - 1e-6  # post-reset observation
    # for envs that did not finish, final_obs is the returned observation
    np.testing.assert_array_equal(info["final_obs"]["critic"][1:], obs["critic"][1:])
    # only the finished env was reset
    assert env.episode_step.tolist() == [0, *(steps_before[1:] + 1)]
    assert np.abs(env.qpos[1:, :2] - before).max() < 0.05
    assert info["episode"]["success"][0] == 1.0 and info["_episode"][0]
    assert info["episode"]["length"][0] == steps_before[0] + 1
    assert reward[0] >= env.cfg.rewards.success - 0.1


def test_time_limit_truncates():
    env = NavEnv(num_envs=2, episode_seconds=0.5, seed=0)  # 10 control steps
    env.reset(seed=0)
    for t in range(10):
        obs, reward, term, trunc, info = env.step(np.zeros((2, 2)))
    assert trunc.all() and not term.any()
    assert info["episode"]["length"].tolist() == [10, 10]
    assert info["episode"]["success"].tolist() == [0.0, 0.0]
    assert env.episode_step.tolist() == [0, 0]


def test_reward_progress_and_success_bonus():
    env = NavEnv(num_envs=2, seed=0)
    env.reset(seed=0)
    place(env, 0, [-2.0, 0.0], 0.0, [2.0, 0.0])  # facing the goal
    place(env, 1, [-2.0, 0.0], np.pi, [2.0, 0.0])  # facing away
    w = env.cfg.rewards
    rewards = []
    for _ in range(10):
        _, reward, term, _, _ = env.step(np.ones((2, 2)))  # both wheels forward
        rewards.append(reward)
    rewards = np.array(rewards, np.float64)
    progress = (rewards - w.slack) / w.progress  # no success, no collision: the rest is progress
    assert progress[:, 0].sum() > 0.2  # accelerates to ~0.55 m/s within 0.5 s
    assert progress[-1, 0] > 0.02
    travelled = np.linalg.norm(env.qpos[:, :2] - [-2.0, 0.0], axis=-1)
    np.testing.assert_allclose(progress.sum(axis=0), [travelled[0], -travelled[1]], atol=2e-3)
    assert not term.any()


def test_reaching_goal_gets_success_bonus_and_spl():
    env = NavEnv(num_envs=1, seed=0)
    env.reset(seed=0)
    place(env, 0, [-1.0, 0.0], 0.0, [0.0, 0.0])
    env.start_distance[0] = 1.0
    total, info = 0.0, {}
    for _ in range(100):
        _, reward, term, _, info = env.step(np.ones((1, 2)))
        total += reward[0]
        if term[0]:
            break
    assert term[0], "driving straight at the goal reaches it"
    assert reward[0] > env.cfg.rewards.success - 0.05
    spl = info["episode"]["spl"][0]
    assert 0.9 < spl <= 1.0  # straight path: SPL close to 1
    assert info["episode"]["success"][0] == 1.0


def test_touching_an_obstacle_counts_a_collision():
    env = NavEnv(num_envs=2, seed=0)
    env.reset(seed=0)
    radius = env.obstacle_radius[0, 0]
    assert radius > 0
    ahead = [-1.0 + ROBOT_RADIUS + radius + 0.05, 0.0]
    place(env, 0, [-1.0, 0.0], 0.0, [2.5, 2.5], obstacles=[ahead])  # obstacle straight ahead
    place(env, 1, [-1.0, 0.0], np.pi / 2, [2.5, 2.5], obstacles=[[1.5, -1.5]])  # nothing in its way
    rewards = []
    for _ in range(20):
        _, reward, _, _, _ = env.step(np.ones((2, 2)))
        rewards.append(reward)
    assert env.collisions[0] >= 1 and env.in_collision[0]
    assert env.collisions[1] == 0
    # the blocked robot did not pass through the obstacle
    assert env.qpos[0, 0] < ahead[0] - radius


def test_layouts_respect_the_config():
    env = NavEnv(num_envs=256, seed=5)
    env.reset(seed=5)
    cfg = env.cfg
    start = env.qpos[:, :2]
    d = np.linalg.norm(env.goal - start, axis=-1)
    assert np.all((d >= cfg.goal_distance.lo) & (d <= cfg.goal_distance.hi))
    half = cfg.arena_size / 2
    assert np.all(np.abs(start) < half - ROBOT_RADIUS) and np.all(np.abs(env.goal) < half - ROBOT_RADIUS)
    placed = env.obstacle_radius > 0
    count = placed.sum(axis=1)
    assert count.max() <= cfg.obstacles.count.hi
    assert np.mean(count >= cfg.obstacles.count.lo) > 0.95  # a crowded draw may park a slot
    assert len(np.unique(count)) >= 3
    r, xy = env.obstacle_radius, env.obstacle_xy
    for i in range(NUM_OBSTACLE_SLOTS):
        for j in range(i):
            both = placed[:, i] & placed[:, j]
            gap = np.linalg.norm(xy[:, i] - xy[:, j], axis=-1) - r[:, i] - r[:, j]
            assert np.all(gap[both] >= cfg.obstacles.gap - 1e-9)
        clear_start = np.linalg.norm(xy[:, i] - start, axis=-1) - r[:, i]
        clear_goal = np.linalg.norm(xy[:, i] - env.goal, axis=-1) - r[:, i]
        assert np.all(clear_start[placed[:, i]] >= ROBOT_RADIUS) and np.all(clear_goal[placed[:, i]] >= ROBOT_RADIUS)
        wall = half - (np.abs(xy[:, i]).max(axis=-1) + r[:, i])
        assert np.all(wall[placed[:, i]] >= cfg.obstacles.gap - 1e-9)
    # the per-env physics geometry matches the sampled layout
    sizes = env._geom_size[:, env._obstacle_geoms, 0]
    assert np.all(sizes > 0) and len(np.unique(np.round(sizes, 6))) > 100
    assert np.allclose(yaw_of(env.qpos[:, 3:7]), np.arctan2(env.qpos[:, 6], env.qpos[:, 3]) * 2, atol=1e-9)


def test_check_env_single_view():
    env = gymnasium.make("robolearn/Nav-v0", disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and "critic" in info
    done, steps = False, 0
    while not done:
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        done, steps = term or trunc, steps + 1
    assert "episode" in info and steps <= 600


def test_make_vec_entry_point():
    env = gymnasium.make_vec("robolearn/Nav-v0", num_envs=5, vectorization_mode="vector_entry_point",
                             episode_seconds=1.0)
    assert isinstance(env, NavEnv) and env.num_envs == 5 and env.max_episode_steps == 20
    obs, _ = env.reset(seed=0)
    assert obs["policy"].shape == (5, env.obs_layout["policy"].size)


def test_bad_actions_rejected():
    env = NavEnv(num_envs=2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"actions have shape \(3, 2\), expected \(2, 2\)"):
        env.step(np.zeros((3, 2)))
