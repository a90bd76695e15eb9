"""Config loading: validation errors are one line naming the file (or override) and dotted key."""

from pathlib import Path

import pytest
import yaml

from robolearn.config import ConfigError, dump_config, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "configs" / "nav.yaml"


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_bundled_default_loads():
    cfg = load_config(NAV)
    assert cfg.experiment == "nav"
    assert cfg.env.task == "robolearn/Nav-v0"
    assert cfg.env.num_envs == 256
    assert cfg.env.lidar.rays >= 16
    assert cfg.env.obstacles.count.as_tuple() == (4, 8)


def test_overrides_are_yaml_scalars():
    cfg = load_config(NAV, ["env.num_envs=64", "algorithm.lr=3e-4", "env.lidar.rays=24",
                            "env.goal_distance=[2, 4]", "runner.max_seconds=null"])
    assert cfg.env.num_envs == 64
    assert cfg.algorithm.lr == pytest.approx(3e-4) and isinstance(cfg.algorithm.lr, float)
    assert cfg.env.lidar.rays == 24
    assert cfg.env.goal_distance.as_tuple() == (2.0, 4.0)
    assert cfg.runner.max_seconds is None


@pytest.mark.parametrize("text, key", [
    ("env: {num_envs: 8, bogus: 1}\n", "env.bogus: unknown key"),
    ("algorithm: {lr: fast}\n", "algorithm.lr"),
    ("env: {num_envs: -3}\n", "env.num_envs"),
    ("env: {goal_distance: [4, 2]}\n", "env.goal_distance: lo > hi"),
    ("env: {lidar: {rays: 0}}\n", "env.lidar.rays"),
    ("runner: {max_iterations: 0}\n", "runner.max_iterations"),
    ("device: tpu\n", "device"),
    ("env: {task: robolearn/Nope-v0}\n", "env.task: unknown task"),
    ("surprise: 1\n", "surprise: unknown key"),
])
def test_bad_file_names_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert key in message


def test_bad_override_names_override():
    with pytest.raises(ConfigError, match=r"override 'env\.numenvs=3': env\.numenvs: unknown key"):
        load_config(NAV, ["env.numenvs=3"])
    with pytest.raises(ConfigError, match=r"override 'algorithm\.gamma=2': algorithm\.gamma"):
        load_config(NAV, ["algorithm.gamma=2"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(NAV, ["env.num_envs"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(NAV, ["seed.x=1"])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d"):
        load_config(write(tmp_path, "env:\n  num_envs: [1, 2\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_dump_round_trips(tmp_path):
    cfg = load_config(NAV, ["env.num_envs=32", "seed=7"])
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    assert yaml.safe_load(out.read_text())["env"]["goal_distance"] == [1.5, 5.0]
    assert load_config(out) == cfg


def test_parse_override():
    assert parse_override("a.b=1e-3") == (["a", "b"], 1e-3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=yes") == (["a"], True)
