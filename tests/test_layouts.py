"""Layout samplers never spin: impossible layouts are config errors where that can be decided at
load time, and every sampler gives up after a bounded number of tries with a one-line error naming
the keys. MobilePick ends an episode whose cube is off the table."""

from pathlib import Path

import numpy as np
import pytest

from robolearn.config import ConfigError, load_config
from robolearn.envs import make_env
from robolearn.envs.arm import PickPlaceEnv, PushEnv
from robolearn.envs.diffdrive import NavEnv
from robolearn.envs.diffdrive.nav import start_goal_half_width
from robolearn.envs.mobile import MobilePickEnv
from robolearn.envs.sampling import MAX_ROUNDS, LayoutError

NAV = Path(__file__).resolve().parents[1] / "configs" / "nav.yaml"


@pytest.mark.parametrize("override, message", [
    ("env.goal_distance=[7.8,7.9]",
     "goal_distance.lo=7.8 m does not fit in a 6.0 m arena (arena_size): the longest start-goal distance is 7.78 m"),
    ("env.arena_size=1.5",
     "goal_distance.lo=1.5 m does not fit in a 1.5 m arena (arena_size): the longest start-goal distance is 1.41 m"),
    ("env.goal_distance=[2.0,2.0]", "goal_distance=[2.0, 2.0]: needs lo < hi"),
])
def test_impossible_nav_layouts_are_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(NAV, [override])
    assert str(info.value).startswith(f"override '{override}': env: {message}")
    assert "\n" not in str(info.value)


def test_nan_goal_distance_never_hangs():
    """NaN is rejected by the config layer; if it gets through, the sampler's bound stops it."""
    try:
        config = load_config(NAV, ["env.goal_distance=[.nan,5]", "env.num_envs=2", "env.nthread=1"])
    except ConfigError:
        return
    env = make_env(config.env, seed=0)
    with pytest.raises(LayoutError, match=r"no start/goal pair nan-5 m apart fits in the 6 m arena"):
        env.reset(seed=0)


def test_the_config_check_and_the_sampler_use_one_half_width():
    half = start_goal_half_width(6.0)
    longest = 2 * np.sqrt(2) * half
    load_config(NAV, [f"env.goal_distance=[{longest - 1e-3},{longest}]"])  # fits: accepted
    with pytest.raises(ConfigError, match="does not fit"):
        load_config(NAV, [f"env.goal_distance=[{longest + 1e-3},{longest + 0.1}]"])
    env = NavEnv(num_envs=64, nthread=1, seed=0)
    env.reset(seed=0)
    points = np.concatenate([env.qpos[:, :2], env.goal])
    assert np.abs(points).max() <= half and np.abs(points).max() > 0.95 * half


def test_nav_sampler_that_cannot_succeed_raises_a_bounded_one_line_error():
    env = NavEnv(num_envs=3, nthread=1, seed=0)
    env.layout_params["goal_distance"][1] = 0.5  # hi below the configured lo 1.5: exactly 0.5 m apart
    with pytest.raises(LayoutError) as info:
        env.reset(seed=0)
    assert str(info.value) == (f"no start/goal pair 0.5-0.5 m apart fits in the 6 m arena after {MAX_ROUNDS * 32} "
                               f"tries (env.goal_distance, env.arena_size, layout parameter goal_distance)")
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("override, message", [
    ("env.target_distance=[0.9,1.0]", "target_distance=[0.9, 1.0] m: no point of target_region lies that far from "
                                      "object_region (their points are 0.00-0.47 m apart)"),
    ("env.target_region={x: [0.75, 0.8], y: [-0.1, 0.1]}", "target_distance=[0.08, 0.2] m: no point of target_region"),
])
def test_table_targets_out_of_reach_are_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(NAV.parent / "push.yaml", [override])
    assert str(info.value).startswith(f"override '{override}': env: {message}")
    with pytest.raises(ConfigError, match="table_target_distance=.0.9, 1.0. m: no point of target_region"):
        load_config(NAV.parent / "pickplace.yaml", ["env.table_target_distance=[0.9,1.0]"])
    load_config(NAV.parent / "pickplace.yaml", ["env.table_target_distance=[0.9,1.0]", "env.table_target_prob=0"])


@pytest.mark.parametrize("make, key", [
    (lambda: PushEnv(num_envs=8, nthread=1, seed=0), "target_distance"),
    (lambda: PickPlaceEnv(num_envs=8, nthread=1, seed=0, table_target_prob=1.0), "table_target_distance"),
])
def test_table_targets_that_cannot_lie_in_the_region_raise_instead_of_falling_back(make, key):
    env = make()
    env.layout_params["workspace"][:] = 10.0  # the cube lands far outside the target region
    with pytest.raises(LayoutError, match=rf"^no target .* m from the cube at \[.*\] lies in the target region "
                                          rf"after {MAX_ROUNDS * 32} tries \(env.{key}, env.target_region"):
        env.reset(seed=0)


def test_table_targets_lie_in_the_region():
    env = PushEnv(num_envs=256, nthread=1, seed=0)
    env.reset(seed=0)
    local = env.target[:, :2] - env.base_frame()[0][:, :2]
    region = env.cfg.target_region
    assert np.all((local[:, 0] >= region.x.lo) & (local[:, 0] <= region.x.hi))
    assert np.all((local[:, 1] >= region.y.lo) & (local[:, 1] <= region.y.hi))
    distance = np.linalg.norm(env.target[:, :2] - env.object_pos[:, :2], axis=-1)
    assert np.all((distance >= env.cfg.target_distance.lo) & (distance <= env.cfg.target_distance.hi))


def test_mobile_pick_layout_that_cannot_fit_raises_a_bounded_error():
    env = MobilePickEnv(num_envs=2, nthread=1, seed=0, arena_size=2.1, zone_radius=0.6, zone_distance=[1.0, 1.5])
    with pytest.raises(LayoutError, match=r"^no MobilePick layout fits a 2.1 m arena .* after 32000 tries "
                                          r"\(env.arena_size, env.table_distance, env.zone_distance"):
        env.reset(seed=0)


def test_mobile_pick_cube_off_the_table_ends_the_episode():
    env = MobilePickEnv(num_envs=2, nthread=1, seed=0)
    env.reset(seed=0)
    qpos = env.qpos[0].copy()
    a = env._obj_qpos
    qpos[a:a + 3] = [*env.target[0, :2], env.object_half[0]]  # on the floor, in the drop zone
    env.qpos[0] = qpos
    env.batch.forward([0])
    _, _, terminated, truncated, info = env.step(np.zeros((2, 8)))
    assert terminated.tolist() == [True, False] and not truncated.any()
    assert info["episode"]["drops"][0] == 1.0 and info["episode"]["success"][0] == 0.0
    assert env.episode_step.tolist() == [0, 1]  # env 0 started its next episode
