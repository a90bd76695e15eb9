"""Every registered task: a tiny training run through the CLI exports a policy that PolicyRunner
loads, whose contract describes the task's env, and that turns a real observation into a command."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from robolearn.cli import main
from robolearn.config import load_config
from robolearn.deploy import PolicyRunner
from robolearn.deploy.closed_loop import check_contract_matches_env
from robolearn.envs import list_tasks, make_env

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: the smallest training run that writes a checkpoint; every override of the test lives here
TINY_RUN = ["device=cpu", "env.num_envs=4", "env.nthread=1", "trainer.max_iterations=1",
            "trainer.num_steps=8", "policy.actor_hidden=[8]", "policy.critic_hidden=[8]"]
TINY_RECURRENT = ["policy.rnn_hidden=8", "policy.encoder_hidden=[]"]
# policy.pt is TorchScript, which torch deprecates (it is still what LibTorch controllers load)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def bundled_config(task: str) -> Path:
    """The first bundled experiment config (configs/*.yaml, by name; the task's own robot before
    configs naming another) that trains ``task``."""
    def env_of(path: Path) -> dict:
        return yaml.safe_load(path.read_text()).get("env", {})

    for path in sorted(CONFIGS.glob("*.yaml"), key=lambda p: ("robot" in env_of(p), p.name)):
        if env_of(path).get("task") == task:
            return path
    raise AssertionError(f"no config in {CONFIGS} trains {task}: add one")


def tiny_run_overrides(config: Path) -> list[str]:
    policy_class = (yaml.safe_load(config.read_text()).get("policy") or {}).get("class", "mlp")
    return TINY_RUN + (TINY_RECURRENT if policy_class in ("lstm", "gru") else [])


@pytest.mark.parametrize("task", [spec.name for spec in list_tasks()])
def test_every_task_exports_a_policy_the_runner_loads(task, tmp_path, capsys):
    config, run = bundled_config(task), tmp_path / "run"
    overrides = tiny_run_overrides(config)
    assert main(["train", str(config), *overrides, "--run-dir", str(run)]) == 0, capsys.readouterr().err
    assert main(["export", str(run)]) == 0, capsys.readouterr().err
    assert "parity over 100 steps" in capsys.readouterr().out

    runner = PolicyRunner(run / "export")
    env = make_env(load_config(config, overrides).env.model_copy(update={"num_envs": 1, "nthread": 1}), seed=0)
    try:
        check_contract_matches_env(runner.contract, env, task, str(runner.path))
        assert dict(runner.fixed_commands) == {k: float(v) for k, v in getattr(env, "fixed_commands", {}).items()}
        assert not set(runner.fixed_commands) & set(env.action_names)
        obs, _ = env.reset(seed=0)
        command = runner.step(np.ascontiguousarray(obs["policy"][0], np.float32))
    finally:
        env.close()
    assert command.shape == (len(env.action_names),) and np.isfinite(command).all()
    assert (runner.nonfinite_obs, runner.nonfinite_output) == (0, 0)
