"""Distributed training: a real 2-rank gloo job on localhost (torchrun), the --nproc launcher, the
CUDA path's packed host<->device step (as far as CPU allows), and the device-side lr rule."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robolearn import cli
from policies import make_policy
from robolearn.config import load_config
from robolearn.distributed import Distributed, DistributedError, choose_backend, torchrun_command
from robolearn.rollout import StepPacker, TorchEnv, collect_rollout
from robolearn.storage import RolloutStorage

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "configs" / "nav.yaml"
NUM_ENVS, NUM_STEPS = 16, 8


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run tests/dist_worker.py on 2 gloo ranks: 2 iterations of PPO on Nav with ADR, then a resume."""
    out = tmp_path_factory.mktemp("dist")
    config = yaml.safe_load(NAV.read_text())
    config["env"].update(num_envs=NUM_ENVS, nthread=0, episode_seconds=0.5)  # 10-step episodes
    config["policy"].update(actor_hidden=[32, 32], critic_hidden=[32, 32])
    config["device"] = "cpu"
    config["trainer"] = {"num_steps": NUM_STEPS, "max_iterations": 2, "sync_check_interval": 1}
    config["randomization"] = {
        # every full queue moves its bound outward (success 0 >= t_high 0)
        "adr": {"enabled": True, "boundary_prob": 0.5, "queue_length": 2, "t_low": -1.0, "t_high": 0.0},
        "params": {
            "wheel_friction": {"target": "geom_friction", "select": {"geoms": ["wheel_l", "wheel_r"]},
                               "init_range": [1.0, 1.0], "limits": [0.1, 2.0], "delta": 0.1},
            "base_mass": {"target": "body_mass", "select": {"bodies": ["base"]},
                          "init_range": [1.0, 1.0], "limits": [0.5, 3.0], "delta": 0.1},
        },
    }
    config_path = out / "nav_dist.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = torchrun_command(2, [str(ROOT / "tests" / "dist_worker.py"), str(out), str(config_path)], module=None)
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], result


def test_two_ranks_keep_identical_parameters(two_ranks):
    out, (r0, r1), _ = two_ranks
    assert (r0["world_size"], r0["backend"]) == (2, "gloo")
    assert r0["threads"] == r1["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # each rank its share
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name
    assert r0["lr"] == r1["lr"]
    for name, value in r0["resumed_params"].items():
        assert torch.equal(value, r1["resumed_params"][name]), name
    assert not torch.equal(r0["params"]["actor.0.weight"], r0["resumed_params"]["actor.0.weight"])  # it trained on


def test_merged_normalizer_equals_statistics_of_concatenated_data(two_ranks):
    _, ranks, _ = two_ranks
    data = torch.cat([r["norm_data"] for r in ranks]).double()
    for r in ranks:
        count, mean, var, lo, hi = r["norm_stats"]
        assert count.item() == data.shape[0] == 50 + 80
        assert torch.equal(lo.double(), data.amin(0)) and torch.equal(hi.double(), data.amax(0))  # every rank's extremes
        torch.testing.assert_close(mean.double(), data.mean(0), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(var.double(), data.var(0, correction=0), atol=1e-6, rtol=1e-6)
    # the model's observation normaliser during training: all ranks' observations, merged
    seen = torch.cat([r["normalizer_inputs"] for r in ranks]).double()
    for r in ranks:
        stats = r["normalizer"]
        assert stats["count"].item() == seen.shape[0] == 2 * NUM_ENVS * (1 + 2 * NUM_STEPS)  # reset obs + 2 rollouts
        torch.testing.assert_close(stats["mean"].double(), seen.mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stats["var"].double(), seen.var(0, correction=0), atol=1e-5, rtol=1e-4)


def test_adr_results_of_rank_1_reach_rank_0_and_its_ranges_come_back(two_ranks):
    _, (r0, r1), _ = two_ranks
    # rank 0 evaluated no boundary (boundary_prob 0): whatever it recorded came from rank 1
    assert sum(r0["adr"]["recorded"]) > 0 and r0["adr"]["moves"] > 0
    assert not np.array_equal(r0["adr"]["ranges"], [[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(r1["adr"]["ranges"], r0["adr"]["ranges"])  # broadcast back
    assert r1["adr"]["moves"] == r0["adr"]["moves"]
    assert all(n == 0 for pair in r1["adr"]["queues"] for n in pair)  # rank 1 only reports


def test_only_rank_0_writes_and_counts_all_samples(two_ranks):
    out, (r0, r1), result = two_ranks
    assert not (out / "run_rank1").exists()
    rows = (out / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [int(row.split(",")[header.index("env_steps")]) for row in rows[1:]]
    assert steps == [2 * NUM_ENVS * NUM_STEPS * i for i in (1, 2, 3)]  # per iteration: both ranks' samples
    assert r0["env_steps"] == r1["env_steps"] == 2 * 2 * NUM_ENVS * NUM_STEPS
    assert result.stdout.count("training robolearn/Nav-v0") == 2  # rank 0's two runs; rank 1 is quiet


def test_divergence_is_an_error_on_every_rank(two_ranks):
    _, ranks, _ = two_ranks
    for r in ranks:
        assert r["divergence"] is not None and "iteration 99" in r["divergence"] and "rank 1" in r["divergence"]


def test_resume_gives_every_rank_its_own_random_streams(two_ranks):
    _, (r0, r1), _ = two_ranks
    assert r0["resumed_iteration"] == r1["resumed_iteration"] == 2
    for r in (r0, r1):
        assert torch.equal(r["rng_on_resume"], r["rng_after_training"])
    assert not torch.equal(r0["rng_on_resume"], r1["rng_on_resume"])
    assert r0["resumed_env_steps"] == 3 * 2 * NUM_ENVS * NUM_STEPS


# ---------------------------------------------------------------------------------------------- launcher

def test_nproc_launches_torchrun_and_returns_rank0_exit_code(tmp_path, monkeypatch):
    calls = []

    class FakeProcess:
        def __init__(self, command, env):
            calls.append((command, env))
            Path(env[cli.EXIT_CODE_FILE]).write_text("3")  # rank 0 stopped on a diverged run

        def wait(self):
            return 1  # torchrun's code for any failed worker

    monkeypatch.setattr(cli.subprocess, "Popen", FakeProcess)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    code = cli.main(["train", str(NAV), "--nproc", "2", "env.num_envs=64", "device=cpu", "--run-dir", str(tmp_path)])
    assert code == 3
    command, env = calls[0]
    assert command[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                           "--nproc_per_node=2", "-m"]
    assert command[7:] == ["robolearn", "train", str(NAV), "env.num_envs=64", "device=cpu", "--run-dir", str(tmp_path)]
    assert env["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert not tmp_path.joinpath("metrics.csv").exists()  # the launcher itself trains nothing


def test_nproc_bad_input_is_one_line(capsys, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(NAV), "--nproc", "0"])
    assert info.value.code == 2 and "--nproc: must be positive, got 0" in capsys.readouterr().err
    assert cli.main(["train", str(NAV), "--nproc", "2", "device=cpu", "trainer.dist_backend=nccl"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nccl needs CUDA" in err
    assert cli.main(["train", str(NAV), "--nproc", "2", "trainer.dist_backend=mpi"]) == 2
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert cli.main(["train", str(NAV), "--nproc", "2"]) == 1
    assert "already a torchrun worker" in capsys.readouterr().err


def test_backend_and_device_choice():
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_backend("auto", torch.device("cuda", 0)) == "nccl"
    with pytest.raises(DistributedError, match="nccl needs CUDA"):
        choose_backend("nccl", torch.device("cpu"))
    single = Distributed.from_env("cpu")  # no torchrun variables: one process, collectives are no-ops
    assert not single.enabled and single.is_main and single.all_gather_object(5) == [5] and single.sum_int(7) == 7


# ---------------------------------------------------------------------------------------------- CUDA path on CPU

def test_step_packer_round_trip():
    packer = StepPacker({"policy": 3, "critic": 5}, num_envs=4)
    rng = np.random.default_rng(0)
    obs = {"policy": rng.standard_normal((4, 3), np.float32), "critic": rng.standard_normal((4, 5), np.float32)}
    reward = rng.standard_normal(4).astype(np.float32)
    dones = np.array([0, 1, 0, 1], bool)
    ids = np.array([1, 3])
    final = {g: v[ids] + 1.0 for g, v in obs.items()}
    length = packer.pack(obs, reward, dones, ids, final)
    assert length == 4 * (3 + 5 + 2) + 2 * (1 + 3 + 5)
    got_obs, got_reward, got_dones, got_ids, got_final = packer.unpack(packer.host[:length].clone(), 2)
    for group in obs:
        np.testing.assert_array_equal(got_obs[group].numpy(), obs[group])
        np.testing.assert_array_equal(got_final[group].numpy(), final[group])
    np.testing.assert_array_equal(got_reward.numpy(), reward)
    np.testing.assert_array_equal(got_dones.numpy(), dones.astype(np.float32))
    assert got_ids.dtype == torch.int64 and got_ids.tolist() == [1, 3]
    assert packer.unpack(packer.host[:packer.pack(obs)].clone(), 0)[3] is None


def test_staged_env_steps_equal_the_direct_path():
    """The pinned/packed path (what CUDA uses), run on CPU, fills the rollout storage exactly as the
    zero-copy path does, truncations included."""
    from robolearn.envs import make_env

    config = load_config(NAV, ["env.num_envs=6", "env.nthread=1", "env.episode_seconds=0.3"]).env  # 6-step episodes
    storages = []
    for staged in (False, True):
        torch.manual_seed(0)
        env = make_env(config, seed=3)
        torch_env = TorchEnv(env, torch.device("cpu"), staged=staged)
        dims = {g: layout.size for g, layout in env.obs_layout.items()}
        model = make_policy(dims, 2, actor_hidden=[16], critic_hidden=[16])
        storage = RolloutStorage(10, 6, dims, 2, model.initial_state(6).shape)
        obs, _, _ = collect_rollout(model, torch_env, storage, torch_env.reset(), model.initial_state(6))
        storages.append((storage, obs))
        env.close()
    (a, obs_a), (b, obs_b) = storages
    assert a.dones.sum() > 0
    for name in ("actions", "rewards", "dones", "values", "next_values", "log_probs"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for group in a.obs:
        assert torch.equal(a.obs[group], b.obs[group]) and torch.equal(obs_a[group], obs_b[group])
