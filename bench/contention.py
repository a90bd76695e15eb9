"""Training throughput when the machine is not idle: alone, beside a busy process, beside a nice one.

A robotics engineer trains on a laptop or a shared workstation. Each case is a real
``robolearn train CONFIG`` run of about ``--seconds`` (steps/s read back from ``metrics.csv`` over
the iterations after the first), in three conditions:

  alone     nothing else running
  busy      beside one busy Python loop at normal priority (it holds one core)
  nice19    beside one busy Python loop at nice 19

and with two thread settings, measured in the same rounds so that drifts in machine speed hit both:

  defaults  robolearn's defaults (``trainer.rollout_threads`` / ``trainer.update_threads``)
  before    the settings before the fix: torch's default, a thread per CPU, in both phases

Prints steps/s (median over ``--rounds``) and each condition as a share of the same settings alone.

    python bench/contention.py [--config configs/nav.yaml] [--seconds 20] [--rounds 3] [KEY=VALUE ...]

Run it alone: on 2 cores a figure taken beside another job is void (the busy loops are the point).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = {"alone": None, "busy": 0, "nice19": 19}  # niceness of the competing busy loop
CPUS = len(os.sched_getaffinity(0))
#: the settings before the fix: torch's default, every CPU, in both phases
SETTINGS = {"defaults": [], "before": [f"trainer.rollout_threads={CPUS}", f"trainer.update_threads={CPUS}"]}


def steps_per_second(config: Path, seconds: float, overrides: list[str], nice: int | None) -> float:
    """One training run, optionally beside a busy loop at niceness ``nice``; steps/s after iteration 1."""
    busy = None
    if nice is not None:
        busy = subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "robolearn", "train", str(config), f"trainer.max_seconds={seconds}",
                       "trainer.max_env_steps=null", "trainer.max_iterations=null", "trainer.checkpoint_interval=100000",
                       "device=cpu", *overrides, "--run-dir", f"{tmp}/run"]
            result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
            with open(f"{tmp}/run/metrics.csv") as handle:
                rows = list(csv.DictReader(handle))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if len(rows) < 3:
        raise SystemExit(f"only {len(rows)} iterations in {seconds} s: raise --seconds")
    first, last = rows[0], rows[-1]
    return (int(last["env_steps"]) - int(first["env_steps"])) / (float(last["wall_s"]) - float(first["wall_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "nav.yaml")
    parser.add_argument("--seconds", type=float, default=20.0, help="training time per case")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every case; medians are reported")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    args = parser.parse_args()

    results: dict[tuple[str, str], list[float]] = {(s, c): [] for s in SETTINGS for c in CONDITIONS}
    for round_ in range(args.rounds):
        for condition, nice in CONDITIONS.items():
            for setting, extra in SETTINGS.items():
                results[(setting, condition)].append(
                    steps_per_second(args.config, args.seconds, [*args.overrides, *extra], nice))
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
            f"{s}/{c} {v[-1]:,.0f}" for (s, c), v in results.items()), flush=True)

    print(f"\n{args.config.name}, {args.seconds:g} s per case, median of {args.rounds} rounds (steps/s)")
    print(f"{'settings':10s}{'alone':>10s}{'busy':>10s}{'':>8s}{'nice19':>10s}{'':>8s}")
    median = {key: statistics.median(values) for key, values in results.items()}
    for setting in SETTINGS:
        alone = median[(setting, "alone")]
        cells = [f"{median[(setting, c)]:10,.0f}{median[(setting, c)] / alone:8.0%}" for c in ("busy", "nice19")]
        print(f"{setting:10s}{alone:10,.0f}{''.join(cells)}")
    print(f"defaults / before, alone: {median[('defaults', 'alone')] / median[('before', 'alone')]:.2f}x;  "
          f"goal: busy >= 45% and nice19 >= 80% of alone, alone no more than 5% below before")


if __name__ == "__main__":
    main()
