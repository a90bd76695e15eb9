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
                            "env.goal_distance=[2, 4]", "trainer.max_seconds=null"])
    assert cfg.env.num_envs == 64
    assert cfg.algorithm.lr == pytest.approx(3e-4) and isinstance(cfg.algorithm.lr, float)
    assert cfg.env.lidar.rays == 24
    assert cfg.env.goal_distance.as_tuple() == (2.0, 4.0)
    assert cfg.trainer.max_seconds is None


@pytest.mark.parametrize("text, key", [
    ("env: {num_envs: 8, bogus: 1}\n", "env.bogus: unknown key"),
    ("algorithm: {lr: fast}\n", "algorithm.lr"),
    ("env: {num_envs: -3}\n", "env.num_envs"),
    ("env: {goal_distance: [4, 2]}\n", "env.goal_distance: lo > hi"),
    ("env: {lidar: {rays: 0}}\n", "env.lidar.rays"),
    ("trainer: {max_iterations: 0}\n", "trainer.max_iterations"),
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


# --- leniency: what YAML or a typo would let through silently ---------------------------------------

@pytest.mark.parametrize("override, key, problem", [
    ("env.rewards.progress=.nan", "env.rewards.progress", "finite number"),
    ("algorithm.lr=.inf", "algorithm.lr", "finite number"),
    ("env.obstacles.size=[.nan, 0.3]", "env.obstacles.size.lo", "finite number"),
    ("env.num_envs=true", "env.num_envs", "valid integer (got True)"),
    ("algorithm.clip_value=1", "algorithm.clip_value", "valid boolean (got 1)"),
    ("env.num_envs='8'", "env.num_envs", "valid integer (got '8')"),
    ("randomization.params={f: {target: joint_damping, select: {joints: []}, init_range: [1, 1]}}",
     "randomization.params.f.select", "joints: an empty selection randomizes nothing"),
    ("trainer.max_env_steps=null", "trainer", "no training budget"),
])
def test_values_that_would_pass_silently_are_errors(override, key, problem):
    overrides = [override] if override != "trainer.max_env_steps=null" else [override, "trainer.max_seconds=null"]
    with pytest.raises(ConfigError) as info:
        load_config(NAV, overrides)
    message = str(info.value)
    assert "\n" not in message and f": {key}: " in message and problem in message, message
    assert message.startswith(f"override {overrides[-1]!r}:"), message


def test_duplicate_yaml_keys_are_errors(tmp_path):
    path = write(tmp_path, "env:\n  num_envs: 8\n  num_envs: 16\ntrainer: {max_iterations: 1}\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: invalid YAML at line 3: duplicate key 'num_envs'"):
        load_config(path)
    with pytest.raises(ConfigError, match="override 'env.lidar={rays: 8, rays: 9}'"):
        load_config(NAV, ["env.lidar={rays: 8, rays: 9}"])


def test_a_repeated_override_blames_the_one_that_counts():
    with pytest.raises(ConfigError, match=r"^override 'env.num_envs=-1': env.num_envs: "):
        load_config(NAV, ["env.num_envs=3", "env.num_envs=-1"])
    with pytest.raises(ConfigError, match=r"^override 'env.num_envs=-1': env.num_envs: "):
        load_config(NAV, ["env.num_envs=-1", "algorithm.lr=0.01"])


def test_misspelt_keys_suggest_the_right_one():
    for override, suggestion in (("env.numenvs=3", "num_envs"), ("algorithm.gama=0.9", "gamma"),
                                 ("trainr.max_iterations=3", "trainer"), ("env.lidar.rayz=3", "rays"),
                                 ("randomization.params.x.selct={}", None)):
        with pytest.raises(ConfigError) as info:
            load_config(NAV, [override])
        message = str(info.value)
        assert "unknown key" in message
        if suggestion:
            assert message.endswith(f"(did you mean {suggestion}?)"), message


def test_config_command_rejects_a_config_without_budget(tmp_path):
    from robolearn.cli import main

    path = write(tmp_path, "env: {num_envs: 8}\n")
    assert main(["config", str(path)]) == 2


def test_the_old_runner_section_name_says_what_it_is_now(tmp_path):
    with pytest.raises(ConfigError, match=r"exp.yaml: runner: the section is called trainer now"):
        load_config(write(tmp_path, "runner: {max_iterations: 1}\n"))
