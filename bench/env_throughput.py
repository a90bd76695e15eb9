"""Env throughput of robolearn tasks against the physics ceiling and gymnasium's sync vectorization.

For each task and N parallel envs, with random actions, in one run:
  raw       mujoco.batch.Batch stepping the same model with the same frame skip on all threads,
            random controls, no observation / reward / reset work: the ceiling (PickPlace: from
            the env's reset states, the arm's position targets jittered about them);
  robolearn the task's step (Nav: physics + lidar ray casting; PickPlace: physics + forward
            kinematics for site poses; both + observations, rewards, autoreset);
  gym-sync  gymnasium.make_vec(task, num_envs=N, vectorization_mode="sync"):
            what a gymnasium user gets without robolearn (SyncVectorEnv over the single-env view).

    python bench/env_throughput.py [--tasks Nav-v0 PickPlace-v0] [--envs 64 256 1024] [--seconds 3]
    python bench/env_throughput.py --config configs/fetch_pickplace.yaml --envs 256   (a config's env)
    python bench/env_throughput.py --tasks PickPlace-v0 --envs 256 env.action_space=ee_delta   (env keys changed)

``env.KEY=VALUE`` overrides change the env section (of ``--config``, or of each task's defaults):
run once with ``env.action_space=ee_delta`` and once without to see what the end-effector IK costs.

Run it alone: on 2 cores a figure taken beside another job is void.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import gymnasium
import mujoco
import numpy as np
import yaml
import robolearn.envs  # noqa: F401  (registers the tasks)
from mujoco import batch as mjbatch
from robolearn.envs import get_task
from robolearn.envs.arm import ArmTaskEnv


def timed(step, seconds: float, warmup: int = 5) -> float:
    """Calls per second of ``step(i)`` over about ``seconds`` (after ``warmup`` calls)."""
    for i in range(warmup):
        step(i)
    calls, start = 0, time.perf_counter()
    while True:
        step(calls)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def bench_raw(env, actions: np.ndarray, seconds: float) -> float:
    batch = mjbatch.Batch(env.model, env.num_envs, nthread=0, persistent=True)
    ctrl = batch.bind("ctrl")
    if isinstance(env, ArmTaskEnv):  # start where the task starts; jitter the position targets
        env.reset(seed=0)
        batch.bind("qpos")[:] = env.qpos
        batch.bind("mocap_pos")[:] = env.mocap_pos
        batch.forward()
        base = env.ctrl.copy()
        arm = env.arm.actuators
        jitter = np.zeros((len(actions),) + base.shape)
        jitter[:, :, arm] = np.random.default_rng(1).uniform(-0.05, 0.05, (len(actions), env.num_envs, len(arm)))

        def step(i):
            ctrl[:] = base + jitter[i % len(actions)]
            batch.step(nstep=env.frame_skip)
    else:
        scale, wheels = env.cfg.max_wheel_speed, env.base.wheel_actuators

        def step(i):
            ctrl[:, wheels] = actions[i % len(actions)] * scale
            batch.step(nstep=env.frame_skip)

    return timed(step, seconds) * env.num_envs


def bench_robolearn(env, actions: np.ndarray, seconds: float) -> float:
    env.reset(seed=0)
    return timed(lambda i: env.step(actions[i % len(actions)]), seconds) * env.num_envs


def bench_gym_sync(task: str, n: int, actions: np.ndarray, seconds: float, **env_kwargs) -> float:
    envs = gymnasium.make_vec(task, num_envs=n, vectorization_mode="sync", **env_kwargs)
    envs.reset(seed=0)
    rate = timed(lambda i: envs.step(actions[i % len(actions)]), seconds) * n
    envs.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["Nav-v0", "PickPlace-v0"])
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--config", help="an experiment config: its env section (task, robot, layout) replaces "
                        "--tasks")
    parser.add_argument("overrides", nargs="*", metavar="env.KEY=VALUE", help="env keys to change, e.g. "
                        "env.action_space=ee_delta")
    # KEY=VALUE words are the overrides wherever they stand (after --tasks or --envs too, whose lists
    # would otherwise take them)
    argv = sys.argv[1:]
    overrides = [word for word in argv if "=" in word and not word.startswith("-")]
    args = parser.parse_args([word for word in argv if word not in overrides])
    args.overrides = overrides
    env_kwargs, label = {}, "".join(f", {o}" for o in args.overrides)
    if args.config:
        from robolearn.config import load_config

        env = load_config(args.config, args.overrides).env
        args.tasks, label = [env.task], f", {args.config}{label}"
        env_kwargs = env.model_dump(exclude={"task", "num_envs"})
    else:
        for override in args.overrides:
            key, sep, value = override.partition("=")
            if not key.startswith("env.") or not sep:
                parser.error(f"override {override!r}: expected env.KEY=VALUE")
            env_kwargs[key[4:]] = yaml.safe_load(value)

    for name in args.tasks:
        task = name if "/" in name else f"robolearn/{name}"
        env_cls = get_task(task).env_cls
        print(f"{task} env steps/s{label}, random actions, {os.cpu_count()} CPUs, mujoco {mujoco.__version__}")
        header = f"{'N':>6} {'raw physics':>12} {'robolearn':>10} {'% of raw':>9} {'gym sync':>10} {'vs sync':>8}"
        print(header)
        print("-" * len(header))
        for n in args.envs:
            env = env_cls(num_envs=n, seed=0, **env_kwargs)
            dim = env.single_action_space.shape[0]
            actions = np.random.default_rng(0).uniform(-1, 1, (64, n, dim)).astype(np.float32)
            raw = bench_raw(env, actions, args.seconds)
            ours = bench_robolearn(env, actions, args.seconds)
            env.close()
            sync = bench_gym_sync(task, n, actions, args.seconds, **env_kwargs)
            print(f"{n:>6} {raw:>12,.0f} {ours:>10,.0f} {100 * ours / raw:>8.0f}% {sync:>10,.0f} {ours / sync:>7.1f}x",
                  flush=True)
        print(f"(frame skip {env.frame_skip} x {env.model.opt.timestep * 1000:.0f} ms physics steps per env step)\n")


if __name__ == "__main__":
    main()
