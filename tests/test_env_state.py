"""Episodes in progress survive state_dict / load_state_dict bit for bit, for every task, with
randomization and across episode ends; states that do not fit are refused."""

import copy
from pathlib import Path

import numpy as np
import pytest

from robolearn.config import RandomizationConfig, load_config
from robolearn.envs import get_task, list_tasks

ROOT = Path(__file__).resolve().parents[1]
N, BEFORE, AFTER = 3, 6, 24  # the split falls mid-episode, episode ends follow
#: success within reach of random actions, so that the split also falls inside success holds and
#: paths that count (SPL); NavPO holds its lidar scan of step 4 over the split
EASY = {"robolearn/Nav-v0": {"goal_distance": [1.0, 1.02], "success_radius": 0.99},
        "robolearn/NavPO-v0": {"goal_distance": [1.0, 1.02], "success_radius": 0.99},
        "robolearn/NavDepth-v0": {"goal_distance": [1.0, 1.02], "success_radius": 0.99},
        "robolearn/Reach-v0": {"success_radius": 0.3, "hold_steps": 4},
        "robolearn/Push-v0": {"success_radius": 0.3, "hold_steps": 4},
        "robolearn/PickPlace-v0": {"success_radius": 0.3, "hold_steps": 4},
        "robolearn/MobilePick-v0": {"hold_steps": 4}}


def short_episode_kwargs(task, steps):
    hz = get_task(task).config_cls().control_hz
    return {"num_envs": N, "nthread": 1, "episode_seconds": steps / hz, **EASY.get(task, {})}


BACKLASH = {"target": "action_backlash", "op": "set", "init_range": [0.5, 0.8], "limits": [0.0, 1.0], "delta": 0.05}


def wide_randomization(config_name):
    """A bundled config's parameters (Nav's plus motor backlash), sampled over the middle half of
    their limits, with ADR moving a bound after every boundary episode (t_high 0: even a failing
    random policy widens the ranges)."""
    params = load_config(ROOT / "configs" / config_name).randomization.params
    wide = {"backlash": BACKLASH} if config_name.startswith("nav") else {}
    for name, p in params.items():
        lo, hi = p.limit_range.as_tuple()
        inner = [lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo)]
        if p.type == "int":
            inner = [float(np.ceil(inner[0])), float(np.floor(inner[1]))]
        wide[name] = {**p.model_dump(), "init_range": inner}
    adr = {"enabled": True, "boundary_prob": 0.5, "queue_length": 1, "t_low": -1.0, "t_high": 0.0}
    return RandomizationConfig.model_validate({"adr": adr, "params": wide})


CASES = [(spec.name, None) for spec in list_tasks()] + [
    ("robolearn/Nav-v0", "nav_adr.yaml"),  # latency, action and obs noise, pushes, physics, layout
    ("robolearn/PickPlace-v0", "pickplace.yaml"),  # mass (set_const), armature, kp, size, workspace
    ("robolearn/NavDepth-v0", "nav_depth_adr.yaml"),  # depth noise, dropout, holes, image latency, camera pose
]


def make(task, randomization):
    """Episodes of 10 steps; 16 with randomization, so that an action latency of up to 6 steps
    carries the actions after the split into the physics within the episode."""
    steps = 16 if randomization is not None else 10
    return get_task(task).env_cls(**short_episode_kwargs(task, steps), seed=11, randomization=randomization)


def run(env, actions):
    return [env.step(a) for a in actions]


def assert_same(a, b, path="step"):
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, path


def assert_plain(value, path="state"):
    """Only numpy arrays, Python scalars, strings, None, lists and dicts with string keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{path}: key {key!r}"
            assert_plain(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")
    else:
        assert value is None or isinstance(value, (np.ndarray, bool, int, float, str)), f"{path}: {type(value)}"


@pytest.mark.parametrize("task, config", CASES, ids=[f"{t.split('/')[1]}{'+' + c if c else ''}" for t, c in CASES])
def test_split_run_equals_the_continuous_run(task, config):
    randomization = wide_randomization(config) if config else None
    a = make(task, randomization)
    dim = a.single_action_space.shape[0]
    actions = np.random.default_rng(5).uniform(-0.5, 1, (BEFORE + AFTER, N, dim))  # forward-biased
    a.reset(seed=2)
    run(a, actions[:BEFORE])
    state = copy.deepcopy(a.state_dict())
    assert_plain(state)
    continuous = run(a, actions[BEFORE:])

    b = make(task, randomization)  # a fresh env, never reset
    b.load_state_dict(state)
    resumed = run(b, actions[BEFORE:])
    ended = sum(int((term | trunc).sum()) for _, _, term, trunc, _ in continuous)
    assert ended >= N, "the window should cross episode ends"
    if config:
        assert a.randomizer.adr.moves > state["randomizer"]["adr"]["moves"], "ADR should move a bound in the window"
    assert_same(continuous, resumed)


def test_state_of_another_task_or_size_is_refused():
    nav = make("robolearn/Nav-v0", None)
    nav.reset(seed=0)
    state = nav.state_dict()
    other_task = r"^env state is of task 'robolearn/Nav-v0', this env is 'robolearn/NavPO-v0'$"
    with pytest.raises(ValueError, match=other_task):
        make("robolearn/NavPO-v0", None).load_state_dict(state)
    bigger = get_task("robolearn/Nav-v0").env_cls(num_envs=N + 1, nthread=1, seed=0)
    with pytest.raises(ValueError, match=rf"^env state has num_envs={N}, this env has num_envs={N + 1}$"):
        bigger.load_state_dict(state)
    fewer_rays = get_task("robolearn/Nav-v0").env_cls(num_envs=N, nthread=1, seed=0, lidar={"rays": 8})
    with pytest.raises(ValueError, match=r"has shape \(3, .*\), this env's is \(3, .*\)"):
        fewer_rays.load_state_dict(state)
    randomized = make("robolearn/Nav-v0", wide_randomization("nav_adr.yaml"))
    with pytest.raises(ValueError, match="env state has no randomizer state, this env has randomization"):
        randomized.load_state_dict(state)
    with pytest.raises(ValueError, match="not an env state"):
        nav.load_state_dict({"task": "robolearn/Nav-v0"})


def test_a_refused_state_changes_nothing_and_a_loaded_env_needs_no_reset():
    a = make("robolearn/Nav-v0", None)
    a.reset(seed=0)
    before = a.state_dict()
    bad = copy.deepcopy(before)
    bad["task_state"]["goal"] = np.zeros((N, 3))
    with pytest.raises(ValueError, match=r"field 'goal' has shape \(3, 3\), this env's is \(3, 2\)"):
        a.load_state_dict(bad)
    assert_same(a.state_dict(), before)
    fresh = make("robolearn/Nav-v0", None)
    with pytest.raises(RuntimeError, match="call reset"):
        fresh.step(np.zeros((N, 2)))
    fresh.load_state_dict(before)
    fresh.step(np.zeros((N, 2)))
