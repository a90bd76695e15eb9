"""Closed-loop evaluation of an exported policy: the simulator driven through ``PolicyRunner``.

:class:`RunnerPolicy` gives :func:`robolearn.evaluation.run_episodes` the part of the policy
interface (:mod:`robolearn.models.policy`) a deterministic run calls (``initial_state``,
``act_inference``, ``reset_state``), but acts through one :class:`PolicyRunner` per env, as each
robot would: the runner returns robot commands, which are mapped back to the simulator's
normalised actions ``(command - offset) / scale``; a runner is reset when its env's episode ends.
torch is imported only to hand actions to ``run_episodes``, so a torch-free controller (such as
``deploy/examples/control_loop.py``) can use :func:`check_contract_matches_env`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robolearn.deploy.contract import ContractError
from robolearn.deploy.runner import PolicyRunner

if TYPE_CHECKING:
    import torch


class RunnerPolicy:
    """An exported ``policy.onnx`` acting in a batched env (one runner per env)."""

    def __init__(self, path: str | Path, env, task: str):
        self.runners = [PolicyRunner(path) for _ in range(env.num_envs)]
        self.contract = contract = self.runners[0].contract
        check_contract_matches_env(contract, env, task, str(self.runners[0].path))
        self.scale = np.asarray(contract["action"]["scale"], np.float32)
        self.offset = np.asarray(contract["action"]["offset"], np.float32)
        self.actions = np.zeros((env.num_envs, contract["action"]["dim"]), np.float32)

    def initial_state(self, num_envs: int) -> torch.Tensor:
        """The runners carry their recurrent state themselves: an empty state, reset by :meth:`reset_state`."""
        import torch

        for runner in self.runners:
            runner.reset()
        return torch.zeros(num_envs, 0)

    def reset_state(self, state: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Start new episodes in the runners of the envs where ``dones``."""
        for i in np.flatnonzero(dones.numpy()):
            self.runners[i].reset()
        return state

    def act_inference(self, obs: dict[str, torch.Tensor], state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        policy_obs = obs["policy"].numpy()
        for i, runner in enumerate(self.runners):
            np.copyto(self.actions[i], runner.step(policy_obs[i]))
        return torch.from_numpy((self.actions - self.offset) / self.scale), state


def check_contract_matches_env(contract: dict, env, task: str, source: str) -> None:
    """The contract must describe this env: task, observation terms (and the shapes of image terms:
    a transposed image has the same width), actions (with the commands the task holds fixed),
    control period."""
    terms = [(term["name"], term["width"]) for term in contract["obs"]["terms"]]
    images = {term["name"]: term["shape"] for term in contract["obs"]["terms"] if "shape" in term}
    layout = env.obs_layout["policy"]
    checks = [("task", contract["task"], task),
              ("obs.terms", terms, list(layout.widths.items())),
              ("obs.terms.shape", images, {name: list(shape) for name, shape in layout.images.items()}),
              ("action.names", contract["action"]["names"], list(env.action_names)),
              ("action.scale", contract["action"]["scale"], [float(v) for v in env.action_scale]),
              ("action.offset", contract["action"]["offset"], [float(v) for v in env.action_offset]),
              ("action.fixed", contract["action"]["fixed"],
               {name: float(value) for name, value in getattr(env, "fixed_commands", {}).items()}),
              ("control_period_s", contract["control_period_s"], round(float(env.control_dt), 9))]
    for key, exported, simulated in checks:
        if exported != simulated:
            raise ContractError(f"{source}: contract key {key!r} is {exported}, the simulated env has {simulated}")
