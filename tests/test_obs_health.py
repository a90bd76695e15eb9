"""Observation health: the training distribution in the contract, PolicyRunner's per-step check,
``robolearn obs-report`` on recorded logs, ``eval --record``, the contract's ``trained_with``, and
``deploy-bench --rate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robolearn.cli import main
from robolearn.config import env_config_class, load_config
from robolearn.deploy import ContractError, PolicyRunner
from robolearn.deploy.contract import validate
from robolearn.deploy.export import export_policy, trained_with
from robolearn.deploy.latency import WAIT_MODES, measure_latency_at_rate
from robolearn.deploy.obs_report import ObsLogError, obs_report
from robolearn.envs import make_env

from policies import make_policy
from test_image_export import peak_bytes

NAV = "robolearn/Nav-v0"


def rollout_obs(env, steps: int, seed: int) -> np.ndarray:
    """Policy observations of random-action episodes, (steps * num_envs, obs_dim)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    seen = [obs["policy"]]
    for _ in range(steps):
        obs, *_ = env.step(rng.uniform(-1, 1, (env.num_envs, 2)))
        seen.append(obs["policy"])
    return np.concatenate(seen)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A Nav policy whose normaliser saw 16 envs x 200 steps of random driving, exported; and the
    observations it saw."""
    out = tmp_path_factory.mktemp("health") / "export"
    env = make_env(env_config_class(NAV)(num_envs=16, nthread=1), seed=0)
    seen = rollout_obs(env, 200, seed=0)
    torch.manual_seed(0)
    policy = make_policy({"policy": 23, "critic": 29}, 2, actor_hidden=[32])
    policy.train()
    policy.update_normalizers({"policy": torch.from_numpy(seen), "critic": torch.zeros(len(seen), 29)})
    export_policy(policy, env, out, task=NAV, formats=["onnx"])
    return out, seen, env


def test_the_contract_carries_each_terms_training_distribution_units_and_frame(exported):
    out, seen, _ = exported
    contract = json.loads((out / "policy.json").read_text())
    terms = {term["name"]: term for term in contract["obs"]["terms"]}
    assert contract["obs"]["stats"]["samples"] == len(seen)
    lidar = terms["lidar"]
    np.testing.assert_allclose(lidar["stats"]["mean"], seen[:, 5:21].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lidar["stats"]["std"], seen[:, 5:21].std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lidar["stats"]["min"], seen[:, 5:21].min(0), rtol=1e-6)
    np.testing.assert_allclose(lidar["stats"]["max"], seen[:, 5:21].max(0), rtol=1e-6)
    assert lidar["units"] == "m" and lidar["range_m"] == 3.0 and len(lidar["angles_deg"]) == 16
    assert terms["goal"]["elements"] == ["distance_m", "cos_bearing", "sin_bearing"]
    assert all({"units", "frame", "meaning"} <= set(term) for term in terms.values())
    bad = json.loads(json.dumps(contract))
    bad["obs"]["terms"][2]["stats"]["std"] = bad["obs"]["terms"][2]["stats"]["std"][:-1]
    with pytest.raises(ContractError, match=r"contract key 'obs.terms\[2\].stats.std': expected 16 finite numbers"):
        validate(bad, "x")


def test_health_check_flags_a_term_shifted_by_ten_std_and_not_nominal_observations(exported):
    out, seen, env = exported
    runner = PolicyRunner(out)
    assert runner.health_checked
    runner.step(seen[123].copy())  # an observation of training: inside its range
    assert not runner.last_out_of_distribution
    fresh = rollout_obs(env, 100, seed=7)  # new episodes of the same kind
    for obs in fresh:
        runner.step(obs)
    assert runner.out_of_distribution <= 0.01 * len(fresh)
    stats = {term["name"]: term["stats"] for term in runner.contract["obs"]["terms"]}
    before = runner.health()
    shifted = seen[123].copy()
    shifted[3:5] += 10.0 * np.asarray(stats["velocity"]["std"], np.float32)  # the velocity term
    runner.step(shifted)
    assert runner.last_out_of_distribution
    after = runner.health()
    assert after["out_of_distribution"] == before["out_of_distribution"] + 1
    assert after["out_of_distribution_terms"].get("velocity", 0) == before["out_of_distribution_terms"].get("velocity", 0) + 1
    assert {k: v for k, v in after["out_of_distribution_terms"].items() if k != "velocity"} == \
        {k: v for k, v in before["out_of_distribution_terms"].items() if k != "velocity"}
    assert after["steps"] == before["steps"] + 1
    off = PolicyRunner(out, health_sigma=None)
    off.step(shifted)
    assert not off.health_checked and off.out_of_distribution == 0


def test_health_check_allocates_nothing_per_call(exported):
    out, seen, _ = exported
    on, off = PolicyRunner(out), PolicyRunner(out, health_sigma=None)
    shifted = seen[5] + 1000.0  # flagged every call: the counting path too
    assert peak_bytes(lambda: on.step(shifted)) <= peak_bytes(lambda: off.step(shifted)) + 512
    assert on.out_of_distribution > 0


def write_log(path, obs: np.ndarray) -> None:
    np.savez(path, obs=obs.astype(np.float32))


def test_obs_report_names_a_lidar_scaled_by_100(exported, tmp_path, capsys):
    out, _, env = exported
    log = rollout_obs(env, 60, seed=11)
    write_log(tmp_path / "ok.npz", log)
    assert obs_report(out, tmp_path / "ok.npz")["suspect_terms"] == []
    scaled = log.copy()
    scaled[:, 5:21] *= 100.0
    write_log(tmp_path / "cm.npz", scaled)
    report = obs_report(out, tmp_path / "cm.npz")
    assert report["suspect_terms"] == ["lidar"]
    lidar = next(row for row in report["terms"] if row["term"] == "lidar")
    assert lidar["scale_ratio"] == pytest.approx(100.0, rel=0.1) and "units" in lidar["findings"][0]
    assert main(["obs-report", str(out), str(tmp_path / "cm.npz"), "--png", str(tmp_path / "cm.png")]) == 1
    text = capsys.readouterr().out
    assert "lidar" in text and "scaled x" in text and (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["obs-report", str(out), str(tmp_path / "ok.npz")]) == 0


def test_obs_report_reads_per_term_logs_and_rejects_misfits(exported, tmp_path):
    out, _, env = exported
    log = rollout_obs(env, 30, seed=12)
    per_term = {"goal": log[:, :3], "velocity": log[:, 3:5], "lidar": log[:, 5:21], "last_action": log[:, 21:]}
    np.savez(tmp_path / "terms.npz", **per_term)
    assert obs_report(out, tmp_path / "terms.npz")["steps"] == len(log)
    np.savez(tmp_path / "short.npz", obs=log[:, :20])
    with pytest.raises(ObsLogError, match=r"short.npz: 'obs' has shape \(\d+, 20\), the policy reads \(steps, 23\)"):
        obs_report(out, tmp_path / "short.npz")
    np.savez(tmp_path / "partial.npz", goal=log[:, :3])
    with pytest.raises(ObsLogError, match=r"no 'obs' array and no array for the term\(s\) \['velocity', 'lidar'"):
        obs_report(out, tmp_path / "partial.npz")


def test_eval_record_writes_a_log_obs_report_reads(tmp_path, capsys):
    config = tmp_path / "nav.yaml"
    config.write_text(f"experiment: rec\nenv: {{task: {NAV}, num_envs: 4, nthread: 1, episode_seconds: 2.0}}\n"
                      "trainer: {num_steps: 8, max_iterations: 1}\npolicy: {actor_hidden: [16], critic_hidden: [16]}\n")
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--formats", "onnx"]) == 0
    assert main(["eval", str(tmp_path / "run"), "--episodes", "4", "--record", str(tmp_path / "log.npz")]) == 0
    data = np.load(tmp_path / "log.npz")
    assert data["obs"].shape[1] == 23 and list(data["terms"]) == ["goal", "velocity", "lidar", "last_action"]
    assert data["obs"].shape[0] == 4 * 40  # 4 episodes of 40 steps (2 s at 20 Hz; an untrained policy times out)
    capsys.readouterr()
    assert main(["obs-report", str(tmp_path / "run" / "export"), str(tmp_path / "log.npz")]) in (0, 1)
    assert "obs-report" in capsys.readouterr().out


def test_trained_with_gives_the_latency_the_policy_met(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("env: {task: robolearn/NavPO-v0, action_latency: [1, 3]}\ntrainer: {max_iterations: 1}\n"
                      "randomization:\n  params:\n    lag: {target: action_latency, op: set, type: int, init_range: [0, 2]}\n"
                      "    late: {target: obs_latency, op: set, type: int, init_range: [1, 1]}\n")
    loaded = load_config(config)
    info = trained_with(loaded, {}, 0.05)
    assert info["action_latency_steps"] == [1, 5] and info["action_latency_s"] == [0.05, 0.25]
    assert info["obs_latency_steps"] == [1, 1]
    assert info["randomization"]["lag"] == {"target": "action_latency", "range": [0.0, 2.0]}


def test_deploy_bench_at_a_rate_reports_each_wait_mode(exported, capsys):
    out, _, _ = exported
    results = measure_latency_at_rate(out, rate_hz=500.0, ticks=10, lead_s=0.0005)
    assert list(results) == list(WAIT_MODES)
    assert all(0 < row["p50_us"] <= row["p99_us"] <= row["max_us"] for row in results.values())
    assert main(["deploy-bench", str(out), "--rate", "500", "--ticks", "5"]) == 0
    assert "sleep+warm+spin" in capsys.readouterr().out


def test_warm_runs_the_step_path_and_keeps_nothing(exported):
    out, seen, _ = exported
    runner, fresh = PolicyRunner(out), PolicyRunner(out)
    first = runner.step(seen[10] + 1000.0).copy()  # out of distribution: counted once
    fresh.step(seen[10] + 1000.0)
    health = runner.health()
    runner.warm()
    runner.warm()
    assert runner.health() == health and runner.last_out_of_distribution
    np.testing.assert_array_equal(runner.step(seen[11]), fresh.step(seen[11]))
    assert not np.array_equal(first, runner.step(seen[12]))  # the command is still the step's own
