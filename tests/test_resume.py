"""Runs that stop and go on: run directories, exact resume, compatibility checks, crashes, signals,
and checkpoints that cannot run code."""

import csv
import errno
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robolearn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robolearn.config import load_config
from robolearn.logger import MetricsLogger
from robolearn.run_dir import RunDirError, claim_run_dir, reserve_run_dir
from robolearn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "configs" / "nav.yaml"
SMALL = ["env.num_envs=8", "trainer.num_steps=8", "policy.actor_hidden=[16]", "policy.critic_hidden=[16]",
         "device=cpu", "env.nthread=1", "env.episode_seconds=1.0"]
LSTM_ADR = ["env.task=robolearn/NavPO-v0", "policy.class=lstm", "policy.rnn_hidden=8", "policy.critic_obs=critic",
            "env.episode_seconds=0.5", "randomization.adr.enabled=true", "randomization.adr.boundary_prob=1.0",
            "randomization.adr.queue_length=2", "randomization.adr.t_low=0.0",
            "randomization.adr.t_high=0.5", "randomization.adr.objective=length",
            "randomization.params={mass: {target: body_mass, select: {bodies: [base]}, init_range: [1, 1],"
            " limits: [0.5, 2], delta: 0.1}, lat: {target: action_latency, op: set, type: int, init_range: [0, 0],"
            " limits: [0, 2], delta: 1}, noise: {target: obs_noise, select: {obs_terms: [lidar]},"
            " init_range: [0.01, 0.05]}}"]


def config(*extra):
    return load_config(NAV, [*SMALL, *extra])


def robolearn(*args):
    return subprocess.run([sys.executable, "-m", "robolearn", *args], capture_output=True, text=True, cwd=ROOT)


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


# --- run directories ------------------------------------------------------------------------------

def test_fresh_training_refuses_a_directory_that_holds_a_run(tmp_path):
    run = tmp_path / "run"
    assert robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=1", "--run-dir", str(run)).returncode == 0
    before = (run / "checkpoints" / "last.pt").read_bytes(), (run / "metrics.csv").read_text()
    out = robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=2", "--run-dir", str(run))
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "already holds a run" in out.stderr and f"--resume {run}" in out.stderr
    assert ((run / "checkpoints" / "last.pt").read_bytes(), (run / "metrics.csv").read_text()) == before
    file = tmp_path / "a_file"
    file.write_text("x")
    out = robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=1", "--run-dir", str(file))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "is not a directory" in out.stderr


def test_default_run_directories_never_collide(tmp_path):
    stamp = tmp_path / "runs" / "nav" / "20261201-120000"  # two trainings started in the same second
    first = claim_run_dir(stamp, "a: 1\n", unique=True)
    second = claim_run_dir(stamp, "a: 2\n", unique=True)
    assert (first, second) == (stamp, stamp.with_name(stamp.name + "-2"))
    assert (first / "config.yaml").read_text() == "a: 1\n" and (second / "config.yaml").read_text() == "a: 2\n"
    with pytest.raises(RunDirError, match="already holds a run"):
        claim_run_dir(stamp, "a: 3\n")  # an explicit --run-dir is never renamed
    assert reserve_run_dir(stamp) == stamp.with_name(stamp.name + "-3")  # the --nproc launcher's reservation


# --- exact resume ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], LSTM_ADR, ["trainer.policy_average=0.9"]],
                         ids=["nav-mlp", "navpo-lstm-adr", "nav-policy-average"])
def test_split_and_resume_equals_the_uninterrupted_run(tmp_path, extra):
    """4 iterations in one go and 2 + --resume 2 give the same parameters, optimiser, ADR state and
    logged rows, bit for bit: episodes in progress, observations, policy state and every random
    stream continue across the checkpoint."""
    whole = Trainer(config(*extra, "trainer.max_iterations=4"), tmp_path / "whole")
    whole.learn()
    Trainer(config(*extra, "trainer.max_iterations=2"), tmp_path / "split").learn()
    resumed = Trainer.from_checkpoint(tmp_path / "split", config=config(*extra, "trainer.max_iterations=4"))
    resumed.learn()
    for (name, a), b in zip(whole.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.algorithm.lr == whole.algorithm.lr
    if whole.average is not None:
        assert whole.average.updates == resumed.average.updates == 4
        for name, a in whole.average.tensors.items():
            assert torch.equal(a, resumed.average.tensors[name]), name
    if whole.env.randomizer is not None:
        assert whole.env.randomizer.adr.moves > 0
        assert resumed.env.randomizer.adr.ranges.tolist() == whole.env.randomizer.adr.ranges.tolist()
    timing = {"wall_s", "steps_per_s", "collect_share"}
    rows = [[{k: v for k, v in row.items() if k not in timing} for row in metrics(tmp_path / run)]
            for run in ("whole", "split")]
    assert rows[0] == rows[1] and [int(r["iteration"]) for r in rows[1]] == [1, 2, 3, 4]


def test_resume_drops_rows_logged_after_the_checkpoint_and_stale_temp_files(tmp_path):
    run = tmp_path / "run"
    Trainer(config("trainer.max_iterations=2"), run).learn()
    # a crash after iteration 4 was logged but before its checkpoint: rows 3 and 4 and a temp file remain
    rows = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join([*rows, rows[-1].replace("2,", "3,", 1), rows[-1].replace("2,", "4,", 1)])
                                     + "\n")
    stale = run / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)
    Trainer.from_checkpoint(run, config=config("trainer.max_iterations=3")).learn()
    assert [int(r["iteration"]) for r in metrics(run)] == [1, 2, 3]
    assert not stale.exists()


def test_resume_with_nothing_left_to_do_writes_nothing(tmp_path):
    run = tmp_path / "run"
    Trainer(config("trainer.max_iterations=2"), run).learn()
    files = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    trainer = Trainer.from_checkpoint(run, config=config("trainer.max_iterations=2"))
    assert trainer.learn() == run / "checkpoints" / "last.pt"
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == files


# --- what a resumed run may change ----------------------------------------------------------------

def test_resume_refuses_another_task_network_or_setting_in_one_line(tmp_path):
    run = tmp_path / "run"
    assert robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=1", "--run-dir", str(run)).returncode == 0
    recorded = (run / "config.yaml").read_text()
    cases = [
        (["env.task=robolearn/NavPO-v0"], "the checkpoint's task is 'robolearn/Nav-v0', this config's is "
                                          "'robolearn/NavPO-v0'"),
        (["env.lidar.rays=8"], "observation layout"),
        (["policy.actor_hidden=[32]"], "policy.actor_hidden is [16] in the run, [32] here"),
        (["policy.class=gru"], "policy.class is 'mlp'"),
        (["algorithm.lr=0.0003"], "algorithm.lr is 0.001 in the run, 0.0003 here"),
        (["env.num_envs=4"], "env.num_envs is 8 in the run, 4 here"),
    ]
    for overrides, message in cases:
        out = robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=2", *overrides, "--resume", str(run))
        assert out.returncode == 1 and out.stderr.count("\n") == 1, (overrides, out.stderr)
        assert message in out.stderr, (overrides, out.stderr)
        assert (run / "config.yaml").read_text() == recorded  # a refused resume leaves the run as it was
        assert load_checkpoint(run)["iteration"] == 1
    # budgets may change, and the run records the change
    out = robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=2", "--resume", str(run))
    assert out.returncode == 0, out.stderr
    assert "max_iterations: 2" in (run / "config.yaml").read_text() and load_checkpoint(run)["iteration"] == 2


def test_resume_accepts_a_setting_newer_than_the_run_only_at_its_default(tmp_path):
    """A run from before a config key existed resumed by today's code: the key at its default
    trains as the run did; any other value is a change, refused in one line."""
    run = tmp_path / "run"
    Trainer(config("trainer.max_iterations=1"), run).learn()
    state = load_checkpoint(run)
    del state["config"]["trainer"]["policy_average"]  # as written before the key existed
    save_checkpoint({key: value for key, value in state.items() if key not in ("path", "format")},
                    run / "checkpoints" / "last.pt")
    out = robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=2", "trainer.policy_average=0.9",
                    "--resume", str(run))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "trainer.policy_average is '<unset>' in the run, 0.9 here" in out.stderr
    out = robolearn("train", str(NAV), *SMALL, "trainer.max_iterations=2", "--resume", str(run))
    assert out.returncode == 0, out.stderr
    assert load_checkpoint(run)["iteration"] == 2


# --- crashes and signals --------------------------------------------------------------------------

def test_sigterm_finishes_the_iteration_saves_and_exits(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "robolearn", "train", str(NAV), *SMALL,
                             "trainer.max_iterations=100000", "--run-dir", str(run)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not (run / "metrics.csv").exists()
                                      or (run / "metrics.csv").read_text().count("\n") < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM: finishing this iteration" in stdout
    logged = int(metrics(run)[-1]["iteration"])
    assert load_checkpoint(run)["iteration"] == logged >= 1  # nothing logged is lost


def test_a_full_disk_while_checkpointing_is_one_line_naming_the_last_good_checkpoint(tmp_path, monkeypatch):
    import robolearn.trainer

    trainer = Trainer(config("trainer.max_iterations=3", "trainer.checkpoint_interval=1"), tmp_path / "run")
    original, calls = robolearn.trainer.save_checkpoint, [0]

    def fill_the_disk(state, path):
        calls[0] += 1
        if calls[0] > 2:  # iteration 2's first file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(state, path)

    monkeypatch.setattr(robolearn.trainer, "save_checkpoint", fill_the_disk)
    with pytest.raises(CheckpointError) as info:
        trainer.learn()
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message
    assert message.endswith(f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints' / 'last.pt'}")
    assert load_checkpoint(tmp_path / "run")["iteration"] == 1


# --- checkpoints are data -------------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": "robolearn.checkpoint/2", "model": _RunsCode(marker), "algorithm": {}, "iteration": 0,
                "config": {}}, crafted)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
        load_checkpoint(crafted)
    assert "\n" not in str(info.value) and not marker.exists()
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps(_RunsCode(marker)))
    out = robolearn("eval", str(pickled))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and not marker.exists()


def test_checkpoints_are_readable_by_others(tmp_path):
    """A controller or a colleague reads checkpoints: they follow the umask like any file (not 0600)."""
    previous = os.umask(0o022)
    try:
        Trainer(config("trainer.max_iterations=1"), tmp_path / "run").learn()
    finally:
        os.umask(previous)
    for path in (tmp_path / "run" / "checkpoints").iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_resumed_run_that_logs_new_columns_widens_metrics_csv(tmp_path):
    """A run resumed with a constraint or reward term it lacked logs those columns too."""
    MetricsLogger(tmp_path, tensorboard=False).log({"iteration": 1, "env_steps": 10, "success_rate": 0.5})
    resumed = MetricsLogger(tmp_path, tensorboard=False)
    resumed.log({"iteration": 2, "env_steps": 20, "success_rate": 0.75, "constraint/bumps": -3.0})
    resumed.log({"iteration": 3, "env_steps": 30, "success_rate": 1.0, "constraint/bumps": -4.0})
    rows = metrics(tmp_path)
    assert [r["constraint/bumps"] for r in rows] == ["", "-3", "-4"]
    assert [r["success_rate"] for r in rows] == ["0.5", "0.75", "1"] and [r["iteration"] for r in rows] == ["1", "2", "3"]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
