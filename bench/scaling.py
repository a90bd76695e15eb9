"""Training throughput of PPO on robolearn/Nav-v0 vs the number of envs, and 1 vs 2 ranks.

Each case is a real ``robolearn train configs/nav.yaml`` run (full iterations: rollout + update,
default 24 steps x 5 epochs x 4 minibatches) for about ``--seconds``; its steps/s is read back from
``metrics.csv`` over the iterations after the first (no start-up, no warm-up):

  1 rank    env.num_envs = N for each N in --envs (64 ... 2048)
  2 ranks   ``--nproc 2`` (torchrun, gloo on CPU): N/2 envs per rank (the same samples per
            iteration as 1 rank with N) and N per rank (twice the samples per iteration)

Prints a table and writes a PNG plot of steps/s against the total number of envs.

    python bench/scaling.py [--envs 64 128 256 512 1024 2048] [--two-rank-envs 256 1024]
                            [--seconds 20] [--plot runs/bench/scaling.png]

Run it alone: on 2 cores a figure taken beside another job is void.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "nav.yaml"


def train(num_envs: int, ranks: int, seconds: float, run_dir: Path) -> dict:
    """One training run; steps/s and samples per iteration from its metrics.csv."""
    command = [sys.executable, "-m", "robolearn", "train", str(CONFIG), f"env.num_envs={num_envs}",
               f"trainer.max_seconds={seconds}", "trainer.max_env_steps=1000000000", "trainer.checkpoint_interval=100000",
               "device=cpu", "--run-dir", str(run_dir)]
    if ranks > 1:
        command += ["--nproc", str(ranks)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) < 3:  # the first iteration is not counted: retry longer
        if seconds > 600:
            raise SystemExit(f"{num_envs} envs x {ranks} ranks: {len(rows)} iterations in {seconds:g} s")
        return train(num_envs, ranks, 2 * seconds, run_dir.with_name(run_dir.name + "x"))
    first, last = rows[0], rows[-1]
    steps = int(last["env_steps"]) - int(first["env_steps"])
    elapsed = float(last["wall_s"]) - float(first["wall_s"])
    iterations = len(rows) - 1
    return {"envs_per_rank": num_envs, "ranks": ranks, "total_envs": num_envs * ranks,
            "samples_per_iteration": int(first["env_steps"]), "steps_per_s": steps / elapsed,
            "iteration_s": elapsed / iterations, "iterations": len(rows), "process_wall_s": wall,
            "success_rate": float(last["success_rate"] or "nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--two-rank-envs", type=int, nargs="*", default=[256, 1024],
                        help="total envs N of the 2-rank cases (N/2 per rank, and N per rank)")
    parser.add_argument("--seconds", type=float, default=20.0, help="training seconds per case")
    parser.add_argument("--plot", type=Path, default=ROOT / "runs" / "bench" / "scaling.png")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="robolearn-scaling-") as tmp:
        cases = [(n, 1) for n in args.envs]
        for n in args.two_rank_envs:
            cases += [(n // 2, 2), (n, 2)]
            if n not in args.envs:
                cases.append((n, 1))
        for i, (num_envs, ranks) in enumerate(cases):
            row = train(num_envs, ranks, args.seconds, Path(tmp) / f"case{i}")
            results.append(row)
            print(f"  {ranks} rank(s) x {num_envs:5d} envs: {row['steps_per_s']:9,.0f} steps/s", flush=True)

    one = {r["total_envs"]: r for r in results if r["ranks"] == 1}
    print("\nPPO on robolearn/Nav-v0, full training iterations (24 steps x N envs, 5 epochs x 4 minibatches), "
          f"~{args.seconds:g} s per case, CPU")
    print(f"{'ranks':>5} {'envs/rank':>9} {'samples/it':>10} {'steps/s':>9} {'s/it':>6} {'vs 1 rank, same samples/it':>27}")
    for r in sorted(results, key=lambda r: (r["ranks"], r["total_envs"])):
        base = one.get(r["total_envs"])
        ratio = f"{r['steps_per_s'] / base['steps_per_s']:.2f}x" if base and r["ranks"] > 1 else ""
        print(f"{r['ranks']:>5} {r['envs_per_rank']:>9} {r['samples_per_iteration']:>10,} {r['steps_per_s']:>9,.0f} "
              f"{r['iteration_s']:>6.2f} {ratio:>27}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = sorted(one)
    ax.plot(xs, [one[x]["steps_per_s"] for x in xs], "o-", label="1 rank")
    for label, marker, keep in (("2 ranks, N/2 envs each", "s", lambda r: r["envs_per_rank"] * 2 in args.two_rank_envs),
                                ("2 ranks, N envs each", "^", lambda r: r["envs_per_rank"] in args.two_rank_envs)):
        pts = sorted((r["total_envs"], r["steps_per_s"]) for r in results if r["ranks"] == 2 and keep(r))
        if pts:
            ax.plot(*zip(*pts), marker, linestyle="--", label=label)
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("total envs (all ranks)")
    ax.set_ylabel("env steps/s (training)")
    ax.set_title("PPO on Nav-v0: training throughput")
    ax.grid(True, alpha=0.3)
    ax.legend()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
