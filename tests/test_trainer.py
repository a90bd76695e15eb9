"""Trainer: bootstrapping, one policy interface, NaN stop, CLI train / eval, per-term reward logs, learning."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.checkpoint import CheckpointError, load_checkpoint
from robolearn.config import load_config
from robolearn.trainer import Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "configs" / "nav.yaml"
SMALL = ["env.num_envs=16", "trainer.num_steps=16", "policy.actor_hidden=[32,32]",
         "policy.critic_hidden=[32,32]", "trainer.max_iterations=2", "device=cpu", "env.nthread=1"]


def small_config(*extra):
    return load_config(NAV, [*SMALL, *extra])


def robolearn(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "robolearn", *args], capture_output=True, text=True,
                          cwd=kwargs.pop("cwd", ROOT), **kwargs)


def test_truncated_episodes_bootstrap_from_final_obs(tmp_path):
    # 0.5 s episodes = 10 control steps: every env is truncated at steps 10 and 20 of the rollout
    trainer = Trainer(small_config("env.episode_seconds=0.5", "env.goal_distance=[4, 5]"), tmp_path)
    finals, steps = {}, []
    step = trainer.env.step

    def recording_step(actions):
        out = step(actions)
        steps.append((out[2].copy(), out[3].copy()))
        if "final_obs" in out[4]:
            finals[len(steps) - 1] = {g: torch.from_numpy(v.copy()) for g, v in out[4]["final_obs"].items()}
        return out

    trainer.env.step = recording_step
    trainer.obs = trainer.torch_env.reset()
    trainer.policy_state = trainer.policy.initial_state(16)
    trainer._collect()
    last_obs = trainer.obs
    s = trainer.storage
    with torch.no_grad():
        for t, (terminated, truncated) in enumerate(steps):
            if truncated.any():
                expected = trainer.policy.value(finals[t], None)
                np.testing.assert_allclose(s.next_values[t][truncated].numpy(), expected[truncated].numpy(), rtol=1e-6)
                # V(final_obs) is not V of the returned (post-reset) observation
                assert not torch.allclose(s.next_values[t][truncated], s.values[t + 1][truncated])
            assert torch.all(s.next_values[t][terminated] == 0)
            running = ~(terminated | truncated)
            following = s.values[t + 1] if t + 1 < s.num_steps else trainer.policy.value(last_obs, None)
            np.testing.assert_allclose(s.next_values[t][running].numpy(), following[running].numpy(), rtol=1e-6)
    assert sum(tr.sum() for _, tr in steps) == trainer.env.num_envs  # all truncated at step 10 of 16


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(small_config("trainer.max_iterations=5", "trainer.checkpoint_interval=1"), tmp_path)
    step, calls = trainer.env.step, [0]

    def poisoned_step(actions):
        obs, reward, terminated, truncated, info = step(actions)
        calls[0] += 1
        if calls[0] > 16 * 2:  # third iteration: a NaN reward
            reward = reward.copy()
            reward[3] = np.nan
        return obs, reward, terminated, truncated, info

    trainer.env.step = poisoned_step
    with pytest.raises(TrainingDiverged, match=r"iteration 3: .*non-finite.*last good checkpoint: .*last\.pt"):
        trainer.learn()
    state = load_checkpoint(tmp_path)
    assert state["iteration"] == 2 and not list((tmp_path / "checkpoints").glob("model_000003.pt"))
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_bad_checkpoints_fail_with_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in this directory"):
        load_checkpoint(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)
    out = robolearn("eval", str(bad), "--json")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "not a readable checkpoint" in out.stderr


def test_cli_train_then_eval_json_and_video(tmp_path):
    run = tmp_path / "run"
    out = robolearn("train", str(NAV), *SMALL, "--run-dir", str(run))
    assert out.returncode == 0, out.stderr
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert any((run / "tb").iterdir())
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for column in ("iteration", "env_steps", "wall_s", "steps_per_s", "return_mean", "success_rate", "episode_len",
                   "policy_loss", "value_loss", "entropy", "kl", "lr", "spl", "collisions", "reward/success",
                   "reward/slack", "reward/progress", "reward/collision"):
        assert column in rows[0]
    assert "it     2" in out.stdout  # plain log lines when stdout is not a terminal

    out = robolearn("eval", str(run), "--episodes", "4", "--num-envs", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["episodes"] == 4
    for key in ("success_rate", "return_mean", "spl_mean", "episode_len"):
        assert key in result

    video = tmp_path / "out.mp4"
    out = robolearn("eval", str(run), "--episodes", "1", "--num-envs", "1", "--video", str(video),
                    env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    assert out.returncode == 0, out.stderr
    assert video.stat().st_size > 10_000
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = capture.read()
    assert ok and frame.shape == (480, 480, 3) and frames >= 1 and frame.std() > 5

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = robolearn("eval", str(run), "--episodes", "1", "--num-envs", "1", "--video", str(blocker / "out.mp4"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot write the video here" in out.stderr


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "robolearn", "train", str(NAV), *SMALL[:-3],
                             "trainer.max_iterations=100000", "device=cpu", "--run-dir", str(run)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.csv"
    deadline = time.time() + 60
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count("\n") < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Ctrl-C: finishing this iteration" in stdout and "stopping on request: saving a checkpoint" in stdout
    state = load_checkpoint(run)
    assert state["iteration"] >= 1


def test_bad_config_on_train_is_one_line(tmp_path):
    out = robolearn("train", str(NAV), "trainer.num_stepz=8", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert out.stderr.strip() == ("robolearn: config error: override 'trainer.num_stepz=8': trainer.num_stepz: unknown key "
                                  "(did you mean num_steps?)")
    assert not (tmp_path / "r").exists()


def test_seeded_short_run_learns_to_reach_goals(tmp_path):
    """Open arena, near goals: a fixed-seed run of ~15 s goes from rare to frequent success."""
    from robolearn.envs import make_env
    from robolearn.evaluation import run_episodes

    config = load_config(NAV, ["device=cpu", "seed=3", "env.num_envs=128", "env.obstacles.count=[0, 0]",
                               "env.goal_distance=[1.0, 2.0]", "env.episode_seconds=10",
                               "trainer.max_iterations=40", "trainer.checkpoint_interval=1000"])
    trainer = Trainer(config, tmp_path)
    eval_env = make_env(config.env.model_copy(update={"num_envs": 50}), seed=99)
    before = run_episodes(trainer.policy.eval(), eval_env, episodes=100)["success_rate"]
    trainer.learn()
    eval_env = make_env(config.env.model_copy(update={"num_envs": 50}), seed=99)
    after = run_episodes(trainer.policy.eval(), eval_env, episodes=100)["success_rate"]
    assert before < 0.3
    assert after > before + 0.4, (before, after)


ADR = ["randomization.adr.enabled=true", "randomization.adr.queue_length=2", "randomization.adr.objective=length",
       "randomization.adr.t_low=1", "randomization.adr.t_high=2", "env.episode_seconds=1.0",
       "randomization.params={mass: {target: body_mass, select: {bodies: [base]}, init_range: [1, 1],"
       " limits: [0.5, 2], delta: 0.1}, lat: {target: action_latency, op: set, type: int, init_range: [0, 0],"
       " limits: [0, 2], delta: 1}}"]


def test_adr_is_logged_checkpointed_and_resumed(tmp_path):
    """With the objective episode length above t_high, every full queue moves its bound outward:
    the ranges grow, are logged every iteration, saved, and restored exactly on resume."""
    a = Trainer(small_config(*ADR, "trainer.max_iterations=3"), tmp_path / "run")
    a.learn()
    adr = a.env.randomizer.adr
    assert adr.moves > 0 and adr.entropy() > np.log(1e-6)
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for key in ("adr/entropy", "adr/mass/lo", "adr/mass/hi", "adr/lat/lo", "adr/lat/hi"):
        assert key in rows[0]
    entropy = [float(r["adr/entropy"]) for r in rows]
    assert entropy == sorted(entropy) and entropy[-1] > entropy[0]
    assert float(rows[-1]["adr/mass/hi"]) == pytest.approx(adr.ranges[0, 1]) and adr.ranges[0, 1] <= 2.0
    b = Trainer.from_checkpoint(tmp_path / "run", config=small_config(*ADR, "trainer.max_iterations=4"))
    assert b.env.randomizer.adr.ranges.tolist() == adr.ranges.tolist()
    assert b.env.randomizer.adr.queues == adr.queues
    assert b.env.randomizer.adr.rng.bit_generator.state == adr.rng.bit_generator.state

    out = robolearn("eval", str(tmp_path / "run"), "--episodes", "2", "--num-envs", "2", "--json",
                    "--randomization", "train")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["randomization"] == "train"
    out = robolearn("eval", str(tmp_path / "run"), "--episodes", "2", "--num-envs", "2", "--json",
                    "--randomization", str(ROOT / "configs" / "eval" / "nav_field.yaml"))
    assert out.returncode == 0, out.stderr
    bad = tmp_path / "bad_ranges.yaml"
    bad.write_text("params: {m: {target: body_mass, select: {bodies: [chassis]}, init_range: [2, 2]}}\n")
    out = robolearn("eval", str(tmp_path / "run"), "--episodes", "2", "--randomization", str(bad))
    assert out.returncode == 2 and "'chassis' matches no body" in out.stderr and out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"robolearn: config error: {bad}: randomization.params.m.select.bodies:")


def test_a_randomization_error_names_the_file_or_override(tmp_path):
    """Selections are checked against the model when the env is built, after loading: the error
    still names where the key came from."""
    params = ("randomization.params={m: {target: body_mass, select: {bodies: [chassis]}, init_range: [1, 1]}}")
    out = robolearn("train", str(NAV), *SMALL, params, "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"robolearn: config error: override {params!r}: randomization.params.m.select.bodies:")
    assert not (tmp_path / "r").exists()  # nothing was claimed


def test_rollouts_and_updates_run_on_their_configured_threads(tmp_path, monkeypatch):
    """The policy runs rollouts on trainer.rollout_threads torch threads (1) and the update on
    trainer.update_threads (0: half of the CPUs); the process's own count is restored after each."""
    from robolearn.distributed import resolve_threads

    assert (resolve_threads(0, 2), resolve_threads(0, 16), resolve_threads(0, 1), resolve_threads(3, 2)) == (1, 8, 1, 3)
    trainer = Trainer(small_config("trainer.max_iterations=1", "trainer.update_threads=2"), tmp_path)
    seen = {}
    collect, update = trainer._collect, trainer.algorithm.update
    monkeypatch.setattr(trainer, "_collect", lambda: (seen.setdefault("collect", torch.get_num_threads()), collect())[1])
    monkeypatch.setattr(trainer.algorithm, "update",
                        lambda storage: (seen.setdefault("update", torch.get_num_threads()), update(storage))[1])
    before = torch.get_num_threads()
    trainer.learn()
    assert seen == {"collect": 1, "update": 2} and torch.get_num_threads() == before


def test_a_staged_randomization_range_switches_once_training_success_reaches_it(tmp_path):
    """``stage``: the trainer hands the window's success rate to the randomizer after each iteration;
    the later range is logged, announced, checkpointed and kept on resume."""
    staged = ("randomization.params={count: {target: layout, select: {layout: obstacle_count}, op: set, type: int,"
              " init_range: [0, 2], limits: [0, 8], stage: {success: 0.5, range: [6, 8]}}}")
    trainer = Trainer(small_config(staged, "trainer.max_iterations=1"), tmp_path / "run")
    messages = []
    trainer.progress.message = messages.append
    assert trainer.env.randomizer.adr.ranges.tolist() == [[0, 2]]
    trainer.episodes["success"].extend([1.0] * 100)  # as if the run had learned: the window's rate is >= 0.5
    trainer.learn()
    assert trainer.env.randomizer.adr.ranges.tolist() == [[6, 8]]
    assert any(m.startswith("randomization.params.count: training success") and "[6, 8]" in m for m in messages)
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        row = list(csv.DictReader(handle))[-1]
    assert float(row["adr/count/lo"]) == 6 and float(row["adr/count/hi"]) == 8
    resumed = Trainer.from_checkpoint(tmp_path / "run", config=small_config(staged, "trainer.max_iterations=2"))
    assert resumed.env.randomizer.stage_reached.tolist() == [True]
    assert resumed.env.randomizer.adr.ranges.tolist() == [[6, 8]]
