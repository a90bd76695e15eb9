"""Sim-to-sim checks: every variant changes the simulation as it says, variant files are validated,
``robolearn sim2sim`` runs an exported policy through PolicyRunner under the variants."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest
import torch

from robolearn.cli import main
from robolearn.config import ConfigError, env_config_class, load_config
from robolearn.deploy.export import export_policy
from robolearn.deploy.sim2sim import DEFAULT_VARIANTS, NOMINAL, load_variants, mark_losses, run_sim2sim
from robolearn.envs import make_env
from robolearn.envs.physics import CONES, INTEGRATORS

from policies import make_policy

NAV = "robolearn/Nav-v0"


def nav_env(num_envs: int = 2, seed: int = 0, **kwargs):
    return make_env(env_config_class(NAV)(num_envs=num_envs, nthread=1), seed=seed, **kwargs)


def test_every_default_variant_changes_what_it_says():
    variants = load_variants(None)
    assert set(variants) == set(DEFAULT_VARIANTS)
    nominal = nav_env()
    base = nominal.model
    for name, variant in variants.items():
        env = nav_env(physics=variant.physics, randomization={"params": variant.params} if variant.params else None)
        simulated = env.batch.get_model(0)  # what the batch steps, not only the model the env built
        physics = variant.physics
        assert env.control_dt == pytest.approx(nominal.control_dt, abs=1e-12), name  # the control period is kept
        if physics.integrator:
            assert simulated.opt.integrator == INTEGRATORS[physics.integrator]
        if physics.timestep_scale:
            assert simulated.opt.timestep == pytest.approx(base.opt.timestep * physics.timestep_scale)
            assert env.frame_skip == nominal.frame_skip * round(1 / physics.timestep_scale)
        if physics.solver_iterations:
            assert (simulated.opt.iterations, simulated.opt.ls_iterations) == (3, 3) != (base.opt.iterations,
                                                                                     base.opt.ls_iterations)
        if physics.cone:
            assert simulated.opt.cone == CONES[physics.cone]
        if physics.solref_timeconst_scale:
            np.testing.assert_allclose(simulated.geom_solref[:, 0], base.geom_solref[:, 0] * 2.0)
        if physics.solimp:
            np.testing.assert_array_equal(simulated.geom_solimp, np.tile(physics.solimp, (base.ngeom, 1)))
            assert not np.array_equal(simulated.geom_solimp, base.geom_solimp)
        if not physics.is_nominal() or variant.params:
            continue
        raise AssertionError(f"{name} changes nothing")


def physics_time_per_step(env, steps: int) -> np.ndarray:
    env.reset(seed=0)
    times = []
    for _ in range(steps):
        env.step(np.zeros((env.num_envs, 2)))
        times.append(env.batch.get_data(0).time)
    return np.diff([0.0, *times])


def test_control_jitter_varies_the_physics_time_of_a_control_step():
    steady = physics_time_per_step(nav_env(num_envs=1), 20)
    jittered = physics_time_per_step(nav_env(num_envs=1, physics={"control_jitter": 0.3}), 60)
    dt = nav_env(num_envs=1).model.opt.timestep
    assert np.allclose(steady[1:], steady[1])  # (the first includes no reset)
    substeps = np.round(jittered[1:] / dt)
    assert set(substeps) <= {4.0, 5.0, 6.0} and len(set(substeps)) >= 2  # 5 +- 30 %, in whole physics steps


@pytest.mark.parametrize("steps", [1, 2])
def test_observation_latency_delays_the_whole_policy_observation(steps):
    """The policy sees exactly the observation of ``steps`` control steps ago, across other envs'
    resets (short episodes), and its episode's first observation before that."""
    config = env_config_class(NAV)(num_envs=3, nthread=1, episode_seconds=0.35)  # 7-step episodes
    latency = {"params": {"late": {"target": "obs_latency", "op": "set", "type": "int", "init_range": [steps, steps]}}}
    plain, late = make_env(config, seed=3), make_env(config, seed=3, randomization=latency)
    rng = np.random.default_rng(0)
    history = [plain.reset(seed=3)[0]["policy"]]
    first = late.reset(seed=3)[0]["policy"]
    np.testing.assert_array_equal(first, history[0])
    since_reset = np.zeros(3, np.int64)
    for _ in range(20):
        actions = rng.uniform(-1, 1, (3, 2))
        obs_plain, _, term, trunc, _ = plain.step(actions)
        obs_late, *_ = late.step(actions)
        done = term | trunc
        since_reset = np.where(done, 0, since_reset + 1)
        history.append(obs_plain["policy"])
        for i in range(3):
            lag = min(steps, since_reset[i])
            np.testing.assert_array_equal(obs_late["policy"][i], history[-1 - lag][i])


def test_a_variants_file_with_an_unknown_key_fails_in_one_line(tmp_path):
    path = tmp_path / "variants.yaml"
    path.write_text("variants:\n  wet:\n    physics: {integrater: rk4}\n")
    with pytest.raises(ConfigError) as err:
        load_variants(path)
    assert str(err.value) == f"{path}: variants.wet.physics.integrater: Extra inputs are not permitted"
    path.write_text("variants:\n  fine: {physics: {timestep_scale: 0.3}}\n")
    with pytest.raises(ConfigError, match="timestep_scale: 1 / 0.3 is not a whole number"):
        load_variants(path)
    path.write_text("variants:\n  nominal: {physics: {integrator: rk4}}\n")
    with pytest.raises(ConfigError, match="variants.nominal: the name of the unchanged run"):
        load_variants(path)


def test_a_variants_file_extends_or_replaces_the_defaults(tmp_path):
    (tmp_path / "eval").mkdir()
    path = tmp_path / "variants.yaml"
    path.write_text("variants:\n  field: {conditions: eval/field.yaml, physics: {integrator: rk4}}\n")
    extended = load_variants(path)
    assert set(extended) == set(DEFAULT_VARIANTS) | {"field"}
    assert extended["field"].conditions == str(tmp_path / "eval" / "field.yaml")  # relative to the file
    path.write_text("replace: true\nvariants:\n  rk4: {physics: {integrator: rk4}}\n")
    assert list(load_variants(path)) == ["rk4"]


@pytest.fixture(scope="module")
def nav_export(tmp_path_factory):
    """A small Nav policy (normaliser fed with rollouts) exported with its experiment config."""
    root = tmp_path_factory.mktemp("sim2sim")
    config_path = root / "config.yaml"
    config_path.write_text(f"experiment: s2s\nseed: 4\nenv: {{task: {NAV}, num_envs: 8, nthread: 1, "
                           "episode_seconds: 4.0}\ntrainer: {max_iterations: 1}\n")
    config = load_config(config_path)
    env = make_env(config.env, seed=0)
    torch.manual_seed(0)
    policy = make_policy({"policy": 23, "critic": 29}, 2, actor_hidden=[32])
    obs, _ = env.reset(seed=0)
    policy.train()
    for _ in range(30):
        policy.update_normalizers({g: torch.from_numpy(v) for g, v in obs.items()})
        obs, *_ = env.step(np.random.default_rng(0).uniform(-1, 1, (8, 2)))
    export_policy(policy, env, root / "export", task=NAV, formats=["onnx"])
    return root / "export", config_path


def test_sim2sim_runs_the_exported_policy_under_each_variant(nav_export, tmp_path):
    export, config_path = nav_export
    variants_file = tmp_path / "v.yaml"
    variants_file.write_text("replace: true\nvariants:\n  rk4: {physics: {integrator: rk4}}\n"
                             "  same: {physics: {integrator: implicitfast}}\n"
                             "  late: {params: {lag: {target: action_latency, op: set, type: int, init_range: [2, 2]}}}\n")
    result = run_sim2sim(export, load_config(config_path), load_variants(variants_file), conditions=[],
                         episodes=8, num_envs=8, threshold=0.1)
    rows = {row["variant"]: row for row in result.rows}
    assert list(rows) == [NOMINAL, "rk4", "same", "late"]
    assert rows["same"]["skipped"] == "the model already simulates this way"  # Nav integrates implicitfast
    for name in (NOMINAL, "rk4", "late"):
        assert rows[name]["episodes"] == 8 and 0.0 <= rows[name]["success_rate"] <= 1.0 and "spl_mean" in rows[name]
        assert rows[name]["success_delta"] == pytest.approx(rows[name]["success_rate"] - rows[NOMINAL]["success_rate"])
    assert rows["rk4"]["return_mean"] != rows[NOMINAL]["return_mean"]  # the same episodes, simulated otherwise
    assert "rk4" in result.format() and "skipped" in result.format()


def test_variants_losing_more_than_the_threshold_are_flagged():
    rows = [{"variant": NOMINAL, "success_rate": 0.9, "return_mean": 3.0},
            {"variant": "a", "success_rate": 0.85, "return_mean": 2.5}, {"variant": "b", "skipped": "why"},
            {"variant": "c", "success_rate": 0.7, "return_mean": 1.0}, {"variant": "d", "success_rate": 1.0, "return_mean": 4.0}]
    mark_losses(rows, threshold=0.1)
    assert [row.get("flagged") for row in rows] == [False, False, None, True, False]
    assert rows[3]["success_delta"] == pytest.approx(-0.2) and rows[3]["return_delta"] == pytest.approx(-2.0)


def test_sim2sim_cli_writes_json_and_png(nav_export, tmp_path, capsys):
    export, config_path = nav_export
    variants_file = tmp_path / "v.yaml"
    variants_file.write_text("replace: true\nvariants:\n  lag: {params: {lag: {target: action_latency, op: set, "
                             "type: int, init_range: [3, 3]}}}\n")
    code = main(["sim2sim", str(export), "--config", str(config_path), "--variants", str(variants_file),
                 "--episodes", "8", "--num-envs", "8", "--no-conditions", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sim2sim.json").read_text())
    assert [row["variant"] for row in data["variants"]] == [NOMINAL, "lag"]
    assert code == (1 if data["flagged"] else 0) and data["flagged"] == []  # an untrained policy has nothing to lose
    assert (tmp_path / "sim2sim.png").read_bytes()[:4] == b"\x89PNG"
    assert "lag" in capsys.readouterr().out
    variants_file.write_text("variants:\n  x: {physics: {cone: round}}\n")
    assert main(["sim2sim", str(export), "--config", str(config_path), "--variants", str(variants_file)]) == 2
    assert "variants.x.physics.cone" in capsys.readouterr().err


def test_a_default_conditions_file_for_another_model_is_skipped(nav_export, tmp_path):
    export, config_path = nav_export
    conditions = tmp_path / "depth_only.yaml"
    conditions.write_text("params:\n  noise: {target: depth_noise, select: {obs_terms: [depth]}, op: set, "
                          "init_range: [0.01, 0.01]}\n")
    result = run_sim2sim(export, load_config(config_path), {}, conditions=[conditions], episodes=4, num_envs=4)
    assert result.rows[1]["variant"] == "conditions:depth_only" and "does not fit this model" in result.rows[1]["skipped"]


def test_physics_of_an_unchanged_model_is_bit_identical():
    a, b = nav_env(seed=1), nav_env(seed=1, physics={})
    assert a.model.opt.integrator == b.model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    oa, _ = a.reset(seed=1)
    ob, _ = b.reset(seed=1)
    for _ in range(5):
        oa, *_ = a.step(np.ones((2, 2)) * 0.5)
        ob, *_ = b.step(np.ones((2, 2)) * 0.5)
    np.testing.assert_array_equal(oa["policy"], ob["policy"])
