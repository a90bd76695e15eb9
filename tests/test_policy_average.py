"""The moving average of the policy's weights (trainer.policy_average): the hand-computed average,
what checkpoints keep, and the weights eval and export get."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from robolearn.checkpoint import load_checkpoint, load_policy
from robolearn.config import load_config
from robolearn.models import PolicyAverage
from robolearn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "configs" / "nav.yaml"
SMALL = ["env.num_envs=8", "trainer.num_steps=8", "policy.actor_hidden=[16]", "policy.critic_hidden=[16]",
         "device=cpu", "env.nthread=1", "env.episode_seconds=1.0"]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3))
        self.register_buffer("mean", torch.zeros(2))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_the_average_is_the_hand_computed_exponential_moving_average():
    """After update n the average moves toward the policy by max(1 - decay, 9 / (10 + n)): early
    updates follow the policy closely, later ones average over ~1 / (1 - decay) iterations."""
    module, decay = Tiny(), 0.5
    average = PolicyAverage(module, decay)
    expected_weight, expected_mean = 0.0, 0.0
    for n, value in enumerate([4.0, -2.0, 8.0, 1.0, 3.0, 6.0, -5.0, 2.0, 7.0, 0.5, 9.0, -1.0]):
        with torch.no_grad():
            module.weight.fill_(value)
            module.mean.fill_(2 * value)
        module.count.fill_(n + 1)
        rate = max(1 - decay, 9 / (10 + n))
        assert average.rate() == pytest.approx(rate)
        average.update(module)
        expected_weight += rate * (value - expected_weight)
        expected_mean += rate * (2 * value - expected_mean)
        assert average.tensors["weight"].tolist() == pytest.approx([expected_weight] * 3, abs=1e-6)
        assert average.tensors["mean"].tolist() == pytest.approx([expected_mean] * 2, abs=1e-6)
    assert rate == 0.5 and average.updates == 12
    assert "count" not in average.tensors  # an integer buffer is the policy's own
    saved = average.state_dict(module)
    assert saved["model"]["count"].item() == 12 and saved["model"]["weight"][0].item() == pytest.approx(expected_weight)
    restored = PolicyAverage(Tiny(), decay)
    restored.load_state_dict(saved)
    assert restored.updates == 12 and torch.equal(restored.tensors["weight"], average.tensors["weight"])
    with pytest.raises(ValueError, match="decay"):
        PolicyAverage(module, 1.0)


def test_training_never_acts_with_the_average_and_eval_and_export_use_it(tmp_path):
    """The same seed trains the same policy with and without the average; the checkpoint keeps both
    weights; load_policy (eval, export) gives the average's unless asked for the last iteration's."""
    runs = {}
    for name, extra in (("plain", []), ("averaged", ["trainer.policy_average=0.9"])):
        runs[name] = Trainer(load_config(NAV, [*SMALL, "trainer.max_iterations=3", *extra]), tmp_path / name)
        runs[name].learn()
    for key, value in runs["plain"].policy.state_dict().items():
        assert torch.equal(value, runs["averaged"].policy.state_dict()[key]), key
    assert runs["plain"].average is None and load_checkpoint(tmp_path / "plain")["policy_average"] is None

    state = load_checkpoint(tmp_path / "averaged")
    assert state["policy_average"]["updates"] == 3
    averaged, _, _ = load_policy(tmp_path / "averaged")
    last, _, _ = load_policy(tmp_path / "averaged", average=False)
    for key, value in averaged.state_dict().items():
        assert torch.equal(value, state["policy_average"]["model"][key]), key
        assert torch.equal(last.state_dict()[key], state["model"][key]), key
    assert not torch.equal(averaged.state_dict()["actor.0.weight"], last.state_dict()["actor.0.weight"])

    def evaluate(*flags):
        out = subprocess.run([sys.executable, "-m", "robolearn", "eval", str(tmp_path / "averaged"), "--episodes", "2",
                              "--json", *flags], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    assert evaluate()["weights"] == "average" and evaluate("--last-iterate")["weights"] == "last"
    out = subprocess.run([sys.executable, "-m", "robolearn", "export", str(tmp_path / "averaged")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    contract = json.loads((tmp_path / "averaged" / "export" / "policy.json").read_text())
    assert contract["source"]["weights"] == "average"
    exported = str(tmp_path / "averaged" / "export")
    assert evaluate("--policy", exported)["weights"] == "average"  # what the export holds, as its contract says
    out = subprocess.run([sys.executable, "-m", "robolearn", "eval", str(tmp_path / "averaged"), "--policy", exported,
                          "--last-iterate"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "--last-iterate" in out.stderr
