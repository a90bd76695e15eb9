"""Rewards as data: tasks return unweighted named terms, the core weights and sums them exactly and
reports each term's episode sum as reward/<term>; weights are config, unknown ones are errors."""

from pathlib import Path

import numpy as np
import pytest

from robolearn.config import ConfigError, load_config
from robolearn.envs import finished_episodes, get_task, list_tasks
from robolearn.envs.core import COMMON_METRICS
from robolearn.envs.diffdrive import NavEnv

ROOT = Path(__file__).resolve().parents[1]
TASKS = [spec.name for spec in list_tasks()]


def make(task, **kwargs):
    spec = get_task(task)
    hz = spec.config_cls().control_hz
    return spec.env_cls(num_envs=3, nthread=1, seed=0, episode_seconds=8 / hz, **kwargs)


def record_terms(env):
    """Wrap the task hook to keep a copy of every step's unweighted terms."""
    terms_seen, hook = [], env._reward_and_termination

    def spy(actions):
        terms, terminated = hook(actions)
        terms_seen.append({name: np.array(value, copy=True) for name, value in terms.items()})
        return terms, terminated

    env._reward_and_termination = spy
    return terms_seen


def run(env, steps, seed=0):
    """Rewards per step and every finished episode's metrics, in order."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rewards, episodes = [], []
    for _ in range(steps):
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, (env.num_envs, env.single_action_space.shape[0])))
        rewards.append(reward)
        ids, metrics = finished_episodes(info)
        episodes += [{k: v[i] for k, v in metrics.items()} for i in range(ids.size)]
    return np.array(rewards), episodes


@pytest.mark.parametrize("task", TASKS)
def test_reward_is_the_weighted_sum_of_the_terms_in_weight_order(task):
    env = make(task)
    terms_seen = record_terms(env)
    rewards, _ = run(env, 5)
    weights = env.cfg.rewards
    names = list(type(weights).model_fields)
    assert set(terms_seen[0]) == set(names)
    for reward, terms in zip(rewards, terms_seen):
        expected = getattr(weights, names[0]) * terms[names[0]]
        for name in names[1:]:
            expected = expected + getattr(weights, name) * terms[name]
        np.testing.assert_array_equal(reward, expected.astype(np.float32))
        assert all(value.dtype == np.float64 and value.shape == (3,) for value in terms.values())


@pytest.mark.parametrize("task", TASKS)
def test_episode_metrics_list_the_term_sums_and_they_add_up_to_the_return(task):
    env = make(task)
    names = list(type(env.cfg.rewards).model_fields)
    assert env.episode_metrics == COMMON_METRICS + env.task_metrics + tuple(f"reward/{n}" for n in names)
    _, episodes = run(env, 8)
    assert len(episodes) == 3
    for episode in episodes:
        assert tuple(episode) == env.episode_metrics
        total = sum(episode[f"reward/{n}"] for n in names)
        assert total == pytest.approx(episode["return"], rel=1e-12, abs=1e-12)


def test_a_zero_weight_removes_a_term_and_a_doubled_weight_doubles_its_sum():
    default = NavEnv(num_envs=4, nthread=1, seed=0, episode_seconds=1.0)
    changed = NavEnv(num_envs=4, nthread=1, seed=0, episode_seconds=1.0, rewards={"slack": -0.02, "progress": 0.0})
    rewards_a, episodes_a = run(default, 20)
    rewards_b, episodes_b = run(changed, 20)  # same layouts and motion: rewards do not act on the physics
    assert len(episodes_a) == len(episodes_b) == 4
    for a, b in zip(episodes_a, episodes_b):
        assert a["length"] == b["length"] and a["collisions"] == b["collisions"]
        assert b["reward/slack"] == 2 * a["reward/slack"]  # exactly: doubling commutes with the rounding
        assert a["reward/slack"] == pytest.approx(-0.01 * a["length"], rel=1e-12)
        assert b["reward/progress"] == 0.0 and a["reward/progress"] != 0.0
        assert b["reward/success"] == a["reward/success"] and b["reward/collision"] == a["reward/collision"]
        assert b["return"] == pytest.approx(a["return"] - a["reward/progress"] + a["reward/slack"], abs=1e-9)


@pytest.mark.parametrize("config, override", [
    ("nav.yaml", "env.rewards.speed=1.0"),
    ("pickplace.yaml", "env.rewards.progress=1.0"),  # a Push term, not a PickPlace one
    ("mobile_pick.yaml", "env.rewards.slack=-0.01"),
])
def test_an_unknown_weight_is_a_config_error_naming_the_key(config, override):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"^override '{override}': {key}: unknown key$"):
        load_config(ROOT / "configs" / config, [override])


class _ExtraTerm(NavEnv):
    def _reward_and_termination(self, actions):
        terms, terminated = super()._reward_and_termination(actions)
        terms["bonus"] = np.ones(self.num_envs)
        del terms["slack"]
        return terms, terminated


def test_a_term_without_a_weight_or_a_weight_without_a_term_is_a_programming_error():
    env = _ExtraTerm(num_envs=2, nthread=1, seed=0)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match=r"robolearn/Nav-v0: reward terms .* \(no term for \['slack'\], "
                                           r"no weight for \['bonus'\]\)"):
        env.step(np.zeros((2, 2)))


def test_finished_episodes_picks_the_finished_envs_in_order():
    assert finished_episodes({})[0].size == 0 and finished_episodes({})[1] == {}
    info = {"episode": {"return": np.array([0.0, 2.0, 0.0, 3.0]), "success": np.array([0.0, 1.0, 0.0, 0.0])},
            "_episode": np.array([False, True, False, True])}
    ids, metrics = finished_episodes(info)
    assert ids.tolist() == [1, 3]
    assert metrics["return"].tolist() == [2.0, 3.0] and metrics["success"].tolist() == [1.0, 0.0]
