"""What NavDepth-v0's depth camera costs, against Nav-v0's lidar, in one run.

For N envs with random actions, env steps/s of:
  Nav-v0 (lidar)          16 rays cast after the step (the lidar task);
  NavDepth-v0             the depth image on the last physics substep only (what the task does);
  NavDepth, every substep the camera rangefinder left on for all ``frame_skip`` substeps (naive);
  NavDepth, no image      sensors off on every substep (physics, rewards and observations only);
and the share of a NavDepth step spent on the image: 1 - (steps/s with the image / without).

    python bench/depth_camera.py [--envs 256] [--seconds 5] [--width 32 --height 24]

Run it alone: on 2 cores a figure taken beside another job is void.
"""

from __future__ import annotations

import argparse
import os
import time

import mujoco
import numpy as np
import robolearn.envs  # noqa: F401  (registers the tasks)
from robolearn.envs.diffdrive import NavDepthEnv, NavEnv

SENSOR = int(mujoco.mjtDisableBit.mjDSBL_SENSOR)


class EverySubstep(NavDepthEnv):
    """The camera computed on every physics substep (MuJoCo's default for a sensor)."""

    def _step_physics(self) -> None:
        self.batch.step(nstep=self.frame_skip, stage=self.step_stage)


class NoImage(NavDepthEnv):
    """Sensors off on every substep: the step without the image."""

    def _step_physics(self) -> None:
        self._disable[:] |= SENSOR
        self.batch.step(nstep=self.frame_skip, stage=self.step_stage)


def steps_per_second(env, seconds: float) -> float:
    actions = np.random.default_rng(0).uniform(-1, 1, (64, env.num_envs, 2)).astype(np.float32)
    env.reset(seed=0)
    for i in range(5):
        env.step(actions[i])
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[calls % 64])
        calls += 1
    return calls * env.num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--height", type=int, default=24)
    args = parser.parse_args()
    camera = {"width": args.width, "height": args.height}
    rows = [("Nav-v0 (lidar, 16 rays)", NavEnv(num_envs=args.envs, seed=0))]
    for name, cls in (("NavDepth-v0 (image on the last substep)", NavDepthEnv),
                      ("NavDepth, image on every substep", EverySubstep), ("NavDepth, no image", NoImage)):
        rows.append((name, cls(num_envs=args.envs, seed=0, camera=camera)))
    print(f"env steps/s, N={args.envs}, random actions, {args.width}x{args.height} depth, "
          f"{os.cpu_count()} CPUs, mujoco {mujoco.__version__}")
    rates = {}
    for name, env in rows:
        rates[name] = steps_per_second(env, args.seconds)
        print(f"{name:<42} {rates[name]:>10,.0f}", flush=True)
        env.close()
    ours, off = rates["NavDepth-v0 (image on the last substep)"], rates["NavDepth, no image"]
    naive, lidar = rates["NavDepth, image on every substep"], rates["Nav-v0 (lidar, 16 rays)"]
    print(f"share of a NavDepth step spent on the image: {1 - ours / off:.0%}; "
          f"last substep vs every substep: {ours / naive:.2f}x; NavDepth vs Nav-v0: {ours / lidar:.2f}x")


if __name__ == "__main__":
    main()
