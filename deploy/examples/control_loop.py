"""A fixed-rate controller running an exported policy, with the simulator standing in for the robot.

    python deploy/examples/control_loop.py runs/nav/<stamp>/export [--seconds 20] [--rate-hz HZ]
                                           [--config runs/nav/<stamp>/config.yaml] [--warm-ms 1]

Each tick (period: the contract's control period, or 1 / --rate-hz) reads the robot's observation,
runs ``PolicyRunner.step`` and sends the command; the simulator then advances one control period,
as the robot would in real time. A tick whose work ends after the next tick's start is a deadline
miss; the schedule then restarts from now rather than bursting to catch up. ``--warm-ms`` before
each tick the loop calls ``runner.warm()`` so the tick's ``step`` runs with warm caches. The
commands the task holds fixed (``runner.fixed_commands``, e.g. Push's gripper opening) are held by
the simulated task here; a robot's controller sends them along with each command. Like the code on
a robot it needs numpy, onnxruntime and (for the stand-in) MuJoCo, not torch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from robolearn.config import load_config
from robolearn.deploy import PolicyRunner
from robolearn.deploy.closed_loop import check_contract_matches_env
from robolearn.envs import get_task, make_env


class SimulatedRobot:
    """One simulated robot behind a robot's interface: ``observe()`` and ``send(command)``."""

    def __init__(self, runner: PolicyRunner, config_path: str | None, seed: int):
        contract = runner.contract
        task = contract["task"]
        env_config = load_config(config_path).env if config_path else get_task(task).config_cls()
        self.env = make_env(env_config.model_copy(update={"num_envs": 1, "nthread": 1}), seed=seed)
        check_contract_matches_env(contract, self.env, env_config.task, str(runner.path))
        self.scale = np.asarray(contract["action"]["scale"], np.float32)
        self.offset = np.asarray(contract["action"]["offset"], np.float32)
        self.obs = self.env.reset(seed=seed)[0]["policy"][0]
        self.episodes = 0
        self.successes = 0

    def observe(self) -> np.ndarray:
        return self.obs

    def send(self, command: np.ndarray) -> bool:
        """Apply a command for one control period; True when the episode ended (and the robot reset)."""
        action = (command - self.offset) / self.scale  # the simulator takes normalised actions
        obs, _, terminated, truncated, info = self.env.step(action[None])
        self.obs = obs["policy"][0]
        if not (terminated[0] or truncated[0]):
            return False
        self.episodes += 1
        self.successes += int(info["episode"]["success"][0] > 0)
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export_dir", help="export directory or its policy.onnx")
    parser.add_argument("--seconds", type=float, default=20.0, help="wall-clock run time")
    parser.add_argument("--rate-hz", type=float, help="control rate (default: the contract's control period)")
    parser.add_argument("--config", help="experiment YAML for the simulated robot (default: the task's defaults)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-ms", type=float, default=1.0,
                        help="run runner.warm() this long before each tick (0: off; see deploy-bench --rate)")
    args = parser.parse_args()

    runner = PolicyRunner(args.export_dir)
    robot = SimulatedRobot(runner, args.config, args.seed)
    period = 1.0 / args.rate_hz if args.rate_hz else runner.contract["control_period_s"]
    ticks = int(args.seconds / period)
    policy_us = np.zeros(ticks)
    work_us = np.zeros(ticks)
    misses = 0
    clock = time.perf_counter

    deadline = clock()
    for tick in range(ticks):
        start = clock()
        obs = robot.observe()
        command = runner.step(obs)
        policy_us[tick] = (clock() - start) * 1e6
        if robot.send(command):
            runner.reset()
        now = clock()
        work_us[tick] = (now - start) * 1e6
        deadline += period
        if now > deadline:
            misses += 1
            deadline = now
        elif args.warm_ms > 0 and deadline - now > args.warm_ms / 1e3:
            time.sleep(deadline - now - args.warm_ms / 1e3)
            runner.warm()  # caches and core awake for the tick; changes no state
            time.sleep(max(0.0, deadline - clock()))
        else:
            time.sleep(deadline - now)

    print(f"{ticks} ticks at {1.0 / period:g} Hz ({period * 1e3:g} ms): {misses} deadline misses")
    for name, us in (("PolicyRunner.step", policy_us), ("tick work (policy + simulated robot)", work_us)):
        print(f"  {name}: p50 {np.percentile(us, 50):.1f} us, p99 {np.percentile(us, 99):.1f} us, max {us.max():.1f} us")
    print(f"  episodes {robot.episodes}, successes {robot.successes}; "
          f"non-finite observations {runner.nonfinite_obs}, outputs {runner.nonfinite_output}; "
          f"observations out of the training distribution {runner.out_of_distribution}")


if __name__ == "__main__":
    main()
